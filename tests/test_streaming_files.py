"""The streaming pipeline on real files: chunked equals unchunked, tiles, and stopping mid-way."""

from __future__ import annotations

import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import tiny_model
from worker.upscale_file import UpscaleOptions, upscale_video
from worker.upscaler import ClipUpscaler
from worker.video_io import VideoError, iter_frames

FRAMES = 12


@pytest.fixture(scope="module")
def real_clip(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first frames of a real LR video, cropped to 150x90 (no multiple of 8), re-encoded losslessly."""
    path = tmp_path_factory.mktemp("real") / "dove_007_head.mkv"
    frames = [
        f.image[40:130, 80:230]
        for _, f in zip(
            range(FRAMES), iter_frames(shared_data / "videos" / "dove_demo_007.mp4"), strict=False
        )
    ]
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264rgb", rate=16, options={"crf": "0", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "rgb24"
        stream.time_base = Fraction(1, 16)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def _decoded(path: Path) -> np.ndarray:
    return np.stack([f.image for f in iter_frames(path)]).astype(int)


def _stage_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name in ("vsr-read", "vsr-write")]


def test_chunked_output_equals_whole_clip_output(real_clip: Path, tmp_path: Path) -> None:
    model = tiny_model()
    lossless = {"crf": 0, "preset": "ultrafast"}
    whole = upscale_video(
        real_clip, tmp_path / "whole.mkv", model, UpscaleOptions(chunk_frames=100, **lossless)
    )
    chunked = upscale_video(
        real_clip, tmp_path / "chunked.mkv", model, UpscaleOptions(chunk_frames=4, **lossless)
    )
    assert whole.frames == chunked.frames == FRAMES
    a, b = _decoded(tmp_path / "whole.mkv"), _decoded(tmp_path / "chunked.mkv")
    assert a.shape == b.shape == (FRAMES, 90 * 4, 150 * 4, 3)
    difference = np.abs(a - b)
    # float differences of ~1e-6 round to at most 1 RGB level (tests/test_models.py); through 4:2:0 that
    # becomes up to 1 level of Y and of each chroma sample, a few RGB levels back, on a few pixels only
    assert difference.mean() < 0.01 and difference.max() <= 5, (difference.mean(), difference.max())
    assert a.std() > 10


def test_tiles_within_a_memory_budget_through_the_file_pipeline(real_clip: Path, tmp_path: Path) -> None:
    model = tiny_model()
    budget = 152 << 20  # the whole 152x96 (padded) frame needs 159 MiB per chunk of 4, two tiles 148
    options = UpscaleOptions(chunk_frames=4, memory_budget_bytes=budget)
    assert len(ClipUpscaler(model, chunk_frames=4, memory_budget_bytes=budget).plan(90, 150)) == 2
    result = upscale_video(real_clip, tmp_path / "tiled.mp4", model, options)
    assert (result.width, result.height, result.frames) == (150 * 4, 90 * 4, FRAMES)
    assert len(list(iter_frames(tmp_path / "tiled.mp4"))) == FRAMES


def test_a_budget_too_small_fails_before_any_output(real_clip: Path, tmp_path: Path) -> None:
    options = UpscaleOptions(chunk_frames=4, memory_budget_bytes=1 << 20)
    with pytest.raises(VideoError, match="over the memory budget of 1 MiB") as caught:
        upscale_video(real_clip, tmp_path / "out.mp4", tiny_model(), options)
    assert caught.value.code == "input_too_large"
    assert list(tmp_path.iterdir()) == []


class CanceledError(Exception):
    pass


def test_stopping_mid_way_leaves_no_output_and_no_threads(real_clip: Path, tmp_path: Path) -> None:
    done: list[int] = []

    def progress(frames: int, total: int | None) -> None:
        done.append(frames)
        if frames == 5:
            raise CanceledError

    with pytest.raises(CanceledError):
        upscale_video(real_clip, tmp_path / "out.mp4", tiny_model(), UpscaleOptions(chunk_frames=4), progress)
    assert done == [1, 2, 3, 4, 5]
    assert list(tmp_path.iterdir()) == []  # not even the temporary partial file
    assert _stage_threads() == []
