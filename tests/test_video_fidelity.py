"""Faithful output on real files generated with PyAV (tests/media.py): rotation, colour tags and
values, 10-bit input, subtitles, audio tracks, variable frame rate and odd sizes, end to end through
`upscale_video` with a tiny model, and through `VideoWriter` where pixel values are compared."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from models.sr_model import VSRModel
from tests.conftest import tiny_model
from tests.media import (
    MARK,
    PATCH,
    make_marked_clip,
    marked_frame,
    rewrite_clip,
    rotate_sei,
    rotate_tkhd,
    to_yuv,
)
from worker.colour import resolve_tags, ycbcr_to_rgb
from worker.upscale_file import UpscaleOptions, upscale_video
from worker.video_io import iter_frames, probe_video

W, H, FPS = 48, 32, 12
FAST = UpscaleOptions(chunk_frames=4, preset="ultrafast", crf=10)
SRT = "1\n00:00:00,000 --> 00:00:00,500\nhello\n\n2\n00:00:00,500 --> 00:00:00,900\nworld\n"


@pytest.fixture(scope="module")
def model() -> VSRModel:
    return tiny_model()


def _patch_samples(frame: av.VideoFrame) -> list[np.ndarray]:
    """The stored Y', Cb, Cr samples of the `PATCH` area of a 4:2:0 frame (no swscale conversion)."""
    samples = []
    for plane, step in zip(frame.planes, (1, 2, 2), strict=True):
        rows = np.frombuffer(bytes(plane), np.uint8).reshape(-1, plane.line_size)
        samples.append(rows[H * 3 // 4 // step : H // step, W * 3 // 4 // step : W // step].astype(int))
    return samples


def _rotations(path: Path) -> list[int]:
    """FFmpeg's (anticlockwise) display rotation of every decoded frame."""
    with av.open(str(path)) as c:
        return [int(f.rotation) for f in c.decode(video=0)]


def _frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        return sorted(float(f.pts * stream.time_base) for f in c.decode(stream))


def _audio_spans(path: Path) -> list[tuple[str, float, float]]:
    """(codec, start s, end s) of every audio stream, from its packets."""
    with av.open(str(path)) as c:
        spans = {s.index: [s.codec_context.name, np.inf, -np.inf] for s in c.streams.audio}
        for packet in c.demux(*c.streams.audio):
            if packet.pts is not None:
                span = spans[packet.stream_index]
                span[1] = min(span[1], float(packet.pts * packet.time_base))
                span[2] = max(span[2], float((packet.pts + packet.duration) * packet.time_base))
    return [(name, max(start, 0.0), end) for name, start, end in spans.values()]


def _cues(path: Path) -> list[tuple[float, str]]:
    """(start s, text) of every non-empty cue of the first subtitle stream, whatever its codec."""
    cues = []
    with av.open(str(path)) as c:
        stream = c.streams.subtitles[0]
        for packet in c.demux(stream):
            subtitle = stream.codec_context.decode2(packet) if packet.size else None
            for rect in subtitle or ():
                cues.append((float(packet.pts * packet.time_base), rect.ass.split(b",", 8)[-1].decode()))
    return cues


@pytest.mark.parametrize(("how", "clockwise"), [("tkhd", 90), ("tkhd", 180), ("tkhd", 270), ("sei", 90)])
def test_rotated_clip_comes_out_upright(tmp_path: Path, model: VSRModel, how: str, clockwise: int) -> None:
    plain = make_marked_clip(tmp_path / "clip.mp4", frames=5, width=W, height=H)
    source = (rotate_tkhd if how == "tkhd" else rotate_sei)(plain, clockwise)
    assert -_rotations(source)[0] % 360 == clockwise  # the generated clip reads back rotated
    info = probe_video(source)
    assert info.rotation == clockwise
    assert (info.width, info.height) == ((H, W) if clockwise in (90, 270) else (W, H))
    upright = [np.rot90(marked_frame(i, W, H), k=-clockwise // 90) for i in range(5)]  # as players show
    decoded = [f.image for f in iter_frames(source)]
    assert all(np.abs(d.astype(int) - u).mean() < 2 for d, u in zip(decoded, upright, strict=True))

    # the output frames: the input's, turned
    rewritten = rewrite_clip(source, tmp_path / "rewritten.mp4", crf=0, colour=info.colour)
    assert _rotations(rewritten) == [0] * 5
    frames = [f.image for f in iter_frames(rewritten)]
    assert all(np.abs(f.astype(int) - u).mean() < 2 for f, u in zip(frames, upright, strict=True))

    result = upscale_video(source, tmp_path / "out.mp4", model, FAST)
    out = probe_video(result.output)
    assert (out.width, out.height) == (4 * info.width, 4 * info.height)
    assert out.rotation == 0 and _rotations(result.output) == [0] * 5
    grey = next(iter_frames(result.output)).image.astype(float).mean(axis=-1)
    mark = np.kron(upright[0][..., 0] == MARK, np.ones((4, 4))).astype(bool)  # where the corner must be
    assert grey[mark].mean() > grey[~mark].mean() + 40  # the (tiny, untrained) model keeps coarse shapes


@pytest.mark.parametrize(
    ("colour", "pix_fmt", "tags"),
    [
        ((1, 1, 1, 2), "yuv420p", (1, 1, 1, 2)),  # BT.709, full range
        ((5, 5, 6, 1), "yuv420p", (5, 5, 6, 1)),  # BT.601 625 (bt470bg), limited range
        ((6, 6, 6, 1), "yuv420p", (6, 6, 6, 1)),  # BT.601 525 (smpte170m), limited range
        ((5, 5, 6, 2), "yuvj420p", (5, 5, 6, 2)),  # a full-range ("J") pixel format
        (None, "yuv420p", (6, 6, 6, 1)),  # untagged SD: read as BT.601 limited, and tagged so
    ],
)
def test_colour_tags_are_carried_and_colours_do_not_shift(
    tmp_path: Path,
    model: VSRModel,
    colour: tuple[int, int, int, int] | None,
    pix_fmt: str,
    tags: tuple[int, int, int, int],
) -> None:
    source = make_marked_clip(
        tmp_path / "clip.mkv", frames=3, width=W, height=H, colour=colour, pix_fmt=pix_fmt
    )
    decoded = next(iter_frames(source)).image
    assert np.abs(decoded[H * 3 // 4 :, W * 3 // 4 :].astype(int) - PATCH).max() <= 3
    assert np.abs(decoded[: H // 4, : W // 4].astype(int) - MARK).max() <= 3

    rewritten = rewrite_clip(source, tmp_path / "rewritten.mkv", crf=0, colour=probe_video(source).colour)
    with av.open(str(rewritten)) as c:
        ctx = c.streams.video[0].codec_context
        assert (ctx.colorspace, ctx.color_primaries, ctx.color_trc, ctx.color_range) == tags
        stored = _patch_samples(next(c.decode(video=0)))
    patch = np.zeros((8, 8, 3), np.uint8) + np.uint8(PATCH)
    expected = to_yuv(patch, "yuv444p", tags[0], tags[3]).to_ndarray()[:, 0, 0]  # swscale's own matrix
    assert all(np.abs(s - e).max() <= 2 for s, e in zip(stored, expected.astype(int), strict=True))
    again = next(iter_frames(rewritten)).image
    assert np.abs(again[H * 3 // 4 :, W * 3 // 4 :].astype(int) - PATCH).max() <= 3

    result = upscale_video(source, tmp_path / "out.mkv", model, FAST)
    with av.open(str(result.output)) as c:
        ctx = c.streams.video[0].codec_context
        assert (ctx.colorspace, ctx.color_primaries, ctx.color_trc, ctx.color_range) == tags


def test_ycbcr_matrices_match_the_standards() -> None:
    """Y'CbCr (120, 90, 170), limited range: BT.709 and BT.601 RGB as FFmpeg's swscale computes them."""
    ycbcr = np.array([[[120, 90, 170]]], np.uint16) << 8
    assert np.abs(ycbcr_to_rgb(ycbcr, resolve_tags(1, 1, 1, 1, 1080)).astype(int) - (196, 106, 40)).max() <= 1
    assert np.abs(ycbcr_to_rgb(ycbcr, resolve_tags(5, 5, 6, 1, 480)).astype(int) - (188, 100, 44)).max() <= 2
    full = resolve_tags(5, 5, 6, 2, 480)
    assert np.abs(ycbcr_to_rgb(ycbcr, full).astype(int) - (178, 103, 52)).max() <= 1


@pytest.mark.parametrize("colour_range", [1, 2])
def test_ten_bit_input_is_processed_at_eight_bit(tmp_path: Path, model: VSRModel, colour_range: int) -> None:
    source = make_marked_clip(
        tmp_path / "ten.mkv",
        frames=4,
        width=W,
        height=H,
        pix_fmt="yuv420p10le",
        codec="libx265",
        colour=(1, 1, 1, colour_range),
    )
    with av.open(str(source)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p10le"
    first = next(iter_frames(source)).image
    assert (
        first.dtype == np.uint8 and np.abs(first[H * 3 // 4 :, W * 3 // 4 :].astype(int) - PATCH).max() <= 3
    )
    result = upscale_video(source, tmp_path / "out.mp4", model, FAST)
    assert (result.width, result.height, result.frames) == (4 * W, 4 * H, 4)
    with av.open(str(result.output)) as c:
        assert c.streams.video[0].codec_context.pix_fmt in ("yuv420p", "yuvj420p")  # 8-bit 4:2:0


def test_two_audio_tracks_are_kept_in_sync(tmp_path: Path, model: VSRModel) -> None:
    source = make_marked_clip(tmp_path / "two.mp4", frames=12, width=W, height=H, audio=["aac", "aac"])
    result = upscale_video(source, tmp_path / "out.mp4", model, FAST)
    tracks = _audio_spans(result.output)
    assert [name for name, _, _ in tracks] == ["aac", "aac"]
    rounded = [
        [(name, round(start, 3), round(end, 3)) for name, start, end in _audio_spans(path)]
        for path in (source, result.output)
    ]
    assert rounded[0] == rounded[1]  # both copied as they were
    video_seconds = 12 / FPS
    assert _frame_times(result.output) == pytest.approx([i / FPS for i in range(12)], abs=1e-3)
    for _, start, end in tracks:
        assert abs((end - start) - video_seconds) <= 1 / FPS


@pytest.mark.parametrize(
    ("suffix", "codec", "output"), [(".mov", "pcm_mulaw", ".mp4"), (".mkv", "flac", ".mov")]
)
def test_audio_the_container_cannot_hold_is_transcoded(
    tmp_path: Path, model: VSRModel, suffix: str, codec: str, output: str
) -> None:
    source = make_marked_clip(tmp_path / f"clip{suffix}", frames=12, width=W, height=H, audio=[codec])
    result = upscale_video(source, tmp_path / f"out{output}", model, FAST)
    ((name, start, end),) = _audio_spans(result.output)
    assert name == "aac" and abs((end - start) - 12 / FPS) <= 1 / FPS


@pytest.mark.parametrize(
    ("suffix", "subtitle_codec", "output", "kept"),
    [
        (".mkv", None, ".mkv", "copied"),  # subrip in mkv
        (".mp4", "mov_text", ".mov", "copied"),
        (".mkv", None, ".mp4", "mov_text"),  # mp4 cannot hold subrip
        (".mp4", "mov_text", ".mkv", "ass"),  # mkv cannot hold mov_text
    ],
)
def test_subtitles_are_kept(
    tmp_path: Path, model: VSRModel, suffix: str, subtitle_codec: str | None, output: str, kept: str
) -> None:
    srt = tmp_path / "subs.srt"
    srt.write_text(SRT)
    source = make_marked_clip(
        tmp_path / f"subs{suffix}", frames=12, width=W, height=H, subtitles=srt, subtitle_codec=subtitle_codec
    )
    assert len(probe_video(source).subtitle_codecs) == 1
    result = upscale_video(source, tmp_path / f"out{output}", model, FAST)
    assert result.frames == 12
    with av.open(str(source)) as src, av.open(str(result.output)) as out:
        (codec,) = [s.codec_context.codec.id for s in out.streams.subtitles]
        expected = src.streams.subtitles[0].codec_context.codec if kept == "copied" else av.Codec(kept, "w")
        assert codec == expected.id
    assert _cues(result.output) == [(0.0, "hello"), (0.5, "world")] == _cues(source)


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_variable_frame_rate_timestamps_are_kept(tmp_path: Path, model: VSRModel, suffix: str) -> None:
    pts_ms = [0, 40, 80, 200, 240, 400, 430, 460, 700, 760]
    source = make_marked_clip(
        tmp_path / f"vfr{suffix}", frames=10, width=W, height=H, pts_ms=pts_ms, audio=["aac"]
    )
    assert _frame_times(source) == pytest.approx([p / 1000 for p in pts_ms], abs=1e-6)
    result = upscale_video(source, tmp_path / f"out{suffix}", model, FAST)
    assert result.frames == len(pts_ms)
    assert _frame_times(result.output) == pytest.approx(_frame_times(source), abs=5e-4)
    ((_, start, end),) = _audio_spans(result.output)
    video_seconds = pts_ms[-1] / 1000 + 1 / FPS
    assert abs((end - start) - video_seconds) <= 1 / FPS


def _head(source: Path, output: Path, packets: int) -> Path:
    """The first `packets` video packets of `source`, stream-copied (the real bitstream, shorter)."""
    with av.open(str(source)) as src, av.open(str(output), "w") as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for n, packet in enumerate(src.demux(src.streams.video[0])):
            if n == packets or packet.dts is None:
                break
            packet.stream = stream
            out.mux(packet)
    return output


def test_real_odd_size_clip_end_to_end(shared_data: Path, tmp_path: Path, model: VSRModel) -> None:
    source = _head(shared_data / "videos" / "dove_demo_002.mp4", tmp_path / "dove_head.mp4", 5)
    info = probe_video(source)
    assert (info.width, info.height) == (318, 180)  # 318 = 2 x 3 x 53: no block size divides it
    frames = sum(1 for _ in iter_frames(source))
    assert frames >= 4
    result = upscale_video(source, tmp_path / "out.mp4", model, FAST)
    out = probe_video(result.output)
    assert (out.width, out.height) == (4 * 318, 4 * 180)
    assert result.frames == frames == sum(1 for _ in iter_frames(result.output))


def test_odd_width_and_height_end_to_end(tmp_path: Path, model: VSRModel) -> None:
    source = make_marked_clip(tmp_path / "odd.mkv", frames=3, width=33, height=25, pix_fmt="yuv444p")
    assert (probe_video(source).width, probe_video(source).height) == (33, 25)
    result = upscale_video(source, tmp_path / "out.mkv", model, FAST)
    assert (result.width, result.height, result.frames) == (132, 100, 3)
    assert [f.image.shape for f in iter_frames(result.output)] == [(100, 132, 3)] * 3
