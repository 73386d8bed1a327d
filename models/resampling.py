"""Exact reformulations of the model's resampling steps that run faster, with the same results.

- A conv over x-fold channel copies equals a conv over the originals with the copies' kernels summed: the
  f16 head's "copy x4 + conv_out" runs conv_out on a quarter of the channels.
- Bicubic upscaling by an integer factor (PyTorch's kernel, a = -0.75, half-pixel centres, clamped
  borders) equals a 5x5 conv per output phase on the edge-padded frame, then PixelShuffle: exported
  graphs use it because ONNX Runtime's cubic `Resize` is several times slower than PyTorch's.

Results differ from the direct forms only by float rounding (about 1e-6); tests compare them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CUBIC_A = -0.75  # PyTorch's (and OpenCV's) bicubic coefficient
CUBIC_TAPS = 5  # an integer-factor upscale reads source offsets -2..2 across all output phases


def fold_channel_copies(weight: torch.Tensor, copies: int) -> torch.Tensor:
    """Kernel (O, C * copies, ...) of a conv fed `x.repeat_interleave(copies, dim=1)` -> (O, C, ...) for x."""
    out_channels, in_channels = weight.shape[:2]
    return weight.reshape(out_channels, in_channels // copies, copies, *weight.shape[2:]).sum(2)


def _cubic(distance: float) -> float:
    x = abs(distance)
    if x <= 1:
        return ((CUBIC_A + 2) * x - (CUBIC_A + 3)) * x * x + 1
    if x < 2:
        return ((CUBIC_A * x - 5 * CUBIC_A) * x + 8 * CUBIC_A) * x - 4 * CUBIC_A
    return 0.0


def cubic_phase_taps(factor: int) -> torch.Tensor:
    """(factor, 5) float64: output phase p of source pixel i weighs source pixels i-2..i+2."""
    rows = []
    for phase in range(factor):
        source = (phase + 0.5) / factor - 0.5  # half-pixel centres (align_corners=False)
        floor = math.floor(source)
        taps = [0.0] * CUBIC_TAPS
        for offset in range(-1, 3):
            taps[floor + offset + CUBIC_TAPS // 2] += _cubic(source - floor - offset)
        rows.append(taps)
    return torch.tensor(rows, dtype=torch.float64)


def edge_pad(frames: torch.Tensor, pad: int) -> torch.Tensor:
    """Replicate the border `pad` times on each side of H and W (as concatenations: the exporter turns
    `F.pad(mode="replicate")` into a pads computation it cannot constant-fold)."""
    rows = [frames[:, :, :1].expand(-1, -1, pad, -1), frames, frames[:, :, -1:].expand(-1, -1, pad, -1)]
    frames = torch.cat(rows, dim=2)
    cols = [frames[..., :1].expand(-1, -1, -1, pad), frames, frames[..., -1:].expand(-1, -1, -1, pad)]
    return torch.cat(cols, dim=3)


def bicubic_upscale_by_conv(frames: torch.Tensor, factor: int) -> torch.Tensor:
    """`F.interpolate(frames, scale_factor=factor, mode="bicubic", align_corners=False)` as an edge pad,
    one 5x5 conv (factor^2 phases) per channel and PixelShuffle(factor)."""
    n, c, h, w = frames.shape
    taps = cubic_phase_taps(factor)
    kernels = torch.einsum("pi,qj->pqij", taps, taps).reshape(factor * factor, 1, CUBIC_TAPS, CUBIC_TAPS)
    pad = CUBIC_TAPS // 2
    phases = F.conv2d(edge_pad(frames.reshape(n * c, 1, h, w), pad), kernels.to(frames.dtype))
    return F.pixel_shuffle(phases, factor).reshape(n, c, h * factor, w * factor)
