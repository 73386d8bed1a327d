"""A fixed, seeded pool of (HR, LR) training clips, built once per run and sampled in batches.

Building the pool up front keeps the training loop free of decoding and resampling; a pool of a few
thousand 128x128 clips is a few hundred MB of uint8.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from training import sources
from training.clips import augment, photo_clip, video_clip
from training.degrade import Degradation, degrade
from training.motion import ClipMotion, clip_motion

VIDEO_FRAMES = 96  # decoded per HR video (every other frame: more motion per clip)


@dataclass
class ClipPool:
    """`hr` (N, T, S, S, 3) and `lr` (N, T, S/4, S/4, 3), both uint8; `motion` of the HR clips if built."""

    hr: np.ndarray
    lr: np.ndarray
    motion: ClipMotion | None = None

    def __len__(self) -> int:
        return len(self.hr)

    def batch(self, indices: Sequence[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(LR, HR) as (B, 3, T, H, W) float tensors in [0, 1]."""
        return to_clip_tensor(self.lr[indices]), to_clip_tensor(self.hr[indices])


def to_clip_tensor(clips: np.ndarray) -> torch.Tensor:
    """(B, T, H, W, 3) uint8 -> (B, 3, T, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(clips)).permute(0, 4, 1, 2, 3).float().div(255.0)


def build_pool(
    count: int,
    frames: int,
    size: int,
    degradation: Degradation,
    seed: int,
    photos: Sequence[str],
    videos: Sequence[str] = (),
    video_share: float = 0.4,
    motion: bool = False,
) -> ClipPool:
    """`count` clips: photos under camera motion, and (share `video_share`) crops of HR videos; with
    `motion`, also each HR clip's frame-to-frame warp (training.motion)."""
    if size % 4:
        raise ValueError(f"clip size must be a multiple of 4, got {size}")
    rng = np.random.default_rng(seed)
    loaded_photos = [sources.load_photo(name) for name in photos]
    loaded_videos = [sources.load_video(name, VIDEO_FRAMES, stride=2) for name in videos]
    hr = np.empty((count, frames, size, size, 3), np.uint8)
    lr = np.empty((count, frames, size // 4, size // 4, 3), np.uint8)
    for i in range(count):
        if loaded_videos and rng.random() < video_share:
            clip = video_clip(loaded_videos[int(rng.integers(len(loaded_videos)))], frames, size, rng)
        else:
            clip = photo_clip(loaded_photos[int(rng.integers(len(loaded_photos)))], frames, size, rng)
        hr[i] = augment(clip, rng)
        lr[i] = degrade(hr[i], degradation, rng)
    return ClipPool(hr=hr, lr=lr, motion=clip_motion(hr) if motion else None)
