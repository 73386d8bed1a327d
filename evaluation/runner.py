"""Evaluate methods (MATLAB bicubic and models) on GT/LR sequences: PSNR-Y, SSIM-Y, E_warp and speed.

All methods advance frame by frame in lockstep, so each GT frame and each GT flow is computed once and
memory stays at one frame per method (plus the LR clip). A method's speed is the time spent producing its
frames: wall time for bicubic; for a model (a chunked streaming run through `worker.upscaler.ClipUpscaler`)
the time of its encode/denoise/decode stages, which leaves out the upscaler's one-off MAC counting.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from evaluation.matlab_resize import imresize
from evaluation.metrics import SSIM_CONVENTION, SSIM_MIN_SIZE, Y_CONVENTION, frame_metrics
from evaluation.sequences import SCALE, EvalError, SequenceSource, find_sequences
from evaluation.warping import (
    EWARP_SCALE,
    FLOW_METHOD,
    SELF_FLOW_METHOD,
    FrameFlow,
    estimate_flow,
    warp_error,
)

if TYPE_CHECKING:
    from models.sr_model import VSRModel

BICUBIC = "bicubic (MATLAB)"
GT_LABEL = "GT"
DEFAULT_CROP_SIZE = 256
Crop = tuple[int, int, int, int]  # x, y, width, height in GT pixels


@dataclass
class RunCost:
    """What a method reports about its own run; None: the runner measures wall time, MACs unknown."""

    seconds: float | None = None
    macs: int | None = None


@dataclass(frozen=True)
class Method:
    """A named way of turning LR frames into (4H, 4W, 3) uint8 frames, one output per input, in order.

    `upscale(frames, cost)` may keep `cost` up to date as it yields."""

    name: str
    description: str
    upscale: Callable[[Iterable[np.ndarray], RunCost], Iterator[np.ndarray]]


@dataclass(frozen=True)
class EvalSettings:
    crop_border: int = 0  # pixels removed on every side before PSNR/SSIM
    warp_error: bool = True  # measure E_warp on GT flow and on each output's own flow
    crop: Crop | None = None  # the visual crop; None: a centre crop of up to 256x256

    def as_dict(self) -> dict[str, Any]:
        return {
            "crop_border": self.crop_border,
            "y_channel": Y_CONVENTION,
            "ssim": SSIM_CONVENTION,
            "averaging": "per clip: mean over frames; overall: mean over clips",
            "ewarp": f"{FLOW_METHOD}; reported x{EWARP_SCALE:g}" if self.warp_error else None,
            "ewarp_self_flow": SELF_FLOW_METHOD if self.warp_error else None,
            "bicubic": "MATLAB imresize x4, cubic a=-0.5, symmetric padding, float64, rounded to uint8",
            "scale": SCALE,
        }


@dataclass
class _Tally:
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    ewarp: list[float] = field(default_factory=list)
    ewarp_self_flow: list[float] = field(default_factory=list)
    seconds: float = 0.0


def bicubic_method() -> Method:
    """The baseline row: MATLAB-compatible bicubic x4 of each LR frame."""

    def upscale(frames: Iterable[np.ndarray], cost: RunCost) -> Iterator[np.ndarray]:
        return (imresize(frame, scale=SCALE) for frame in frames)

    return Method(BICUBIC, "MATLAB-compatible bicubic imresize x4 (numpy, float64)", upscale)


def model_method(
    name: str,
    model: VSRModel,
    description: str,
    *,
    chunk_frames: int = 8,
    device: str = "cpu",
    temporal_blend: float | None = None,
) -> Method:
    """A model run chunk by chunk with its streaming cache and the temporal stabilizer, as `vsr upscale`
    runs it (`temporal_blend` None: the service's default; 0: the model's own frames)."""
    from worker.temporal_stabilizer import DEFAULT_TEMPORAL_BLEND
    from worker.upscaler import ClipUpscaler, UpscaleStats

    blend = DEFAULT_TEMPORAL_BLEND if temporal_blend is None else temporal_blend
    upscaler = ClipUpscaler(model, chunk_frames=chunk_frames, device=device, temporal_blend=blend)
    if blend > 0:
        description += f"; temporal stabilizer, blend {blend:g}"

    def upscale(frames: Iterable[np.ndarray], cost: RunCost) -> Iterator[np.ndarray]:
        stats = UpscaleStats()
        for frame in upscaler.upscale(frames, stats):  # a chunk's stats are complete before it yields
            cost.seconds, cost.macs = sum(stats.seconds.values()), stats.macs["total"]
            yield frame

    return Method(name, description, upscale)


def crop_box(gt_size: tuple[int, int], crop: Crop | None) -> Crop:
    """`crop`, checked against the GT size, or a centre crop of up to DEFAULT_CROP_SIZE pixels."""
    width, height = gt_size
    if crop is None:
        w, h = min(width, DEFAULT_CROP_SIZE), min(height, DEFAULT_CROP_SIZE)
        return (width - w) // 2, (height - h) // 2, w, h
    x, y, w, h = crop
    if x < 0 or y < 0 or w < 1 or h < 1 or x + w > width or y + h > height:
        raise EvalError("bad_crop", f"crop {x},{y},{w},{h} does not fit in the {width}x{height} GT frames")
    return crop


def check_settings(source: SequenceSource, settings: EvalSettings) -> Crop:
    """Raise `EvalError` if `settings` cannot measure `source`; return its crop box."""
    measured = min(source.gt_size) - 2 * settings.crop_border
    if settings.crop_border < 0 or measured < SSIM_MIN_SIZE:
        raise EvalError(
            "bad_option",
            f"{source.name}: crop border {settings.crop_border} leaves {measured} px of the "
            f"{source.gt_size[0]}x{source.gt_size[1]} GT frames (SSIM needs {SSIM_MIN_SIZE})",
        )
    return crop_box(source.gt_size, settings.crop)


def _timed_next(frames: Iterator[np.ndarray], tally: _Tally) -> np.ndarray | None:
    start = time.perf_counter()
    frame = next(frames, None)
    tally.seconds += time.perf_counter() - start
    return frame


def _check_output(name: str, method: str, t: int, out: np.ndarray | None, gt: np.ndarray) -> np.ndarray:
    if out is None:
        raise EvalError("method_error", f"{name}: {method} stopped after {t} frames")
    if out.shape != gt.shape or out.dtype != np.uint8:
        msg = f"{name}: {method} frame {t} is {out.shape} {out.dtype}, GT is {gt.shape} uint8"
        raise EvalError("method_error", msg)
    return out


def _scaled_mean(errors: list[float]) -> float | None:
    return float(np.mean(errors)) * EWARP_SCALE if errors else None


def _method_row(tally: _Tally, cost: RunCost, frames: int, source: SequenceSource) -> dict[str, Any]:
    seconds = tally.seconds if cost.seconds is None else cost.seconds
    return {
        "psnr_y": float(np.mean(tally.psnr)),
        "ssim_y": float(np.mean(tally.ssim)),
        "ewarp": _scaled_mean(tally.ewarp),
        "ewarp_self_flow": _scaled_mean(tally.ewarp_self_flow),
        "fps": frames / seconds if seconds > 0 else math.inf,
        "seconds": seconds,
        "gmacs_per_frame": None if cost.macs is None else cost.macs / frames / 1e9,
        "frames": frames,
        "input_size": list(source.lr_size),
        "output_size": list(source.gt_size),
    }


def evaluate_sequence(
    source: SequenceSource, methods: Sequence[Method], settings: EvalSettings
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One clip's row per method, and the crops (GT first, then each method) of its middle frame."""
    box = check_settings(source, settings)
    lr = source.load_lr()
    costs = {m.name: RunCost() for m in methods}
    streams = {m.name: m.upscale(iter(lr), costs[m.name]) for m in methods}
    tallies = {m.name: _Tally() for m in methods}
    previous: dict[str, np.ndarray] = {}
    crops: dict[str, np.ndarray] = {}
    count, crop_at, previous_gt = 0, len(lr) // 2, None
    for t, gt in enumerate(source.iter_gt()):
        if t >= len(lr):
            raise EvalError("frame_count_mismatch", f"{source.name}: more GT frames than the {len(lr)} LR")
        flow: FrameFlow | None = None
        if settings.warp_error and previous_gt is not None:
            flow = estimate_flow(previous_gt, gt)
        frames = {GT_LABEL: gt}
        for name, stream in streams.items():
            out = _check_output(source.name, name, t, _timed_next(stream, tallies[name]), gt)
            psnr, ssim = frame_metrics(out, gt, settings.crop_border)
            tallies[name].psnr.append(psnr)
            tallies[name].ssim.append(ssim)
            if flow is not None:
                tallies[name].ewarp.append(warp_error(previous[name], out, flow))
                own_flow = estimate_flow(previous[name], out)
                tallies[name].ewarp_self_flow.append(warp_error(previous[name], out, own_flow))
            previous[name] = frames[name] = out
        if t == crop_at:
            x, y, w, h = box
            crops = {label: frame[y : y + h, x : x + w].copy() for label, frame in frames.items()}
        previous_gt, count = gt, t + 1
    if count != len(lr):
        raise EvalError("frame_count_mismatch", f"{source.name}: {count} GT frames but {len(lr)} LR frames")
    clip = {
        "name": source.name,
        "frames": count,
        "gt_size": list(source.gt_size),
        "lr_size": list(source.lr_size),
        "crop": list(box),
        "methods": {name: _method_row(tallies[name], costs[name], count, source) for name in streams},
    }
    return clip, crops


def _mean_of_known(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def summarize(
    clips: list[dict[str, Any]], methods: Sequence[Method], settings: EvalSettings
) -> dict[str, Any]:
    """The report: settings, methods, clips and, per method, the means over clips."""
    mean: dict[str, dict[str, Any]] = {}
    for method in methods:
        rows = [clip["methods"][method.name] for clip in clips]
        frames, seconds = sum(row["frames"] for row in rows), sum(row["seconds"] for row in rows)
        known_macs = all(row["gmacs_per_frame"] is not None for row in rows)
        mean[method.name] = {
            "psnr_y": float(np.mean([row["psnr_y"] for row in rows])),
            "ssim_y": float(np.mean([row["ssim_y"] for row in rows])),
            "ewarp": _mean_of_known(row["ewarp"] for row in rows),
            "ewarp_self_flow": _mean_of_known(row["ewarp_self_flow"] for row in rows),
            "fps": frames / seconds if seconds > 0 else math.inf,
            "seconds": seconds,
            "gmacs_per_frame": (
                sum(row["gmacs_per_frame"] * row["frames"] for row in rows) / frames if known_macs else None
            ),
            "frames": frames,
        }
    return {
        "settings": settings.as_dict(),
        "methods": [{"name": m.name, "description": m.description} for m in methods],
        "clips": clips,
        "mean": mean,
    }


def evaluate_model(
    model: VSRModel,
    root: str | Path,
    *,
    name: str = "model",
    max_frames: int | None = None,
    settings: EvalSettings | None = None,
    chunk_frames: int = 8,
    device: str = "cpu",
) -> dict[str, Any]:
    """Evaluate `model` and the bicubic baseline on the sequences under `root`; the report dict
    (`report["mean"][name]["psnr_y"]` etc.). For validation during training."""
    settings = settings or EvalSettings()
    methods = [bicubic_method(), model_method(name, model, name, chunk_frames=chunk_frames, device=device)]
    clips = [evaluate_sequence(s, methods, settings)[0] for s in find_sequences(root, max_frames)]
    return summarize(clips, methods, settings)
