"""`vsr upscale` end to end on real files: generated clips with audio and a real odd-size video."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import pytest

from models.weights import save_model
from tests.conftest import tiny_model
from tests.media import make_test_clip
from worker.video_io import iter_frames, probe_video


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_model(tiny_model(), tmp_path_factory.mktemp("model") / "tiny")


def run_vsr(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "vsr.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def audio_packets(path: Path) -> list[tuple[str, int]]:
    with av.open(str(path)) as container:
        return [
            (stream.codec_context.name, sum(1 for p in container.demux(stream) if p.dts is not None))
            for stream in container.streams.audio
        ]


def test_upscale_generated_clip_with_audio(tmp_path: Path, model_dir: Path) -> None:
    source = make_test_clip(tmp_path / "in.mp4", frames=10, width=48, height=32, fps=Fraction(25), audio=True)
    output = tmp_path / "out.mp4"
    result = run_vsr("upscale", source, output, "--model", model_dir, "--chunk-frames", "4", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    info = probe_video(output)
    assert (info.width, info.height) == (192, 128)
    assert info.fps == Fraction(25)
    frames = list(iter_frames(output))
    assert len(frames) == summary["frames"] == 10
    assert [f.pts for f in frames] == [f.pts for f in iter_frames(source)]  # timestamps kept
    assert audio_packets(output) == audio_packets(source)  # every audio packet copied, not re-encoded
    assert set(summary["seconds"]) == {"encode", "denoise", "decode", "stabilize", "wall"}
    assert summary["seconds"]["stabilize"] > 0  # the temporal stabilizer runs by default
    assert summary["macs"]["total"] == sum(summary["macs"][k] for k in ("encoder", "denoiser", "decoder")) > 0
    assert "frame" in result.stderr  # the progress bar ran


def test_progress_bar_shows_frames_rate_and_eta(tmp_path: Path, model_dir: Path) -> None:
    source = make_test_clip(tmp_path / "in.mp4", frames=6, width=32, height=24, audio=False)
    result = run_vsr("upscale", source, tmp_path / "out.mp4", "--model", model_dir, "--chunk-frames", "2")
    assert result.returncode == 0, result.stderr
    final = result.stderr.replace("\r", "\n").split("\n")
    final = [line for line in final if "6/6" in line][-1]  # the bar once every frame is done
    assert re.search(r"100%\|.*\| 6/6 \[\s*\d+\.\d+ frames/s, elapsed \d\d:\d\d, ETA 00:00\]", final), final


def test_upscale_real_odd_size_video(tmp_path: Path, model_dir: Path, shared_data: Path) -> None:
    source = shared_data / "videos" / "dove_demo_007.mp4"
    output = tmp_path / "odd.mp4"
    result = run_vsr("upscale", source, output, "--model", model_dir, "--no-progress")
    assert result.returncode == 0, result.stderr
    info = probe_video(output)
    assert (info.width, info.height) == (316 * 4, 178 * 4)
    assert info.fps == probe_video(source).fps == 16
    assert sum(1 for _ in iter_frames(output)) == 33
    assert "MACs:" in result.stdout and "stage seconds:" in result.stdout


def test_default_model_says_which_weights_it_uses(tmp_path: Path) -> None:
    source = make_test_clip(tmp_path / "in.mp4", frames=2, width=32, height=16, audio=False)
    result = run_vsr("upscale", source, tmp_path / "out.mkv", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "model: shipped weights" in result.stderr and "fastvsr-tiny" in result.stderr
    assert probe_video(tmp_path / "out.mkv").width == 128


def _text_file(tmp: Path) -> Path:
    path = tmp / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    return path


def _empty_file(tmp: Path) -> Path:
    path = tmp / "empty.mp4"
    path.touch()
    return path


def _truncated(tmp: Path) -> Path:
    clip = make_test_clip(tmp / "whole.mp4", frames=8, width=32, height=32, audio=False)
    path = tmp / "truncated.mp4"
    path.write_bytes(clip.read_bytes()[:1500])
    clip.unlink()
    return path


def _short_clip(tmp: Path) -> Path:
    return make_test_clip(tmp / "ok.mp4", frames=2, width=16, height=16, audio=False)


def _audio_only(tmp: Path) -> Path:
    path = tmp / "sound.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=44100, layout="mono")
        import numpy as np

        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 44100, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@pytest.mark.parametrize(
    ("make_input", "extra", "code"),
    [
        (lambda tmp: tmp / "missing.mp4", [], "not_found"),
        (_text_file, [], "not_a_video"),
        (_empty_file, [], "not_a_video"),
        (_truncated, [], None),
        (_audio_only, [], "not_a_video"),
        (_short_clip, ["--scale", "2"], "unsupported_option"),
        (_short_clip, ["--crf", "99"], "unsupported_option"),
        (_short_clip, ["--preset", "warp"], "unsupported_option"),
        (_short_clip, ["--temporal-blend", "1.5"], "unsupported_option"),
        (_short_clip, ["--model", "/nonexistent/model"], "bad_model"),
    ],
    ids=["missing", "text", "empty", "truncated", "audio-only", "scale", "crf", "preset", "blend", "model"],
)
def test_bad_input_fails_cleanly(tmp_path: Path, make_input, extra: list[str], code: str | None) -> None:  # type: ignore[no-untyped-def]
    source = make_input(tmp_path)
    before = set(tmp_path.iterdir())
    output = tmp_path / "result.mp4"
    result = run_vsr("upscale", source, output, "--no-progress", *extra)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("vsr: error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    if code is not None:
        assert errors[0].startswith(f"vsr: error: {code}:"), errors[0]
    assert not output.exists()
    assert set(tmp_path.iterdir()) == before  # no partial or temporary files left


@pytest.mark.parametrize(
    "args",
    [["upscale"], ["upscale", "a.mp4"], ["upscale", "a.mp4", "b.mp4", "--crf", "high"], ["shrink", "a", "b"]],
)
def test_usage_errors_are_one_line(args: list[str]) -> None:
    result = run_vsr(*args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("vsr: error:")


def test_bad_output_container_leaves_nothing(tmp_path: Path) -> None:
    source = make_test_clip(tmp_path / "in.mp4", frames=2, width=16, height=16, audio=False)
    result = run_vsr("upscale", source, tmp_path / "out.gif", "--no-progress")
    assert result.returncode == 1
    assert "unsupported_option" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
