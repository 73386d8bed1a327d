"""Paired GT/LR sequences to evaluate: frame folders (Vid4, UDM10, SPMCS, REDS layout) or two videos.

A folder is either one sequence (`ROOT/GT/*.png` and `ROOT/LR/*.png`) or a set of them
(`ROOT/<seq>/GT/*.png`, `ROOT/<seq>/LR/*.png`). GT and LR frames pair up in natural file-name order;
every GT frame must be exactly `SCALE` times its LR frame, and all frames of a sequence one size.
Problems raise `EvalError` with a stable code. Sizes are checked before any model runs; frames are decoded
only when a sequence is evaluated (LR all at once, GT one frame at a time).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

SCALE = 4
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
Size = tuple[int, int]  # (width, height)


class EvalError(Exception):
    """Bad evaluation input. `code` is a stable machine-readable string."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, eq=False)
class SequenceSource:
    """One GT/LR pair of frame streams, checked for sizes but not yet decoded."""

    name: str
    gt_size: Size
    lr_size: Size
    load_lr: Callable[[], list[np.ndarray]]  # every LR frame, (h, w, 3) uint8 RGB
    iter_gt: Callable[[], Iterator[np.ndarray]]  # GT frames one at a time, (H, W, 3) uint8 RGB


def _natural_key(path: Path) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def frame_files(folder: Path) -> list[Path]:
    """Image files in `folder`, in natural name order (2.png before 10.png)."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES]
    if not files:
        raise EvalError("no_frames", f"{folder} holds no frame images ({', '.join(FRAME_SUFFIXES)})")
    return sorted(files, key=_natural_key)


def image_size(path: Path) -> Size:
    """(width, height) of an image file, reading only its header."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, UnidentifiedImageError) as exc:
        raise EvalError("bad_frame", f"cannot read image {path}: {exc}") from exc


def read_frame(path: Path, size: Size) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of `path`, which must be `size` (width, height)."""
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise EvalError("bad_frame", f"cannot read image {path}: {exc}") from exc
    if (pixels.shape[1], pixels.shape[0]) != size:
        found = f"{pixels.shape[1]}x{pixels.shape[0]}"
        raise EvalError("size_mismatch", f"{path} is {found}, expected {size[0]}x{size[1]} like its sequence")
    return pixels


def check_scale(name: str, gt_size: Size, lr_size: Size) -> None:
    """Raise `size_mismatch` unless GT is exactly SCALE times LR."""
    if gt_size != (lr_size[0] * SCALE, lr_size[1] * SCALE):
        raise EvalError(
            "size_mismatch",
            f"{name}: GT {gt_size[0]}x{gt_size[1]} is not {SCALE}x LR {lr_size[0]}x{lr_size[1]}",
        )


def folder_sequence(folder: Path, name: str, max_frames: int | None = None) -> SequenceSource:
    """The sequence in `folder/GT` and `folder/LR` (at most `max_frames` frames)."""
    for part in ("GT", "LR"):
        if not (folder / part).is_dir():
            raise EvalError(f"missing_{part.lower()}", f"{folder} has no {part}/ frame folder")
    gt, lr = frame_files(folder / "GT"), frame_files(folder / "LR")
    if len(gt) != len(lr):
        raise EvalError("frame_count_mismatch", f"{name}: {len(gt)} GT frames but {len(lr)} LR frames")
    gt, lr = gt[:max_frames], lr[:max_frames]
    gt_size, lr_size = image_size(gt[0]), image_size(lr[0])
    check_scale(name, gt_size, lr_size)
    return SequenceSource(
        name=name,
        gt_size=gt_size,
        lr_size=lr_size,
        load_lr=lambda: [read_frame(p, lr_size) for p in lr],
        iter_gt=lambda: (read_frame(p, gt_size) for p in gt),
    )


def find_sequences(root: str | Path, max_frames: int | None = None) -> list[SequenceSource]:
    """`root` itself if it holds GT/ and LR/, else each `root/<seq>` that holds GT/ or LR/."""
    root = Path(root)
    if not root.is_dir():
        raise EvalError("not_found", f"sequence folder not found: {root}")
    if (root / "GT").is_dir() or (root / "LR").is_dir():
        return [folder_sequence(root, root.resolve().name, max_frames)]
    folders = sorted(
        (p for p in root.iterdir() if (p / "GT").is_dir() or (p / "LR").is_dir()), key=_natural_key
    )
    if not folders:
        raise EvalError(
            "no_sequences",
            f"{root} has no GT/ and LR/ frame folders (expected ROOT/<seq>/GT and ROOT/<seq>/LR)",
        )
    return [folder_sequence(p, p.name, max_frames) for p in folders]


def video_sequence(
    gt_video: str | Path, lr_video: str | Path, max_frames: int | None = None
) -> SequenceSource:
    """A GT video and its LR video, decoded with PyAV (frame counts are checked while decoding)."""
    from worker.video_io import VideoError, iter_frames, probe_video

    try:
        gt_info, lr_info = probe_video(gt_video), probe_video(lr_video)
    except VideoError as exc:
        raise EvalError(exc.code, str(exc)) from exc
    name = Path(gt_video).stem
    gt_size, lr_size = (gt_info.width, gt_info.height), (lr_info.width, lr_info.height)
    check_scale(name, gt_size, lr_size)

    def decode(path: str | Path) -> Iterator[np.ndarray]:
        frames = iter_frames(path)
        try:
            for frame in islice(frames, max_frames):
                yield frame.image
        except VideoError as exc:
            raise EvalError(exc.code, str(exc)) from exc
        finally:
            frames.close()

    return SequenceSource(
        name=name,
        gt_size=gt_size,
        lr_size=lr_size,
        load_lr=lambda: list(decode(lr_video)),
        iter_gt=lambda: decode(gt_video),
    )
