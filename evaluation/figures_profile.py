"""Temporal profiles (the seed's Fig. 2): one output row stacked over time, per method, side by side.

The profile of row y is the image whose row t is row y of output frame t; flicker and temporal
inconsistency show up as horizontal streaks and broken vertical lines. Each frame's row is repeated
`stretch` times so that a short clip is still visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.figures_common import (
    SCALE,
    FigureError,
    ModelReport,
    Panel,
    bicubic_x4,
    check_gt,
    load_frames,
    save_grid,
    upscale_frames,
)

PROFILE_HEIGHT = 128  # default stretch: at least this many pixel rows per profile
MARK_COLOUR = np.array([255, 0, 0], dtype=np.uint8)


@dataclass(frozen=True)
class ProfileOptions:
    video: Path
    out: Path
    row: int | None = None  # output pixel row; None: the middle row
    frames: int | None = None  # use at most this many frames
    stretch: int | None = None  # pixel rows per frame; None: enough for PROFILE_HEIGHT rows
    fastvsr_model: str | None = None
    baseline_model: str | None = None
    gt: Path | None = None


@dataclass(frozen=True)
class ProfileResult:
    out: Path
    size: tuple[int, int]  # (width, height) of the PNG
    row: int
    frames: int
    stretch: int


def default_stretch(frames: int) -> int:
    return max(1, -(-PROFILE_HEIGHT // frames))


def temporal_profile(frames: Sequence[np.ndarray], row: int, stretch: int) -> np.ndarray:
    """(T * stretch, W, 3): row `row` of each frame, each repeated `stretch` times, time running down."""
    return np.stack([frame[row] for frame in frames]).repeat(stretch, axis=0)


def marked_frame(frame: np.ndarray, row: int) -> np.ndarray:
    """A copy of `frame` with `row` drawn in red (3 px thick where it fits)."""
    marked = frame.copy()
    marked[max(0, row - 1) : row + 2] = MARK_COLOUR
    return marked


def make_profile_figure(options: ProfileOptions, report: ModelReport | None = None) -> ProfileResult:
    """Decode, upscale with each method, and write the profile PNG."""
    lr = load_frames(options.video, options.frames)
    out_height = lr[0].shape[0] * SCALE
    row = out_height // 2 if options.row is None else options.row
    if not 0 <= row < out_height:
        raise FigureError("bad_row", f"--row {row} is outside the output's rows 0..{out_height - 1}")
    if options.stretch is not None and options.stretch < 1:
        raise FigureError("bad_stretch", f"--stretch must be >= 1, got {options.stretch}")
    stretch = options.stretch or default_stretch(len(lr))
    gt = load_frames(options.gt, len(lr)) if options.gt is not None else None
    if gt is not None:
        check_gt(gt, lr[0], len(lr))
    bicubic = [bicubic_x4(frame) for frame in lr]
    baseline, baseline_desc = upscale_frames("Baseline", options.baseline_model, "baseline-tiny", lr, report)
    fastvsr, fastvsr_desc = upscale_frames("FastVSR", options.fastvsr_model, "fastvsr-tiny", lr, report)
    methods = {"Bicubic": bicubic, "Baseline": baseline, "FastVSR": fastvsr} | ({"GT": gt} if gt else {})
    profiles = [Panel(temporal_profile(f, row, stretch), f"{name}: row {row}") for name, f in methods.items()]
    reference = Panel(marked_frame(bicubic[0], row), f"frame 0 (bicubic x4), row {row} in red")
    title = (
        f"Temporal profile of output row {row} over {len(lr)} frames of {options.video.name} "
        f"(time runs down; each frame repeated {stretch} rows)\n"
        f"FastVSR: {fastvsr_desc}\nBaseline: {baseline_desc}"
    )
    size = save_grid([[reference], profiles], title, options.out)
    return ProfileResult(
        out=options.out,
        size=size,
        row=row,
        frames=len(lr),
        stretch=stretch,
    )
