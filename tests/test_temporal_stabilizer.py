"""The flow-guided temporal stabilizer on real frames: it removes flicker along the motion, keeps a still
clip as it is, restarts at a scene cut, and is causal (chunked runs equal whole-clip runs)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from evaluation.metrics import psnr
from evaluation.warping import estimate_flow, warp_error
from service.settings import Settings
from tests.conftest import tiny_model
from tests.media import make_frame
from worker.temporal_stabilizer import DEFAULT_TEMPORAL_BLEND, TemporalStabilizer
from worker.upscale_file import UpscaleOptions
from worker.upscaler import ClipUpscaler
from worker.video_io import VideoError


def photo(shared_data: Path, index: int) -> np.ndarray:
    """A 256x384 crop of a real HR frame."""
    path = sorted((shared_data / "sam2_bedroom" / "bedroom" / "GT").glob("*.png"))[index]
    return np.asarray(Image.open(path).convert("RGB"))[100:356, 200:584].copy()


def panning_clip(image: np.ndarray, frames: int, step: int = 3) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """HR frames panning right by `step` px per frame (a 192x320 window), and their x4 bicubic LR."""
    hr = [image[32:224, t * step : t * step + 320].copy() for t in range(frames)]
    lr = [cv2.resize(f, (80, 48), interpolation=cv2.INTER_AREA) for f in hr]
    return hr, lr


def flickering(hr: list[np.ndarray], sigma: float, seed: int = 0) -> list[np.ndarray]:
    """HR frames with independent noise per frame: a model whose errors do not follow the scene."""
    rng = np.random.default_rng(seed)
    return [np.clip(f + rng.normal(0, sigma, f.shape), 0, 255).round().astype(np.uint8) for f in hr]


def ewarp(hr: list[np.ndarray], out: list[np.ndarray]) -> float:
    return float(
        np.mean([warp_error(out[t - 1], out[t], estimate_flow(hr[t - 1], hr[t])) for t in range(1, len(hr))])
    )


def test_flicker_along_the_motion_is_removed_and_fidelity_improves(shared_data: Path) -> None:
    hr, lr = panning_clip(photo(shared_data, 0), 12)
    raw = flickering(hr, sigma=6.0)
    stabilizer = TemporalStabilizer(DEFAULT_TEMPORAL_BLEND)
    stable = [stabilizer(low, out) for low, out in zip(lr, raw, strict=True)]
    assert stabilizer.restarts == 1  # one shot
    assert ewarp(hr, stable) < 0.75 * ewarp(hr, raw)
    raw_psnr = np.mean([psnr(o, g) for o, g in zip(raw[1:], hr[1:], strict=True)])
    stable_psnr = np.mean([psnr(o, g) for o, g in zip(stable[1:], hr[1:], strict=True)])
    assert stable_psnr > raw_psnr + 0.5  # averaging independent errors along the motion


def test_a_change_the_motion_does_not_explain_is_not_ghosted_in() -> None:
    # Red drifts right while green drifts down: no single flow explains both, so a blend along the flow
    # would mix ~10 levels of the previous frame in (measured without the visibility mask).
    stabilizer = TemporalStabilizer(DEFAULT_TEMPORAL_BLEND)
    for index in range(12):
        lr = make_frame(index, 32, 24)
        out = cv2.resize(lr, (128, 96), interpolation=cv2.INTER_CUBIC)
        assert np.abs(stabilizer(lr, out).astype(int) - out).mean() < 2.0
    assert stabilizer.restarts == 1  # the flow itself is consistent: only the visibility holds it back


def test_a_still_clip_and_the_first_frame_are_left_as_they_are(shared_data: Path) -> None:
    image = photo(shared_data, 0)[32:224, :320]
    lr = cv2.resize(image, (80, 48), interpolation=cv2.INTER_AREA)
    stabilizer = TemporalStabilizer(0.5)
    for _ in range(4):
        assert np.array_equal(stabilizer(lr, image), image)


def test_a_scene_cut_restarts_the_filter(shared_data: Path) -> None:
    hr_a, lr_a = panning_clip(photo(shared_data, 0), 4)
    other = np.ascontiguousarray(np.rot90(photo(shared_data, 39), 2))  # another view, upside down
    hr_b, lr_b = panning_clip(other, 3)
    outputs = flickering(hr_a + hr_b, sigma=4.0)
    stabilizer = TemporalStabilizer(0.5)
    stable = [stabilizer(low, out) for low, out in zip(lr_a + lr_b, outputs, strict=True)]
    assert stabilizer.restarts == 2
    assert np.array_equal(stable[4], outputs[4])  # nothing of the previous shot leaks into the new one
    assert not np.array_equal(stable[5], outputs[5])  # and the new shot is filtered from its 2nd frame


def test_chunked_runs_equal_whole_clip_runs() -> None:
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    clip = [np.roll(base, t, axis=1) for t in range(9)]
    model = tiny_model()
    whole = np.stack(list(ClipUpscaler(model, chunk_frames=100, temporal_blend=0.3).upscale(clip)))
    chunked = np.stack(list(ClipUpscaler(model, chunk_frames=3, temporal_blend=0.3).upscale(clip)))
    raw = np.stack(list(ClipUpscaler(model, chunk_frames=3).upscale(clip)))
    assert np.abs(whole.astype(int) - chunked.astype(int)).max() <= 1  # the model's own uint8 rounding
    assert np.abs(whole[0].astype(int) - raw[0].astype(int)).max() <= 1  # the first frame is the model's
    assert np.abs(whole[1:].astype(int) - raw[1:].astype(int)).max() > 8  # later ones are blended


def test_motion_estimated_on_a_thread_pool_equals_the_sequential_filter() -> None:
    rng = np.random.default_rng(2)
    base, other = rng.integers(0, 256, (2, 40, 60, 3), dtype=np.uint8)
    clip = [np.roll(base, t, axis=1) for t in range(5)] + [np.roll(other, t, axis=0) for t in range(5)]
    model = tiny_model()
    raw = list(ClipUpscaler(model, chunk_frames=3).upscale(clip))
    sequential = TemporalStabilizer(0.3)
    expected = np.stack([sequential(low, out) for low, out in zip(clip, raw, strict=True)])
    assert sequential.restarts == 2  # the first frame and the cut
    for threads in (1, 3):
        upscaler = ClipUpscaler(model, chunk_frames=3, temporal_blend=0.3, motion_threads=threads)
        assert upscaler.motion_threads == threads
        assert np.array_equal(np.stack(list(upscaler.upscale(clip))), expected)
    assert ClipUpscaler(model).motion_threads == 1  # on a CPU the model's threads take the cores
    with pytest.raises(ValueError, match="motion_threads"):
        ClipUpscaler(model, motion_threads=0)
    with pytest.raises(VideoError, match="motion_threads"):
        UpscaleOptions(motion_threads=0).validate(Path("out.mp4"))


def test_blend_is_validated_and_defaults_agree() -> None:
    assert Settings().temporal_blend == UpscaleOptions().temporal_blend == DEFAULT_TEMPORAL_BLEND
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="temporal_blend"):
            TemporalStabilizer(bad)
        with pytest.raises(VideoError, match="temporal_blend") as caught:
            UpscaleOptions(temporal_blend=bad).validate(Path("out.mp4"))
        assert caught.value.code == "unsupported_option"
