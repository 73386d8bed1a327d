"""HR training clips: photographs under synthetic camera motion, and crops of real HR video.

A clip is (T, S, S, 3) uint8. Photos pan (sub-pixel, bicubic resampling) with a slight zoom at a
constant velocity, as a camera would; video clips are consecutive frames at a random scale and crop.
Every draw comes from one `numpy.random.Generator`, so a pool is reproducible from its seed.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

MAX_PAN_PX = 3.0  # HR pixels per frame
MAX_ZOOM_PER_FRAME = 0.01


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255.0)


def _to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(T, 3, H, W) in [0, 1] -> (T, H, W, 3) uint8."""
    return frames.clamp(0, 1).mul(255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def rescale(image: torch.Tensor, scale: float) -> torch.Tensor:
    """(C, H, W) or (T, C, H, W) resized by `scale` (antialiased bicubic when shrinking)."""
    batch = image if image.dim() == 4 else image[None]
    if scale != 1.0:
        batch = F.interpolate(
            batch, scale_factor=scale, mode="bicubic", antialias=scale < 1, align_corners=False
        )
    return batch if image.dim() == 4 else batch[0]


def photo_clip(photo: np.ndarray, frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A pan (and slight zoom) over a random region of `photo` at a random scale."""
    image = _to_tensor(photo)
    short = min(image.shape[-2:])
    margin = size + 2 * MAX_PAN_PX * frames + 4
    low = min(1.0, margin / short)
    image = rescale(image, float(rng.uniform(low, max(low, 1.0)))).clamp(0, 1)
    _, height, width = image.shape
    velocity = rng.uniform(-MAX_PAN_PX, MAX_PAN_PX, size=2)
    zoom = rng.uniform(-MAX_ZOOM_PER_FRAME, MAX_ZOOM_PER_FRAME)
    travel = np.abs(velocity) * (frames - 1) + size * (1 + abs(zoom) * frames) / 2 + 2
    cx = rng.uniform(travel[0], max(travel[0], width - travel[0]))
    cy = rng.uniform(travel[1], max(travel[1], height - travel[1]))
    grids = []
    steps = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    for t in range(frames):
        scale = 1.0 + zoom * t
        xs = (cx + velocity[0] * t + steps * scale) / (width - 1) * 2 - 1
        ys = (cy + velocity[1] * t + steps * scale) / (height - 1) * 2 - 1
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        grids.append(torch.stack([gx, gy], dim=-1))
    grid = torch.stack(grids)  # (T, S, S, 2)
    batch = image[None].expand(frames, -1, -1, -1)
    clip = F.grid_sample(batch, grid, mode="bicubic", padding_mode="reflection", align_corners=True)
    return _to_uint8(clip)


def video_clip(video: np.ndarray, frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """`frames` consecutive frames of `video` (T, H, W, 3), at a random scale, randomly cropped.

    Only the window that becomes the crop is resampled (a few pixels of margin keep the kernel whole).
    """
    total, height, width, _ = video.shape
    start = int(rng.integers(0, total - frames + 1))
    scale = float(rng.uniform(max(size / min(height, width), 0.4), 1.0))
    window = min(min(height, width), int(np.ceil(size / scale)) + 8)
    y, x = int(rng.integers(0, height - window + 1)), int(rng.integers(0, width - window + 1))
    crop = video[start : start + frames, y : y + window, x : x + window]
    clip = rescale(torch.from_numpy(np.ascontiguousarray(crop)).permute(0, 3, 1, 2).float() / 255, scale)
    offset = (clip.shape[-1] - size) // 2
    return _to_uint8(clip[:, :, offset : offset + size, offset : offset + size])


def augment(clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random horizontal flip and time reversal (both keep the motion physical)."""
    if rng.random() < 0.5:
        clip = clip[:, :, ::-1]
    if rng.random() < 0.5:
        clip = clip[::-1]
    return np.ascontiguousarray(clip)
