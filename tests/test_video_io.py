"""Tests for worker.video_io on real files written and read through PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.media import make_frame, make_test_clip, rewrite_clip
from worker.video_io import Frame, VideoError, VideoWriter, iter_frames, probe_video

DOVE = Path(__file__).resolve().parents[2] / "shared/data/videos/dove_demo_007.mp4"
W, H, N = 64, 48, 30


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_test_clip(tmp_path_factory.mktemp("clip") / "in.mp4", frames=N, width=W, height=H)


def _audio_packets(path: Path) -> list[av.Packet]:
    with av.open(str(path)) as c:
        return [p for p in c.demux(audio=0) if p.dts is not None]


def _video_pts_seconds(path: Path) -> list[Fraction]:
    with av.open(str(path)) as c:
        return [f.pts * f.time_base for f in c.decode(video=0)]


def test_probe_generated_clip(clip: Path) -> None:
    info = probe_video(clip)
    assert (info.width, info.height) == (W, H)
    assert info.fps == 24
    assert info.has_audio and info.audio_codecs == ("aac",)
    assert info.frames_estimate == N
    assert info.duration_s == pytest.approx(N / 24, abs=0.05)
    assert info.path == str(clip)


def test_probe_without_audio(tmp_path: Path) -> None:
    path = make_test_clip(tmp_path / "a.mp4", frames=3, width=32, height=32, audio=False)
    info = probe_video(path)
    assert not info.has_audio and info.audio_codecs == ()


def test_iter_frames_count_and_content(clip: Path) -> None:
    frames = list(iter_frames(clip))
    assert len(frames) == N
    assert all(isinstance(f, Frame) for f in frames)
    for i, frame in enumerate(frames):
        assert frame.image.shape == (H, W, 3) and frame.image.dtype == np.uint8
        diff = np.abs(frame.image.astype(np.int16) - make_frame(i, W, H).astype(np.int16))
        assert diff.mean() < 6, f"frame {i} differs by {diff.mean():.1f}"
    pts = [f.pts for f in frames]
    assert pts == sorted(pts) and len(set(pts)) == N


def test_writer_roundtrip_keeps_pts_and_audio(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    rewrite_clip(clip, out, audio_source=clip)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]
    src, dst = probe_video(clip), probe_video(out)
    assert (dst.width, dst.height, dst.fps, dst.time_base) == (W, H, src.fps, src.time_base)
    assert [f.pts for f in iter_frames(out)] == [f.pts for f in iter_frames(clip)]
    assert dst.audio_codecs == src.audio_codecs
    a_src, a_dst = _audio_packets(clip), _audio_packets(out)
    assert len(a_dst) == len(a_src)
    assert [bytes(p) for p in a_dst] == [bytes(p) for p in a_src]
    assert dst.duration_s == pytest.approx(src.duration_s, abs=0.1)


def _first_audio_seconds(path: Path) -> Fraction:
    packet = _audio_packets(path)[0]
    return packet.pts * packet.time_base


@pytest.mark.parametrize(("suffix", "codec"), [(".mp4", "h265"), (".mov", "h264"), (".mkv", "h264")])
def test_writer_keeps_variable_frame_rate(tmp_path: Path, suffix: str, codec: str) -> None:
    src = make_test_clip(
        tmp_path / "vfr.mp4", frames=6, width=W, height=H, vfr_pts=[0, 40, 100, 110, 300, 320]
    )
    out = tmp_path / f"vfr_out{suffix}"
    rewrite_clip(src, out, audio_source=src, codec=codec, crf=30)
    got, want = _video_pts_seconds(out), _video_pts_seconds(src)
    assert len(_audio_packets(out)) == len(_audio_packets(src))
    if suffix == ".mkv":
        # Matroska (1 ms ticks) shifts all streams so that the AAC priming packet is not negative.
        shift = got[0] - want[0]
        assert [t - shift for t in got] == want
        assert abs(_first_audio_seconds(out) - shift - _first_audio_seconds(src)) <= Fraction(1, 1000)
    else:
        assert got == want
        assert _first_audio_seconds(out) == _first_audio_seconds(src)


def test_writer_generates_pts_and_hvc1_tag(tmp_path: Path) -> None:
    out = tmp_path / "gen.mp4"
    with VideoWriter(out, width=W, height=H, fps=Fraction(25), time_base=Fraction(1, 25), codec="h265") as w:
        for i in range(5):
            w.write(make_frame(i, W, H), None)
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.codec_tag == "hvc1"
        assert not c.streams.audio
    assert _video_pts_seconds(out) == [Fraction(i, 25) for i in range(5)]


def test_real_odd_size_file(shared_data: Path) -> None:
    assert DOVE.is_relative_to(shared_data)  # the fixture fails (not skips) when the data is missing
    info = probe_video(DOVE)
    assert (info.width, info.height, info.fps) == (316, 178, 16)
    frames = list(iter_frames(DOVE))
    assert len(frames) == 33
    assert all(f.image.shape == (178, 316, 3) for f in frames)


def _code(path: Path) -> str:
    with pytest.raises(VideoError) as exc_info:
        probe_video(path)
    with pytest.raises(VideoError) as iter_info:
        list(iter_frames(path))
    assert iter_info.value.code == exc_info.value.code
    return exc_info.value.code


def test_bad_inputs(tmp_path: Path, clip: Path) -> None:
    assert _code(tmp_path / "missing.mp4") == "not_found"
    (tmp_path / "x.mp4").write_text("this is not a video\n" * 20)
    assert _code(tmp_path / "x.mp4") == "not_a_video"
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert _code(tmp_path / "empty.mp4") == "not_a_video"
    (tmp_path / "trunc.mp4").write_bytes(clip.read_bytes()[:2048])
    with pytest.raises(VideoError) as exc_info:
        list(iter_frames(tmp_path / "trunc.mp4"))
    assert exc_info.value.code in {"not_a_video", "no_frames", "decode_error"}


def test_corrupt_mid_stream_is_decode_error(tmp_path: Path, clip: Path) -> None:
    data = bytearray(clip.read_bytes())
    end = data.find(b"moov")  # the generated mp4 has mdat first, then moov
    data[end // 3 : 2 * end // 3] = bytes(2 * end // 3 - end // 3)
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(bytes(data))
    assert probe_video(path).width == W
    with pytest.raises(VideoError) as exc_info:
        list(iter_frames(path))
    assert exc_info.value.code == "decode_error"


def test_audio_only_file_is_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "audio.m4a"
    with av.open(str(path), mode="w", format="mp4") as out:
        stream = out.add_stream("aac", rate=44100, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 44100, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    assert _code(path) == "not_a_video"


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("a.mp4", {"codec": "vp9"}),
        ("a.mp4", {"crf": 52}),
        ("a.mp4", {"crf": -1}),
        ("a.mp4", {"crf": 18.0}),
        ("a.mp4", {"preset": "turbo"}),
        ("a.mp4", {"width": 63}),
        ("a.mp4", {"height": 0}),
        ("a.avi", {}),
        ("a", {}),
    ],
)
def test_writer_rejects_bad_options(tmp_path: Path, name: str, kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"width": W, "height": H, "fps": Fraction(24), "time_base": Fraction(1, 24)}
    args.update(kwargs)
    with pytest.raises(VideoError) as exc_info:
        VideoWriter(tmp_path / name, **args)  # type: ignore[arg-type]
    assert exc_info.value.code == "unsupported_option"
    assert list(tmp_path.iterdir()) == []


def test_writer_exception_leaves_nothing(tmp_path: Path, clip: Path) -> None:
    out = tmp_path / "fail.mp4"
    with (
        pytest.raises(RuntimeError, match="boom"),
        VideoWriter(
            out, width=W, height=H, fps=Fraction(24), time_base=Fraction(1, 24), audio_source=clip
        ) as w,
    ):
        for i in range(3):
            w.write(make_frame(i, W, H), i)
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_wrong_frame_and_empty_output(tmp_path: Path) -> None:
    w = VideoWriter(tmp_path / "o.mp4", width=W, height=H, fps=Fraction(24), time_base=Fraction(1, 24))
    with pytest.raises(ValueError, match="shape"):
        w.write(np.zeros((H, W + 2, 3), np.uint8), 0)
    with pytest.raises(VideoError) as exc_info:
        w.close()
    assert exc_info.value.code == "encode_error"
    assert list(tmp_path.iterdir()) == []
