"""The stream layout of a model: every stage's named inputs and outputs and their shapes.

The streaming caches become explicit tensors with fixed shapes, so an exported graph has the same inputs
on every chunk: `past.<key>` in, `present.<key>` out (key = the model's cache key), plus `first` (1 on a
stream's first chunk) for the encoder and decoder and `past_frames` (real frames in the fixed-length
attention history) for the denoiser. Shapes are linear in the LR size, so a probe at the smallest size
gives every tensor's scale exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import torch

from models.blocks import StreamCache
from models.config import OUTPUT_SCALE
from models.sr_model import VSRModel

Component = Literal["encoder", "denoiser", "decoder"]
COMPONENTS: tuple[Component, ...] = ("encoder", "denoiser", "decoder")
Shape = tuple[int, ...]
FLAG_SHAPE: Shape = (1,)
FLAG_INPUTS = frozenset({"first", "past_frames"})  # int64 (1,) stream flags
PRIMARY = {"encoder": ("lr", "latent"), "denoiser": ("latent", "denoised"), "decoder": ("denoised", "video")}


def past_name(key: str) -> str:
    return f"past.{key}"


def present_name(key: str) -> str:
    return f"present.{key}"


@dataclass(frozen=True)
class ChunkSize:
    """One chunk as a stage sees it: batch, LR frames (first-chunk padding included), LR height and width."""

    batch: int
    frames: int
    height: int
    width: int


@dataclass(frozen=True)
class CacheEntry:
    """One streaming history: (B, C, frames, h, w) for a causal conv, (B*h*w, frames, C) for DiT tokens."""

    key: str
    component: Component
    tokens: bool
    channels: int
    frames: int
    scale: Fraction  # its spatial size / the LR size

    def shape(self, size: ChunkSize) -> Shape:
        h, w = _scaled(size.height, self.scale), _scaled(size.width, self.scale)
        if self.tokens:
            return (size.batch * h * w, self.frames, self.channels)
        return (size.batch, self.channels, self.frames, h, w)


def _scaled(size: int, scale: Fraction) -> int:
    value = size * scale
    if value.denominator != 1:
        raise ValueError(f"LR size {size} is not a multiple the model's layout divides evenly")
    return int(value)


@dataclass(frozen=True)
class StreamLayout:
    """Names and shapes of every stage's inputs and outputs, for one model configuration."""

    latent_channels: int
    latent_scale: Fraction  # latent grid / LR size
    temporal_compression: int
    lr_multiple: int
    history_frames: int  # length of the DiT's fixed attention history (temporal_window - 1)
    caches: tuple[CacheEntry, ...]

    def entries(self, component: Component) -> tuple[CacheEntry, ...]:
        return tuple(e for e in self.caches if e.component == component)

    def input_names(self, component: Component) -> tuple[str, ...]:
        flags = {"encoder": ("lr", "first"), "denoiser": ("latent", "past_frames")}
        head = flags.get(component, ("denoised", "lr", "first"))
        return head + tuple(past_name(e.key) for e in self.entries(component))

    def output_names(self, component: Component) -> tuple[str, ...]:
        return (PRIMARY[component][1], *(present_name(e.key) for e in self.entries(component)))

    def input_dtypes(self, component: Component) -> dict[str, torch.dtype]:
        return {n: torch.int64 if n in FLAG_INPUTS else torch.float32 for n in self.input_names(component)}

    def chunk_size(self, component: Component, shapes: dict[str, Shape]) -> ChunkSize:
        """The chunk size behind a stage's inputs (from its primary input)."""
        b, _, t, h, w = shapes[PRIMARY[component][0]]
        if component == "encoder":
            return ChunkSize(b, t, h, w)
        inverse = 1 / self.latent_scale
        return ChunkSize(b, t * self.temporal_compression, _scaled(h, inverse), _scaled(w, inverse))

    def shapes(self, component: Component, size: ChunkSize) -> dict[str, Shape]:
        """Every input and output shape of `component` for one chunk."""
        lr = (size.batch, 3, size.frames, size.height, size.width)
        latent_frames, rem = divmod(size.frames, self.temporal_compression)
        if rem:
            raise ValueError(f"{size.frames} frames is not a multiple of {self.temporal_compression}")
        latent = (
            size.batch,
            self.latent_channels,
            latent_frames,
            _scaled(size.height, self.latent_scale),
            _scaled(size.width, self.latent_scale),
        )
        video = (size.batch, 3, size.frames, size.height * OUTPUT_SCALE, size.width * OUTPUT_SCALE)
        main = {
            "encoder": {"lr": lr, "first": FLAG_SHAPE, "latent": latent},
            "denoiser": {"latent": latent, "past_frames": FLAG_SHAPE, "denoised": latent},
            "decoder": {"denoised": latent, "lr": lr, "first": FLAG_SHAPE, "video": video},
        }[component]
        for entry in self.entries(component):
            main[past_name(entry.key)] = main[present_name(entry.key)] = entry.shape(size)
        return main

    def zero_caches(self, component: Component, size: ChunkSize, device: torch.device) -> StreamCache:
        """The `past.*` inputs of a stream's first chunk."""
        return {past_name(e.key): torch.zeros(e.shape(size), device=device) for e in self.entries(component)}


def sample_inputs(
    layout: StreamLayout, component: Component, size: ChunkSize, *, first: bool, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random inputs of one chunk (caches included) for tracing and checks."""
    generator = torch.Generator().manual_seed(seed)
    shapes = layout.shapes(component, size)
    inputs = {}
    for name, dtype in layout.input_dtypes(component).items():
        if name == "first":
            inputs[name] = torch.tensor([int(first)])
        elif name == "past_frames":
            inputs[name] = torch.tensor([0 if first else layout.history_frames])
        else:
            inputs[name] = torch.rand(shapes[name], generator=generator, dtype=dtype)
    return inputs


def probe_layout(model: VSRModel) -> StreamLayout:
    """Run one tiny first chunk through `model` with a dict cache and read every history's shape."""
    config = model.config
    tc = config.vae.temporal_compression
    history = config.denoiser.temporal_window - 1
    m = config.lr_multiple
    device = next(model.parameters()).device
    lr = torch.zeros(1, 3, 1 + (max(history, 1) - 1) * tc, m, m, device=device)
    cache: StreamCache = {}
    with torch.no_grad():
        latent = model.encode(lr, cache)
        model.decode(model.denoise(latent, cache), lr, cache)
    entries = []
    for key, value in cache.items():
        component = key.split(".", 1)[0]
        if value.dim() == 5:
            entries.append(
                CacheEntry(
                    key, component, False, value.shape[1], value.shape[2], Fraction(value.shape[-1], m)
                )
            )  # type: ignore[arg-type]
        elif value.dim() == 3:
            side = round(value.shape[0] ** 0.5)
            entries.append(CacheEntry(key, component, True, value.shape[2], history, Fraction(side, m)))  # type: ignore[arg-type]
    return StreamLayout(
        latent_channels=latent.shape[1],
        latent_scale=Fraction(latent.shape[-1], m),
        temporal_compression=tc,
        lr_multiple=m,
        history_frames=history,
        caches=tuple(entries),
    )
