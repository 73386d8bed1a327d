"""Temporal consistency: the flow-warping error E_warp of Lai et al. (2018), "Learning Blind Video
Temporal Consistency", with OpenCV's Farneback flow (nothing to download).

For each frame t >= 1 of a clip:

1. Flow is estimated on the ground-truth frames, never on a method's output, so every method is measured
   against the same motion: the backward flow b (frame t -> t-1: pixel x of t is at x + b(x) in t-1) and
   the forward flow f (t-1 -> t), both Farneback on BT.601 grey levels.
2. Output frame t-1 is warped onto frame t: W(x) = O_{t-1}(x + b(x)) (cv2.remap, bilinear).
3. A pixel is left out (the occlusion mask of Lai et al.) when the flows disagree,
   |f(x + b(x)) + b(x)|^2 > 0.01 (|f(x + b(x))|^2 + |b(x)|^2) + 0.5, when it lies on a motion boundary,
   |grad b(x)|^2 > 0.01 |b(x)|^2 + 0.002 (forward differences), or when x + b(x) falls outside the frame.
4. e_t = the mean of (W - O_t)^2 over the kept pixels and the three RGB channels, RGB in [0, 1]
   (over every pixel if none is kept).

E_warp = the mean of e_t over t = 1 .. T-1; lower is better. Reports multiply it by `EWARP_SCALE` (1e3).

Reports also give E_warp on the output's own flow ("self flow"): the same steps with the flow estimated
on the method's output frames instead of the GT. That is the convention of DOVE's evaluation script
(which uses RAFT; Farneback here), so it compares with published E*_warp tables in kind, not in value.
It rewards any output that is stable along its own motion, blur included; the GT-flow column asks
that the output also move as the scene does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

EWARP_SCALE = 1e3
SELF_FLOW_METHOD = "the same, with the flow estimated on the method's own output (DOVE's convention)"
FLOW_METHOD = (
    "OpenCV Farneback (pyr_scale 0.5, levels 3, winsize 15, iterations 3, poly_n 5, poly_sigma 1.2) "
    "on the GT frames; backward flow t -> t-1, forward-backward occlusion and motion-boundary mask "
    "(Lai et al. 2018); bilinear warp of output t-1 onto t; MSE in RGB [0, 1]"
)
FARNEBACK = {
    "pyr_scale": 0.5,
    "levels": 3,
    "winsize": 15,
    "iterations": 3,
    "poly_n": 5,
    "poly_sigma": 1.2,
    "flags": 0,
}


@dataclass(frozen=True, eq=False)
class FrameFlow:
    """How to warp frame t-1 onto frame t, and which pixels of frame t to measure."""

    map_x: np.ndarray  # (H, W) float32: x position in frame t-1 of each pixel of frame t
    map_y: np.ndarray  # (H, W) float32
    valid: np.ndarray  # (H, W) bool: consistent flow, no motion boundary, lands inside frame t-1


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _farneback(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(H, W, 2) float32 flow: pixel x of `source` is at x + flow(x) in `target`."""
    return cv2.calcOpticalFlowFarneback(source, target, None, **FARNEBACK)


def _squared(flow: np.ndarray) -> np.ndarray:
    return np.sum(flow.astype(np.float64) ** 2, axis=2)


def _motion_boundary(flow: np.ndarray) -> np.ndarray:
    grad = np.zeros(flow.shape[:2])
    for c in range(2):
        component = flow[:, :, c].astype(np.float64)
        grad[:, :-1] += (component[:, :-1] - component[:, 1:]) ** 2
        grad[:-1, :] += (component[:-1, :] - component[1:, :]) ** 2
    return grad > 0.01 * _squared(flow) + 0.002


def estimate_flow(previous: np.ndarray, current: np.ndarray) -> FrameFlow:
    """The warp from `previous` onto `current` (both (H, W, 3) uint8 RGB GT frames) and its mask."""
    if previous.shape != current.shape:
        raise ValueError(f"frame shapes differ: {previous.shape} and {current.shape}")
    height, width = previous.shape[:2]
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float32)
    if np.array_equal(previous, current):  # no motion (Farneback returns sub-pixel noise here)
        return FrameFlow(map_x=grid_x, map_y=grid_y, valid=np.ones((height, width), dtype=bool))
    grey_prev, grey_cur = _grey(previous), _grey(current)
    backward = _farneback(grey_cur, grey_prev)
    forward = _farneback(grey_prev, grey_cur)
    map_x, map_y = grid_x + backward[:, :, 0], grid_y + backward[:, :, 1]
    forward_back = cv2.remap(forward, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    round_trip = _squared(forward_back + backward)
    inconsistent = round_trip > 0.01 * (_squared(forward_back) + _squared(backward)) + 0.5
    inside = (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
    valid = inside & ~inconsistent & ~_motion_boundary(backward)
    return FrameFlow(map_x=map_x, map_y=map_y, valid=valid)


def warp_error(previous: np.ndarray, current: np.ndarray, flow: FrameFlow) -> float:
    """e_t: masked MSE (RGB in [0, 1]) between `current` and `previous` warped by `flow` (uint8 RGB)."""
    if previous.shape != current.shape or previous.shape[:2] != flow.valid.shape:
        raise ValueError(f"frame shapes {previous.shape}, {current.shape} do not fit flow {flow.valid.shape}")
    prev = previous.astype(np.float32) / np.float32(255)
    warped = cv2.remap(prev, flow.map_x, flow.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    cur = current.astype(np.float32) / np.float32(255)  # same rounding as `prev`: a still pair gives 0
    squared = (warped.astype(np.float64) - cur.astype(np.float64)) ** 2
    mask = flow.valid if flow.valid.any() else np.ones_like(flow.valid)
    return float(squared[mask].mean())


def sequence_warp_error(gt_frames: Iterable[np.ndarray], output_frames: Iterable[np.ndarray]) -> float | None:
    """E_warp (unscaled) of a whole clip with flow from its GT frames; None for fewer than two frames."""
    errors: list[float] = []
    previous: tuple[np.ndarray, np.ndarray] | None = None
    for gt, out in zip(gt_frames, output_frames, strict=True):
        if previous is not None:
            errors.append(warp_error(previous[1], out, estimate_flow(previous[0], gt)))
        previous = (gt, out)
    return float(np.mean(errors)) if errors else None
