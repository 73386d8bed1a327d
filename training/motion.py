"""The motion of each HR training clip, for the warped temporal loss of the pixel fine-tune.

Each pair of consecutive HR frames gets the backward warp (frame t -> t-1) and the occlusion and
motion-boundary mask of `evaluation.warping` (Farneback on the HR frames, Lai et al.'s mask), stored
as `grid_sample` grids. Training clips never include an evaluated sequence, so this measures nothing
it is later scored on; it only tells the loss where each pixel of frame t was in frame t-1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from evaluation.warping import estimate_flow


@dataclass
class ClipMotion:
    """`grid` (N, T-1, S, S, 2) float16 grid_sample coordinates (align_corners); `valid` (N, T-1, S, S)."""

    grid: np.ndarray
    valid: np.ndarray

    def batch(self, indices: Sequence[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(grid (B, T-1, S, S, 2) float32, valid (B, T-1, S, S) bool) tensors."""
        return torch.from_numpy(self.grid[indices].astype(np.float32)), torch.from_numpy(self.valid[indices])


def clip_motion(hr: np.ndarray) -> ClipMotion:
    """The motion of HR clips (N, T, S, S, 3) uint8, frame t-1 -> t for t = 1 .. T-1."""
    count, frames, height, width, _ = hr.shape
    grid = np.empty((count, frames - 1, height, width, 2), np.float16)
    valid = np.empty((count, frames - 1, height, width), bool)
    scale = np.array([2.0 / (width - 1), 2.0 / (height - 1)], np.float32)
    for i in range(count):
        for t in range(1, frames):
            flow = estimate_flow(hr[i, t - 1], hr[i, t])
            grid[i, t - 1] = np.stack([flow.map_x, flow.map_y], axis=-1) * scale - 1.0
            valid[i, t - 1] = flow.valid
    return ClipMotion(grid=grid, valid=valid)
