"""Optimization profiles from settings: min/opt/max of every dynamic input of every stage.

Settings give LR frames per chunk and LR height/width as a user sees them. Engines see them padded (frames
to the temporal compression, sizes to the model's LR multiple), so each bound rounds up: every chunk the
upscaler makes from a video inside the settings' bounds fits the profile.
"""

from __future__ import annotations

from engines.base import ShapeProfile
from engines.layout import FLAG_INPUTS, ChunkSize, Component, StreamLayout
from engines.settings import EngineSettings


def padded(size: int, multiple: int) -> int:
    return -(-size // multiple) * multiple


def profile_sizes(layout: StreamLayout, settings: EngineSettings) -> tuple[ChunkSize, ChunkSize, ChunkSize]:
    """The (min, opt, max) chunk sizes engines see, batch 1."""
    tc, m = layout.temporal_compression, layout.lr_multiple
    f, h, w = settings.frames, settings.height, settings.width
    return tuple(  # type: ignore[return-value]
        ChunkSize(1, padded(frames, tc), padded(height, m), padded(width, m))
        for frames, height, width in ((f.min, h.min, w.min), (f.opt, h.opt, w.opt), (f.max, h.max, w.max))
    )


def stage_profile(layout: StreamLayout, component: Component, settings: EngineSettings) -> ShapeProfile:
    """The profile of one stage: every non-flag input at the min, opt and max chunk sizes."""
    low, opt, high = (layout.shapes(component, size) for size in profile_sizes(layout, settings))
    return ShapeProfile(
        {
            name: (low[name], opt[name], high[name])
            for name in layout.input_names(component)
            if name not in FLAG_INPUTS
        }
    )
