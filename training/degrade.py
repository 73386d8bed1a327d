"""HR clip -> LR clip degradations: bicubic x4 (the BI benchmark setting) and a real-world mix.

`bi`: antialiased bicubic (a = -0.5, kernel widened x4: the MATLAB `imresize` kernel; torch clamps
weights at the borders where MATLAB mirrors, which only touches the outermost two LR pixels).
`realworld`: Gaussian blur, a random resize kernel, Gaussian noise and H.264 at a random CRF, with one
draw of parameters per clip (a camera does not change its lens between frames).
`mixed`: each clip is `bi` or `realworld` with probability 1/2.
"""

from __future__ import annotations

import io
from typing import Literal

import av
import numpy as np
import torch
import torch.nn.functional as F

Degradation = Literal["bi", "realworld", "mixed"]
DEGRADATIONS: tuple[Degradation, ...] = ("bi", "realworld", "mixed")
SCALE = 4
BLUR_SIGMA = (0.3, 1.8)  # HR pixels
NOISE_SIGMA = (1.0, 8.0)  # of 255
CRF = (20, 38)


def _frames(clip: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2).float().div(255.0)


def _uint8(frames: torch.Tensor) -> np.ndarray:
    return frames.clamp(0, 1).mul(255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def bicubic_down(frames: torch.Tensor) -> torch.Tensor:
    """(T, 3, H, W) -> (T, 3, H/4, W/4), antialiased bicubic."""
    return F.interpolate(frames, scale_factor=1 / SCALE, mode="bicubic", antialias=True, align_corners=False)


def gaussian_blur(frames: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(np.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = frames.shape[1]
    padded = F.pad(frames, (radius, radius, radius, radius), mode="reflect")
    horizontal = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    vertical = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    return F.conv2d(F.conv2d(padded, horizontal, groups=channels), vertical, groups=channels)


def h264_roundtrip(clip: np.ndarray, crf: int) -> np.ndarray:
    """Encode (T, H, W, 3) uint8 with libx264 at `crf` (yuv420p) and decode it back."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height = clip.shape[2], clip.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for frame in clip:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    buffer.seek(0)
    with av.open(buffer) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return np.stack(decoded)


def realworld(clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    frames = _frames(clip)
    frames = gaussian_blur(frames, float(rng.uniform(*BLUR_SIGMA)))
    mode = ("bicubic", "bilinear", "area")[int(rng.integers(3))]
    if mode == "area":
        frames = F.interpolate(frames, scale_factor=1 / SCALE, mode="area")
    else:
        frames = F.interpolate(frames, scale_factor=1 / SCALE, mode=mode, antialias=True, align_corners=False)
    if rng.random() < 0.6:
        sigma = float(rng.uniform(*NOISE_SIGMA)) / 255.0
        noise = torch.from_numpy(rng.standard_normal(frames.shape).astype(np.float32))
        frames = frames + sigma * noise
    low = _uint8(frames)
    if rng.random() < 0.8 and low.shape[1] % 2 == 0 and low.shape[2] % 2 == 0:
        low = h264_roundtrip(low, int(rng.integers(CRF[0], CRF[1] + 1)))
    return low


def degrade(clip: np.ndarray, kind: Degradation, rng: np.random.Generator) -> np.ndarray:
    """HR (T, H, W, 3) uint8 -> LR (T, H/4, W/4, 3) uint8."""
    if kind not in DEGRADATIONS:
        raise ValueError(f"degradation must be one of {DEGRADATIONS}, got {kind!r}")
    if kind == "mixed":
        kind = "bi" if rng.random() < 0.5 else "realworld"
    if kind == "bi":
        return _uint8(bicubic_down(_frames(clip)))
    return realworld(clip, rng)
