"""The evaluation metrics on real frames: bicubic reference numbers, MATLAB imresize, SSIM, E_warp."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from evaluation.matlab_resize import imresize, resize_matrix
from evaluation.metrics import frame_metrics, psnr, rgb_to_y, ssim
from evaluation.runner import BICUBIC, EvalSettings, Method, bicubic_method, evaluate_sequence
from evaluation.sequences import find_sequences, frame_files, image_size, read_frame
from evaluation.warping import sequence_warp_error

VIMEO = "vimeo_tiny/00001_0266"


def frames(folder: Path) -> list[np.ndarray]:
    files = frame_files(folder)
    return [read_frame(p, image_size(files[0])) for p in files]


@pytest.mark.parametrize(
    ("root", "psnr_ref", "ssim_ref"),
    [("sam2_bedroom", 31.9309, 0.8946), ("vimeo_tiny", 25.6508, 0.8165)],  # shared/data/SOURCES.md
)
def test_bicubic_reproduces_reference_numbers(
    shared_data: Path, root: str, psnr_ref: float, ssim_ref: float
) -> None:
    [source] = find_sequences(shared_data / root)
    clip, _ = evaluate_sequence(source, [bicubic_method()], EvalSettings(warp_error=False))
    row = clip["methods"][BICUBIC]
    assert abs(row["psnr_y"] - psnr_ref) < 0.00005
    assert abs(row["ssim_y"] - ssim_ref) < 0.00005
    assert row["frames"] == clip["frames"] == len(frame_files(shared_data / root / source.name / "GT"))


def test_imresize_reproduces_stored_lr_frames(shared_data: Path) -> None:
    """The LR frames in shared/data are MATLAB-style bicubic /4 of the GT (bedroom frame 0 has exact
    x.5 ties, which pins the rounding)."""
    pairs = list(zip(frames(shared_data / VIMEO / "GT"), frames(shared_data / VIMEO / "LR"), strict=True))
    bedroom = shared_data / "sam2_bedroom" / "bedroom"
    pairs.append(
        (
            read_frame(bedroom / "GT" / "0000.png", (960, 540)),
            read_frame(bedroom / "LR" / "0000.png", (240, 135)),
        )
    )
    for gt, lr in pairs:
        down = imresize(gt, scale=0.25)
        assert down.dtype == np.uint8 and down.shape == lr.shape
        assert np.array_equal(down, lr)


def test_imresize_keeps_constants_and_sizes() -> None:
    flat = np.full((17, 23, 3), 37, dtype=np.uint8)
    assert imresize(flat, scale=0.5).shape == (9, 12, 3)  # ceil, as MATLAB
    assert np.all(imresize(flat, scale=0.5) == 37)
    assert np.all(imresize(flat, scale=4) == 37)
    resized = imresize(flat, output_shape=(40, 11))
    assert resized.shape == (40, 11, 3) and np.all(resized == 37)
    for length, out, scale in [(23, 92, 4.0), (92, 23, 0.25), (17, 9, 0.5)]:
        assert np.allclose(resize_matrix(length, out, scale).sum(axis=1), 1.0)


@pytest.mark.parametrize("scale", [4.0, 0.25])
def test_imresize_pixel_centres_follow_matlab(scale: float) -> None:
    """Cubic interpolation reproduces a linear ramp away from the borders, so the interior values give
    MATLAB's sample positions: output pixel j (1-based) samples input coordinate j/scale + (1 - 1/scale)/2."""
    ramp = np.tile(np.arange(64, dtype=np.float64), (3, 1))  # (3, 64) float: no rounding
    out = imresize(ramp, output_shape=(3, round(64 * scale)))
    j = np.arange(1, out.shape[1] + 1)
    expected = j / scale + 0.5 * (1 - 1 / scale) - 1  # 0-based ramp value at that position
    margin = int(2 * max(scale, 1)) + 2  # output pixels within reach of the mirrored border
    interior = slice(margin, out.shape[1] - margin)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out[1, interior], expected[interior], atol=1e-9)
    assert not np.allclose(out[1, :1], expected[:1])  # mirror padding bends the ramp at the edge


def test_y_channel_and_psnr_ssim(shared_data: Path) -> None:
    assert rgb_to_y(np.zeros((1, 1, 3), np.uint8))[0, 0] == 16.0
    assert rgb_to_y(np.full((1, 1, 3), 255, np.uint8))[0, 0] == pytest.approx(235.0, abs=1e-12)
    gt = read_frame(shared_data / VIMEO / "GT" / "0003.png", (112, 64))
    lr = read_frame(shared_data / VIMEO / "LR" / "0003.png", (28, 16))
    up = imresize(lr, scale=4)
    assert frame_metrics(gt, gt) == (float("inf"), 1.0)
    y_up, y_gt = rgb_to_y(up), rgb_to_y(gt)
    reference = structural_similarity(
        y_up, y_gt, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(y_up, y_gt) == pytest.approx(reference, abs=1e-9)
    mse = np.mean((y_up - y_gt) ** 2)
    assert psnr(y_up, y_gt) == pytest.approx(10 * np.log10(255**2 / mse))
    damaged = gt.copy()
    damaged[:4] = 0  # only the border differs
    assert frame_metrics(damaged, gt)[0] < 30
    assert frame_metrics(damaged, gt, crop_border=4) == (float("inf"), 1.0)


def test_warp_error_static_flicker_and_motion(shared_data: Path) -> None:
    gt = frames(shared_data / VIMEO / "GT")
    clean = [imresize(f, scale=4) for f in frames(shared_data / VIMEO / "LR")]
    still = [gt[0]] * 4
    assert sequence_warp_error(still, still) == 0.0
    assert sequence_warp_error(gt[:1], clean[:1]) is None
    flicker = [
        np.clip(f.astype(np.int16) + (10 if t % 2 else -10), 0, 255).astype(np.uint8)
        for t, f in enumerate(clean)
    ]
    clean_error, flicker_error = sequence_warp_error(gt, clean), sequence_warp_error(gt, flicker)
    assert clean_error is not None and flicker_error is not None
    assert flicker_error > 5 * clean_error > 0
    # Content moving (2, 1) px per frame: warping along the GT flow explains almost all of the change.
    big = read_frame(shared_data / "sam2_bedroom" / "bedroom" / "GT" / "0000.png", (960, 540))
    moving = [big[100 + t : 196 + t, 200 + 2 * t : 328 + 2 * t] for t in range(5)]
    unwarped = np.mean([np.mean((a / 255.0 - b / 255.0) ** 2) for a, b in pairwise(moving)])
    moving_error = sequence_warp_error(moving, moving)
    assert moving_error is not None and moving_error < 0.05 * unwarped


def test_self_flow_warp_error_measures_each_output_along_its_own_motion(shared_data: Path) -> None:
    """On GT-identical output both E_warp columns agree; an output frozen on its first frame is
    perfectly stable along its own (zero) motion, and only the GT flow sees that it does not move."""
    [source] = find_sequences(shared_data / "vimeo_tiny")
    gt = list(source.iter_gt())

    def as_gt(frames: Iterable[np.ndarray], cost: object) -> Iterator[np.ndarray]:
        return iter(gt[: len(list(frames))])

    def frozen(frames: Iterable[np.ndarray], cost: object) -> Iterator[np.ndarray]:
        return iter([gt[0]] * len(list(frames)))

    methods = [Method("as GT", "the GT frames", as_gt), Method("frozen", "GT frame 0 repeated", frozen)]
    clip, _ = evaluate_sequence(source, methods, EvalSettings())
    same, still = clip["methods"]["as GT"], clip["methods"]["frozen"]
    assert same["ewarp_self_flow"] == pytest.approx(same["ewarp"], rel=1e-12) and same["ewarp"] > 0
    assert still["ewarp_self_flow"] == 0.0
    assert still["ewarp"] > 0.1
