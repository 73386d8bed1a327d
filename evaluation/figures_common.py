"""Shared pieces of the figure commands: input frames, bicubic x4, model runs, exact-pixel panel grids.

Panel grids are drawn with `Figure.figimage`, which places images without resampling: every pixel of a
panel in the PNG is the pixel computed here, so tests can read the panels back.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from models.config import OUTPUT_SCALE as SCALE

DPI = 100
MARGIN = 8  # px around and between panels
TITLE_HEIGHT = 30  # px of title band per title line
LABEL_HEIGHT = 20  # px of label band above each panel


class FigureError(Exception):
    """Bad figure input. `code` is a stable machine-readable string."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, eq=False)
class Panel:
    """One labelled image of a grid: (H, W, 3) uint8 RGB."""

    image: np.ndarray
    label: str


def load_frames(path: str | Path, limit: int | None = None) -> list[np.ndarray]:
    """The first `limit` frames of a video file (PyAV) or of a folder of PNG frames (name order)."""
    from worker.video_io import VideoError, iter_frames

    path = Path(path)
    if limit is not None and limit < 1:
        raise FigureError("bad_frames", f"--frames must be >= 1, got {limit}")
    if path.is_dir():
        return _folder_frames(path, limit)
    frames = iter_frames(path)
    try:
        return [frame.image for frame in islice(frames, limit)]
    except VideoError as exc:
        raise FigureError(exc.code, str(exc)) from exc
    finally:
        frames.close()


def _folder_frames(folder: Path, limit: int | None) -> list[np.ndarray]:
    """Frame images of `folder` in natural name order, all the size of the first (`vsr eval`'s reader)."""
    from evaluation.sequences import EvalError, frame_files, image_size, read_frame

    try:
        files = frame_files(folder)[:limit]
        size = image_size(files[0])
        return [read_frame(file, size) for file in files]
    except EvalError as exc:
        raise FigureError(exc.code, str(exc)) from exc


def bicubic_x4(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (4H, 4W, 3) uint8 with torch bicubic (align_corners=False), as the model's skip."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255.0
    y = F.interpolate(x, scale_factor=float(SCALE), mode="bicubic", align_corners=False).clamp(0.0, 1.0)
    return (y[0] * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()


def nearest_x4(frame: np.ndarray) -> np.ndarray:
    return frame.repeat(SCALE, axis=0).repeat(SCALE, axis=1)


ModelReport = Callable[[str, str], None]  # (method, weights description), called before a model runs


def upscale_frames(
    method: str, model_dir: str | None, name: str, frames: Iterable[np.ndarray], report: ModelReport | None
) -> tuple[list[np.ndarray], str]:
    """Run `model_dir` (else the named default) over `frames`: (4x uint8 frames, weights description)."""
    from models.registry import resolve_model
    from worker.upscaler import ClipUpscaler

    loaded = resolve_model(model_dir, name)
    if report is not None:
        report(method, loaded.description)
    return list(ClipUpscaler(loaded.model).upscale(frames)), loaded.description


def check_gt(gt: Sequence[np.ndarray], lr: np.ndarray, needed: int) -> None:
    """GT frames must be exactly 4x the LR size, and at least `needed` of them."""
    want = (lr.shape[0] * SCALE, lr.shape[1] * SCALE)
    if gt[0].shape[:2] != want:
        found = f"{gt[0].shape[1]}x{gt[0].shape[0]}"
        raise FigureError("size_mismatch", f"GT frames are {found}, expected {want[1]}x{want[0]} (4x LR)")
    if len(gt) < needed:
        raise FigureError("size_mismatch", f"GT has {len(gt)} frames, {needed} needed")


def grid_size(rows: Sequence[Sequence[Panel]], title_lines: int) -> tuple[int, int]:
    """(width, height) in pixels of the PNG that `save_grid` writes for these rows."""
    width = max(sum(p.image.shape[1] + MARGIN for p in row) for row in rows) + MARGIN
    heights = [max(p.image.shape[0] for p in row) for row in rows]
    return width, title_lines * TITLE_HEIGHT + sum(h + LABEL_HEIGHT + MARGIN for h in heights) + MARGIN


def panel_origins(rows: Sequence[Sequence[Panel]], title_lines: int) -> list[list[tuple[int, int]]]:
    """Top-left (x, y) pixel of every panel's image: each row runs left to right under the one above."""
    origins, y = [], title_lines * TITLE_HEIGHT
    for row in rows:
        xs = [MARGIN + sum(p.image.shape[1] + MARGIN for p in row[:c]) for c in range(len(row))]
        origins.append([(x, y + LABEL_HEIGHT) for x in xs])
        y += LABEL_HEIGHT + max(p.image.shape[0] for p in row) + MARGIN
    return origins


def save_grid(rows: Sequence[Sequence[Panel]], title: str, out: Path) -> tuple[int, int]:
    """Write the panels, unresampled and labelled, row under row below `title`; return (width, height)."""
    lines = title.count("\n") + 1
    width, height = grid_size(rows, lines)
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")
    fig.text(MARGIN / width, 1 - 6 / height, title, ha="left", va="top", fontsize=11, linespacing=1.6)
    for row, origins in zip(rows, panel_origins(rows, lines), strict=True):
        for panel, (x, y) in zip(row, origins, strict=True):
            fig.figimage(panel.image, xo=x, yo=height - y - panel.image.shape[0], origin="upper")
            fig.text(x / width, 1 - (y - 3) / height, panel.label, ha="left", va="bottom", fontsize=9)
    save_figure(fig, out)
    return width, height


def save_figure(fig: Figure, out: Path) -> None:
    """Render `fig` to PNG at its own dpi, atomically (temporary file, then rename)."""
    FigureCanvasAgg(fig)
    _atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=fig.dpi, format="png"))


def write_json(data: dict[str, Any], out: Path) -> None:
    _atomic_write(out, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def _atomic_write(out: Path, write: Callable[[Path], object]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
