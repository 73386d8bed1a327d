"""Synthetic test media written with PyAV: small H.264 clips with optional AAC audio, and clips with
rotation, colour tags, 10-bit samples, several audio tracks, subtitles and variable frame rate."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.bitstream import BitStreamFilterContext

from worker.video_io import VideoWriter, iter_frames, probe_video

AUDIO_RATE = 44100
AUDIO_CHUNK = 1024


def make_frame(index: int, width: int, height: int) -> np.ndarray:
    """Smooth moving RGB pattern for frame `index`: (height, width, 3) uint8."""
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    phase = index / 12.0
    r = 128 + 100 * np.sin(2 * np.pi * (x + phase)) + 0 * y
    g = 128 + 100 * np.cos(2 * np.pi * (y - phase)) + 0 * x
    b = 64 + 128 * (x * y) + 8 * (index % 4)
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


def make_test_clip(
    path: str | Path,
    *,
    frames: int,
    width: int,
    height: int,
    fps: int | Fraction = 24,
    audio: bool = True,
    vfr_pts: Sequence[int] | None = None,
) -> Path:
    """Write an H.264 mp4 of `make_frame` frames (plus a mono AAC sine tone of the same length).

    `vfr_pts`, if given, are the frames' presentation times in milliseconds (one per frame,
    increasing); otherwise frames are spaced 1/fps apart. Sizes must be even.
    """
    path = Path(path)
    fps = Fraction(fps)
    if vfr_pts is not None:
        if len(vfr_pts) != frames:
            raise ValueError("vfr_pts needs one entry per frame")
        time_base = Fraction(1, 1000)
        pts_list = [int(p) for p in vfr_pts]
        duration = Fraction(pts_list[-1], 1000) + 1 / fps
    else:
        time_base = 1 / fps
        pts_list = list(range(frames))
        duration = frames / fps
    with av.open(str(path), mode="w") as out:
        video = out.add_stream("libx264", rate=fps, time_base=time_base, options={"crf": "12"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = out.add_stream("aac", rate=AUDIO_RATE, layout="mono") if audio else None
        for i, pts in enumerate(pts_list):
            frame = av.VideoFrame.from_ndarray(make_frame(i, width, height), format="rgb24")
            frame.pts, frame.time_base = pts, time_base
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            total = round(duration * AUDIO_RATE)
            t = np.arange(total, dtype=np.float32) / AUDIO_RATE
            samples = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
            for start in range(0, total, AUDIO_CHUNK):
                chunk = samples[None, start : start + AUDIO_CHUNK]
                aframe = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                aframe.sample_rate, aframe.pts = AUDIO_RATE, start
                aframe.time_base = Fraction(1, AUDIO_RATE)
                out.mux(sound.encode(aframe))
            out.mux(sound.encode(None))
    return path


# --- clips for the faithful-output tests: a marked picture, colour tags, bit depth, rotation, tracks ---

MARK = 230  # the bright top-left corner of `marked_frame`: where it ends up shows the orientation
PATCH = (200, 60, 40)  # saturated: a wrong Y'CbCr matrix shifts it by far more than rounding
TONE_RATE = 48000
_SWS_MATRIX = {1: 1, 5: 6, 6: 6}  # AVColorSpace -> the swscale matrix that computes it (BT.601 is 6)


def marked_frame(index: int, width: int, height: int) -> np.ndarray:
    """Grey (brighter each frame), a bright top-left corner and a flat `PATCH` at the bottom right."""
    image = np.full((height, width, 3), 90 + 4 * index, np.uint8)
    image[: height * 3 // 8, : width // 3] = MARK
    image[height * 5 // 8 :, width * 2 // 3 :] = PATCH
    return image


def to_yuv(image: np.ndarray, pix_fmt: str, space: int, colour_range: int) -> av.VideoFrame:
    """RGB -> `pix_fmt` by swscale (independent of worker/colour.py), with the matrix of `space`."""
    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
    matrix = _SWS_MATRIX.get(space, 6)
    return frame.reformat(format=pix_fmt, dst_colorspace=matrix, dst_color_range=max(colour_range, 1))


def make_marked_clip(
    path: str | Path,
    *,
    frames: int,
    width: int = 48,
    height: int = 32,
    fps: int = 12,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    colour: tuple[int, int, int, int] | None = None,
    pts_ms: Sequence[int] | None = None,
    audio: Sequence[str] = (),
    subtitles: Path | None = None,
    subtitle_codec: str | None = None,
) -> Path:
    """A losslessly coded clip of `marked_frame`s, with optional extras.

    `colour`: (colorspace, primaries, transfer, range) tags, the pixels converted accordingly (None:
    untagged, converted as BT.601 limited range). `pts_ms`: one presentation time per frame, in ms
    (variable frame rate). `audio`: one sine-tone track per codec name, as long as the video.
    `subtitles`: an .srt file whose cues are muxed as they are, or re-encoded with `subtitle_codec`.
    """
    path = Path(path)
    time_base = Fraction(1, 1000) if pts_ms is not None else Fraction(1, fps)
    pts_list = list(pts_ms) if pts_ms is not None else list(range(frames))
    space, colour_range = (colour[0], colour[3]) if colour else (2, 1)
    with av.open(str(path), "w") as out:
        lossless = {"libx264": {"qp": "0"}, "libx265": {"x265-params": "lossless=1:log-level=error"}}
        video = out.add_stream(codec, rate=fps, time_base=time_base, options=lossless[codec])
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        if colour:
            ctx = video.codec_context
            ctx.colorspace, ctx.color_primaries, ctx.color_trc, ctx.color_range = colour
        tracks = [out.add_stream(name, rate=TONE_RATE, layout="mono") for name in audio]
        with _subtitle_muxer(out, subtitles, subtitle_codec) as mux_subtitles:
            for i, pts in enumerate(pts_list):
                frame = to_yuv(marked_frame(i, width, height), pix_fmt, space, colour_range)
                frame.pts, frame.time_base = pts, time_base
                out.mux(video.encode(frame))
            out.mux(video.encode(None))
            seconds = float(pts_list[-1] * time_base) + 1 / fps
            for n, track in enumerate(tracks):
                _write_tone(out, track, 440.0 * (n + 1), seconds)
            mux_subtitles()
    return path


def _write_tone(out: av.container.OutputContainer, track: av.AudioStream, hz: float, seconds: float) -> None:
    """`seconds` of a sine tone, in the encoder's own sample format."""
    encoder = track.codec_context
    size = encoder.frame_size or 1024
    total = round(seconds * TONE_RATE)
    fmt = encoder.format.name
    for start in range(0, total, size):
        t = np.arange(start, min(start + size, total), dtype=np.float64) / TONE_RATE
        wave = 0.3 * np.sin(2 * np.pi * hz * t)[None, :]
        samples = (wave * 32767).astype(np.int16) if fmt.startswith("s16") else wave.astype(np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format=fmt, layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = TONE_RATE, start, Fraction(1, TONE_RATE)
        out.mux(track.encode(frame))
    out.mux(track.encode(None))


@contextmanager
def _subtitle_muxer(
    out: av.container.OutputContainer, srt: Path | None, codec: str | None
) -> Iterator[Callable[[], None]]:
    """Adds the subtitle stream now (before the header is written); yields a function that muxes it."""
    if srt is None:
        yield lambda: None
        return
    with av.open(str(srt)) as source:
        cues = source.streams.subtitles[0]
        if codec is None:
            stream = out.add_stream_from_template(cues)
        else:
            cues.codec_context.open()  # sets the ASS header the encoder needs
            stream = out.add_stream(codec)
            stream.codec_context.time_base = stream.time_base = cues.time_base
            stream.codec_context.subtitle_header = cues.codec_context.subtitle_header

        def mux() -> None:
            for packet in source.demux(cues):
                if packet.dts is None:
                    continue
                if codec is not None:
                    encoded = stream.codec_context.encode_subtitle(cues.codec_context.decode2(packet))
                    encoded.pts, encoded.dts, encoded.duration = packet.pts, packet.dts, packet.duration
                    encoded.time_base, packet = packet.time_base, encoded
                packet.stream = stream
                out.mux(packet)

        yield mux


def rotate_tkhd(path: Path, clockwise: int) -> Path:
    """A copy of mp4 `path` whose video track header carries the display matrix a phone writes for a
    clockwise turn. (FFmpeg 8's mov muxer ignores the old `rotate` metadata and PyAV 16 cannot set a
    stream's display-matrix side data, so the matrix is written into the tkhd box directly.)"""
    matrices = {  # a, b, u, c, d, v (16.16 fixed point), x, y, w (2.30)
        90: (0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30),
        180: (-65536, 0, 0, 0, -65536, 0, 0, 0, 1 << 30),
        270: (0, -65536, 0, 65536, 0, 0, 0, 0, 1 << 30),
    }
    from tests.support.hostile_media import one_box  # it imports this module

    data = bytearray(path.read_bytes())
    box = one_box(bytes(data), b"tkhd")
    offset = box.payload + 4 + (36 if data[box.payload] == 0 else 48)  # version/flags, times, ids...
    data[offset : offset + 36] = struct.pack(">9i", *matrices[clockwise])
    rotated = path.with_name(f"{path.stem}-tkhd{clockwise}{path.suffix}")
    rotated.write_bytes(bytes(data))
    return rotated


def rotate_sei(path: Path, clockwise: int) -> Path:
    """A copy of H.264 `path` with a display-orientation SEI (h264_metadata bitstream filter), as some
    cameras write it; FFmpeg attaches the rotation to the frames that carry the SEI."""
    rotated = path.with_name(f"{path.stem}-sei{clockwise}{path.suffix}")
    anticlockwise = (360 - clockwise) % 360
    with av.open(str(path)) as source, av.open(str(rotated), "w") as out:
        video = source.streams.video[0]
        stream = out.add_stream_from_template(video)
        bsf = BitStreamFilterContext(
            f"h264_metadata=display_orientation=insert:rotate={anticlockwise}", video
        )
        for packet in source.demux(video):
            for filtered in bsf.filter(packet if packet.dts is not None else None):
                filtered.stream = stream
                out.mux(filtered)
    return rotated


def rewrite_clip(source: Path, output: Path, **writer_options: object) -> Path:
    """Decode `source` with `iter_frames` and encode it with `VideoWriter` (preset ultrafast unless
    `writer_options` say otherwise), keeping every frame's pts."""
    info = probe_video(source)
    options = {"preset": "ultrafast", **writer_options}
    size = {"width": info.width, "height": info.height, "fps": info.fps, "time_base": info.time_base}
    with VideoWriter(output, **size, **options) as writer:  # type: ignore[arg-type]
        for frame in iter_frames(source):
            writer.write(frame.image, frame.pts)
    return output
