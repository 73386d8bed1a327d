"""MATLAB-compatible bicubic `imresize` in numpy (the "BI" degradation and the bicubic baseline).

Matches MATLAB's `imresize(I, scale, 'bicubic')`: the cubic kernel with a = -0.5, widened by 1/scale when
downscaling (antialiasing), symmetric (mirror) index padding at the borders, computed in float64 and, for
uint8 input, rounded and clipped to uint8 once at the end. Ties round half to even (numpy), which
reproduces the LR frames in shared/data exactly; MATLAB rounds ties away from zero, so an exact x.5 (rare)
can differ by one level. Each axis is a few taps per output pixel (cached), applied by gathering.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

KERNEL_WIDTH = 4.0  # support of the cubic kernel, in input pixels at scale 1


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's `cubic`)."""
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


@lru_cache(maxsize=64)
def resize_taps(in_length: int, out_length: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Input indices (0-based, mirrored into range) and float64 weights, both (out_length, taps)."""
    width = KERNEL_WIDTH / scale if scale < 1 else KERNEL_WIDTH
    u = np.arange(1, out_length + 1, dtype=np.float64) / scale + 0.5 * (1 - 1 / scale)  # 1-based centres
    left = np.floor(u - width / 2)
    indices = left[:, None] + np.arange(math.ceil(width) + 2)[None, :]  # 1-based, may fall outside
    distance = u[:, None] - indices
    weights = scale * cubic(distance * scale) if scale < 1 else cubic(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    used = np.any(weights != 0, axis=0)  # MATLAB drops taps that are zero for every output
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length)[::-1]])  # symmetric padding
    columns = mirror[(indices[:, used].astype(np.int64) - 1) % (2 * in_length)]
    weights = weights[:, used]
    columns.setflags(write=False)
    weights.setflags(write=False)
    return columns, weights


def resize_matrix(in_length: int, out_length: int, scale: float) -> np.ndarray:
    """The dense (out_length, in_length) float64 matrix of `resize_taps` (e.g. for a torch matmul)."""
    columns, weights = resize_taps(in_length, out_length, scale)
    matrix = np.zeros((out_length, in_length))
    np.add.at(matrix, (np.repeat(np.arange(out_length), columns.shape[1]), columns.ravel()), weights.ravel())
    return matrix


def _resize_rows(data: np.ndarray, out_length: int, scale: float) -> np.ndarray:
    """Resize axis 0 (gathering whole rows, which is contiguous memory and fast)."""
    columns, weights = resize_taps(data.shape[0], out_length, scale)
    shape = (out_length,) + (1,) * (data.ndim - 1)
    out = np.zeros((out_length, *data.shape[1:]))
    tap = np.empty_like(out)
    for k in range(columns.shape[1]):
        np.take(data, columns[:, k], axis=0, out=tap)
        tap *= weights[:, k].reshape(shape)
        out += tap
    return out


def _resize_columns(data: np.ndarray, out_length: int, scale: float) -> np.ndarray:
    """Resize axis 1 by resizing the rows of the transposed image."""
    transposed = np.ascontiguousarray(np.swapaxes(data, 0, 1))
    return np.swapaxes(_resize_rows(transposed, out_length, scale), 0, 1)


def _output_shape(
    shape: tuple[int, int], scale: float | None, output_shape: tuple[int, int] | None
) -> tuple[tuple[int, int], tuple[float, float]]:
    if output_shape is not None:
        out_h, out_w = output_shape
        if out_h < 1 or out_w < 1:
            raise ValueError(f"output_shape must be positive, got {output_shape}")
        return (out_h, out_w), (out_h / shape[0], out_w / shape[1])
    if scale is None or scale <= 0:
        raise ValueError(f"give a positive scale or an output_shape (scale={scale})")
    return (math.ceil(shape[0] * scale), math.ceil(shape[1] * scale)), (scale, scale)


def imresize(
    image: np.ndarray, scale: float | None = None, output_shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Resize an (H, W) or (H, W, C) image like MATLAB's `imresize(image, scale, 'bicubic')`.

    Args:
        image: uint8 (result rounded and clipped to uint8) or float (result float64, not clipped).
        scale: one factor for both axes; the output size is `ceil(scale * size)`, as in MATLAB.
        output_shape: `(height, width)` instead of `scale` (each axis then uses its own factor).
    """
    if image.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {image.shape}")
    (out_h, out_w), (scale_h, scale_w) = _output_shape(image.shape[:2], scale, output_shape)
    data = image.astype(np.float64)
    # MATLAB resizes the axis with the smaller factor first (fewer pixels carried into the second pass).
    if scale_h <= scale_w:
        out = _resize_columns(_resize_rows(data, out_h, scale_h), out_w, scale_w)
    else:
        out = _resize_rows(_resize_columns(data, out_w, scale_w), out_h, scale_h)
    if image.dtype == np.uint8:
        return np.clip(np.round(out), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out)
