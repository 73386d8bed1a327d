"""Fidelity metrics on the luma channel, as VSR papers report them (Vid4, UDM10, SPMCS, REDS tables).

Y is BT.601 luma in the 16-235 range, as MATLAB's `rgb2ycbcr` computes it for RGB in [0, 1]:
`Y = 16 + 65.481 R + 128.553 G + 24.966 B`, kept in float64 (not rounded). PSNR and SSIM use a data range
of 255. SSIM is Wang et al. (2004) with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, over
the 'valid' region (the window never leaves the image), as BasicSR's `calculate_ssim` computes it.
An optional border of `crop_border` pixels is removed on every side before measuring.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

Y_CONVENTION = "BT.601 luma, 16-235 (MATLAB rgb2ycbcr), float64, not rounded"
SSIM_CONVENTION = "Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1=0.01, K2=0.03, range 255, valid"
DATA_RANGE = 255.0
_C1 = (0.01 * DATA_RANGE) ** 2
_C2 = (0.03 * DATA_RANGE) ** 2
SSIM_MIN_SIZE = 11  # the window never leaves the image, so smaller images have no SSIM
_GAUSS = cv2.getGaussianKernel(SSIM_MIN_SIZE, 1.5)  # (11, 1): the 2-D window is its outer product
_HALF = SSIM_MIN_SIZE // 2
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """(H, W) float64 luma in [16, 235] of an (H, W, 3) uint8 RGB image."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    return image.astype(np.float64) @ _Y_WEIGHTS + 16.0


def crop(image: np.ndarray, border: int) -> np.ndarray:
    """`image` without `border` pixels on each side."""
    if border < 0:
        raise ValueError(f"crop border must be >= 0, got {border}")
    if border == 0:
        return image
    if 2 * border >= min(image.shape[:2]):
        raise ValueError(f"crop border {border} leaves nothing of a {image.shape[1]}x{image.shape[0]} image")
    return image[border:-border, border:-border]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB (range 255) of two same-shape arrays; inf when they are equal."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(DATA_RANGE**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two same-shape 2-D float arrays in a 0-255 range (the 'valid' region)."""
    if min(a.shape) < SSIM_MIN_SIZE:
        size = f"{a.shape[1]}x{a.shape[0]}"
        raise ValueError(f"SSIM needs images of at least {SSIM_MIN_SIZE}x{SSIM_MIN_SIZE} pixels, got {size}")
    a, b = a.astype(np.float64), b.astype(np.float64)

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.sepFilter2D(x, -1, _GAUSS, _GAUSS)[_HALF:-_HALF, _HALF:-_HALF]  # 'valid' region

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + _C1) * (2 * cov + _C2)
    den = (mu_a**2 + mu_b**2 + _C1) * (var_a + var_b + _C2)
    return float(np.mean(num / den))


def frame_metrics(output: np.ndarray, reference: np.ndarray, crop_border: int = 0) -> tuple[float, float]:
    """(PSNR-Y, SSIM-Y) of one uint8 RGB output frame against its uint8 RGB reference (same shape)."""
    if output.shape != reference.shape:
        raise ValueError(f"output shape {output.shape} differs from reference shape {reference.shape}")
    y_out = crop(rgb_to_y(output), crop_border)
    y_ref = crop(rgb_to_y(reference), crop_border)
    return psnr(y_out, y_ref), ssim(y_out, y_ref)
