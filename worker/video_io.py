"""Video probing, frame decoding and encoding (with audio and subtitle pass-through) on PyAV.

Faithful output:
- Rotation: frames are decoded upright. The display matrix (container tkhd or codec SEI) of the first
  frame gives a clockwise turn of 0/90/180/270 degrees that is applied to the pixels of every frame;
  `VideoInfo` reports the display size and the turn, and the output carries no rotation.
- Colour: Y'CbCr is converted with the matrix and range the input declares, and the output is
  converted and tagged with the same matrix, range, primaries and transfer (worker/colour.py).
- Bit depth: 8-bit and 10-bit (or deeper) input is accepted and processed as 8-bit RGB (10-bit input
  loses its two least significant bits); the output is always 8-bit 4:2:0.
- Timing: every frame keeps its presentation time (variable frame rate included).
- Audio: every stream is copied, or transcoded to AAC where the container cannot hold its codec.
- Subtitles: copied where the container holds their codec; text subtitles are converted otherwise
  (to mov_text for mp4/mov, ASS for mkv); what cannot be converted is dropped with a warning. A
  subtitle never fails the job.
"""

from __future__ import annotations

import io
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Protocol

import av
import numpy as np

from worker.colour import RGB_SPACE, ColourTags, resolve_tags, ycbcr_to_rgb
from worker.encode_options import CONTAINER_FORMATS, ENCODERS, PRESETS

logger = logging.getLogger(__name__)

_AV_ERRORS = (av.FFmpegError, OSError, ValueError)


class VideoError(Exception):
    """Bad or unsupported input video. `code` is a stable machine-readable string."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class VideoInfo:
    """Stream facts of a video file, as reported by the container. `width` x `height` is the display
    size (after `rotation`, the clockwise turn its display matrix asks for)."""

    path: str
    width: int
    height: int
    fps: Fraction
    time_base: Fraction
    frames_estimate: int | None
    has_audio: bool
    audio_codecs: tuple[str, ...]
    duration_s: float | None
    rotation: int = 0
    colour: ColourTags | None = None
    subtitle_codecs: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded frame: (H, W, 3) uint8 RGB and its pts in the stream time base."""

    image: np.ndarray
    pts: int | None


def _open_input(path: str | Path) -> av.container.InputContainer:
    """Open `path` for demuxing, mapping failures to `VideoError`."""
    p = Path(path)
    if not p.exists():
        raise VideoError("not_found", f"video file not found: {p}")
    try:
        container = av.open(str(p), mode="r")
    except _AV_ERRORS as exc:
        raise VideoError("not_a_video", f"cannot open {p} as a media container: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise VideoError("not_a_video", f"{p} has no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None:  # FFmpeg has no decoder for this codec tag
        container.close()
        raise VideoError("unsupported_codec", f"{p}: no decoder for its video codec")
    return container


def _stream_fps(stream: av.VideoStream) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate is not None and rate > 0:
            return Fraction(rate)
    return Fraction(30)


def probe_video(path: str | Path) -> VideoInfo:
    """Read the container header of `path` and describe its first video stream."""
    with _open_input(path) as container:
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if width <= 0 or height <= 0:
            raise VideoError("not_a_video", f"{path}: video stream has no frame size ({width}x{height})")
        fps = _stream_fps(stream)
        time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 90000)
        duration_s: float | None = None
        if stream.duration is not None and stream.duration > 0:
            duration_s = float(stream.duration * time_base)
        elif container.duration is not None and container.duration > 0:
            duration_s = container.duration / av.time_base
        frames_estimate: int | None = stream.frames if stream.frames > 0 else None
        if frames_estimate is None and duration_s is not None:
            frames_estimate = round(duration_s * fps)
        audio_codecs = tuple(s.codec_context.name for s in container.streams.audio)
        rotation = _first_frame_rotation(container)
        if rotation in (90, 270):
            width, height = height, width
        return VideoInfo(
            path=str(path),
            width=width,
            height=height,
            rotation=rotation,
            colour=stream_colour(stream),
            subtitle_codecs=tuple(s.codec_context.name for s in container.streams.subtitles),
            fps=fps,
            time_base=time_base,
            frames_estimate=frames_estimate,
            has_audio=bool(audio_codecs),
            audio_codecs=audio_codecs,
            duration_s=duration_s,
        )


def stream_colour(stream: av.VideoStream) -> ColourTags:
    """The colour tags a video stream declares, unspecified ones filled in as players do."""
    ctx = stream.codec_context
    return resolve_tags(
        int(ctx.colorspace), int(ctx.color_primaries), int(ctx.color_trc), int(ctx.color_range), ctx.height
    )


def _clockwise(frame: av.VideoFrame) -> int:
    """The clockwise turn (0, 90, 180, 270) that shows `frame` upright; FFmpeg's angle is anticlockwise."""
    try:
        return round(-float(frame.rotation) / 90) % 4 * 90
    except (TypeError, ValueError):
        return 0


def _first_frame_rotation(container: av.container.InputContainer) -> int:
    """Rotation lives in per-frame side data: decode the first frame (0 if it does not decode)."""
    try:
        frame = next(container.decode(video=0), None)
    except _AV_ERRORS:
        return 0
    return 0 if frame is None else _clockwise(frame)


def to_rgb(frame: av.VideoFrame, colour: ColourTags, clockwise: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a decoded frame, with `colour`'s matrix and range, turned `clockwise`."""
    name = frame.format.name
    if name.startswith(("rgb", "bgr", "gbr", "gray", "pal")) or int(frame.colorspace) == RGB_SPACE:
        image = frame.to_ndarray(format="rgb24")  # no Y'CbCr matrix involved
    elif name.startswith("yuvj"):  # full-range formats: a non-J target would squeeze the range
        planes = frame.to_ndarray(format="yuvj444p").astype(np.uint16) << 8  # (3, H, W)
        image = ycbcr_to_rgb(np.moveaxis(planes, 0, -1), colour)
    else:
        image = ycbcr_to_rgb(frame.to_ndarray(format="yuv444p16le"), colour)
    turns = clockwise // 90
    return np.ascontiguousarray(np.rot90(image, k=-turns)) if turns else image


def iter_frames(path: str | Path, max_frames: int | None = None) -> Iterator[Frame]:
    """Decode every frame of the first video stream in presentation order, one at a time.

    Every frame must have the size of the first (a stream that changes size mid-way is refused), and
    more than `max_frames` decoded frames raise `VideoError("input_too_long")`, whatever the header says.
    """
    container = _open_input(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        decoded = container.decode(video=0)
        colour = stream_colour(stream)
        header = (stream.codec_context.width, stream.codec_context.height)
        count, size = 0, header if min(header) > 0 else None  # decoded frames must match the header
        clockwise: int | None = None  # the first frame's turn, for all: some streams tag only the first
        while True:
            try:
                frame = next(decoded)
            except StopIteration:
                break
            except _AV_ERRORS as exc:
                msg = f"{path}: decoding failed after {count} frames: {exc}"
                raise VideoError("decode_error", msg) from exc
            if size is None:
                size = (frame.width, frame.height)
            elif (frame.width, frame.height) != size:
                msg = f"{path}: frame {count} is {frame.width}x{frame.height}, expected {size[0]}x{size[1]}"
                raise VideoError("decode_error", msg)
            if max_frames is not None and count >= max_frames:
                raise VideoError("input_too_long", f"{path}: more than {max_frames} frames")
            if clockwise is None:
                clockwise = _clockwise(frame)
            yield Frame(image=to_rgb(frame, colour, clockwise), pts=frame.pts)
            count += 1
        if count == 0:
            raise VideoError("no_frames", f"{path}: the video stream decoded no frames")
    finally:
        container.close()


def validate_encode_options(path: Path, codec: str, crf: int, preset: str) -> str:
    """Check output container and encoder options; return the container format name."""
    if codec not in ENCODERS:
        raise VideoError("unsupported_option", f"codec must be one of {sorted(ENCODERS)}, got {codec!r}")
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
        raise VideoError("unsupported_option", f"crf must be an integer in 0..51, got {crf!r}")
    if preset not in PRESETS:
        raise VideoError("unsupported_option", f"preset must be one of {', '.join(PRESETS)}; got {preset!r}")
    fmt = CONTAINER_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise VideoError(
            "unsupported_option",
            f"output suffix {path.suffix!r} is not supported; use one of {sorted(CONTAINER_FORMATS)}",
        )
    return fmt


def _validate(path: Path, codec: str, crf: int, preset: str, width: int, height: int) -> str:
    """Check writer options; return the container format name."""
    fmt = validate_encode_options(path, codec, crf, preset)
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, int) or value <= 0 or value % 2:
            raise VideoError(
                "unsupported_option", f"{name} must be a positive even integer for yuv420p, got {value!r}"
            )
    return fmt


class VideoWriter:
    """Encodes RGB frames to a file, copying the audio of a source file, written atomically."""

    def __init__(
        self,
        path: str | Path,
        *,
        width: int,
        height: int,
        fps: Fraction,
        time_base: Fraction,
        codec: str = "h264",
        crf: int = 18,
        preset: str = "medium",
        audio_source: str | Path | None = None,
        subtitle_source: str | Path | None = None,
        colour: ColourTags | None = None,
    ) -> None:
        """`audio_source` / `subtitle_source`: a file whose audio / subtitle streams are copied (the
        same file if both). `colour`: the output's colour tags and the matrix its frames are converted
        with (None: what players assume for this height, tagged explicitly)."""
        self.path = Path(path)
        fmt = _validate(self.path, codec, crf, preset, width, height)
        fps, time_base = Fraction(fps), Fraction(time_base)
        if fps <= 0 or time_base <= 0:
            raise VideoError("unsupported_option", f"fps and time_base must be > 0, got {fps}, {time_base}")
        self.width, self.height, self.fps, self.time_base = width, height, fps, time_base
        self.frames_written = 0
        self._last_pts: int | None = None
        self._done = False
        self.colour = colour or resolve_tags(2, 2, 2, 0, height)
        self._copy_in: av.container.InputContainer | None = None
        self._copy_map: dict[int, av.stream.Stream] = {}  # input stream index -> output stream
        self._converters: dict[int, _Converter] = {}  # input streams the container cannot hold
        self._copy_packets: Iterator[av.Packet] | None = None
        self._pending: av.Packet | None = None
        self._tmp = self.path.with_name(f".{self.path.name}.partial-{uuid.uuid4().hex}{self.path.suffix}")
        try:
            self._out = av.open(str(self._tmp), mode="w", format=fmt)
        except _AV_ERRORS as exc:
            self._tmp.unlink(missing_ok=True)
            raise VideoError("encode_error", f"cannot create output next to {self.path}: {exc}") from exc
        try:
            options = {"crf": str(crf), "preset": preset}
            if codec == "h265":
                options["x265-params"] = "log-level=error"
            encoder = ENCODERS[codec]
            self._video = self._out.add_stream(encoder, rate=fps, time_base=time_base, options=options)
            self._video.width, self._video.height, self._video.pix_fmt = width, height, "yuv420p"
            self._video.codec_context.framerate = fps
            ctx, tags = self._video.codec_context, self.colour
            ctx.colorspace, ctx.color_primaries, ctx.color_trc = tags.space, tags.primaries, tags.transfer
            ctx.color_range = tags.range
            if codec == "h265" and fmt in ("mp4", "mov"):
                self._video.codec_context.codec_tag = "hvc1"
            if audio_source is not None or subtitle_source is not None:
                self._open_copies(audio_source, subtitle_source)
        except BaseException:
            self.abort()
            raise

    def _open_copies(self, audio_source: str | Path | None, subtitle_source: str | Path | None) -> None:
        """Add every audio stream (copied, else transcoded) and every subtitle stream (copied, else
        converted, else dropped) of the source to the output."""
        sources = {Path(p) for p in (audio_source, subtitle_source) if p is not None}
        if len(sources) != 1:
            raise ValueError("audio and subtitles must come from the same source file")
        (p,) = sources
        if not p.exists():
            raise VideoError("not_found", f"audio source not found: {p}")
        try:
            self._copy_in = av.open(str(p), mode="r")
        except _AV_ERRORS as exc:
            raise VideoError("not_a_video", f"cannot open audio source {p}: {exc}") from exc
        streams: list[av.stream.Stream] = []
        for in_stream in self._copy_in.streams.audio if audio_source is not None else ():
            self._add_audio(in_stream)
            streams.append(in_stream)
        for in_stream in self._copy_in.streams.subtitles if subtitle_source is not None else ():
            if self._add_subtitles(in_stream):
                streams.append(in_stream)
        if streams:
            self._copy_packets = self._copy_in.demux(*streams)

    def _add_audio(self, in_stream: av.stream.Stream) -> None:
        """Copy `in_stream` if the container holds its codec, else transcode it to AAC."""
        name = in_stream.codec_context.name
        try:
            if _container_holds(self._out.format.name, in_stream):
                self._copy_map[in_stream.index] = self._out.add_stream_from_template(in_stream)
                return
            codec = "aac" if "aac" in self._out.supported_codecs else self._out.default_audio_codec
            logger.info("transcoding audio stream %d: %s -> %s", in_stream.index, name, codec)
            converter: _Converter = _AudioTranscoder(in_stream, self._out, codec)
        except _AV_ERRORS as exc:
            raise VideoError(
                "unsupported_option", f"audio codec {name!r} cannot be written to {self.path.suffix}: {exc}"
            ) from exc
        self._converters[in_stream.index] = converter
        self._copy_map[in_stream.index] = converter.stream

    def _add_subtitles(self, in_stream: av.stream.Stream) -> bool:
        """Copy `in_stream`, else convert it (text subtitles); False (and a warning) if it is dropped."""
        ctx = in_stream.codec_context
        name = ctx.name if ctx is not None else "an unknown codec"
        if _container_holds(self._out.format.name, in_stream):
            self._copy_map[in_stream.index] = self._out.add_stream_from_template(in_stream)
            return True
        codec = self._out.default_subtitle_codec  # "ass" for mkv, none for mp4/mov
        codec = "mov_text" if codec == "none" else codec
        if ctx is None or not ctx.codec.text_sub:  # bitmaps: no encoder of the container's codec takes them
            logger.warning("dropping subtitle stream %d: %s cannot hold %s", in_stream.index, self.path, name)
            return False
        try:
            converter = _SubtitleConverter(in_stream, self._out, codec)
        except _AV_ERRORS as exc:
            logger.warning(
                "dropping subtitle stream %d: %s -> %s failed: %s", in_stream.index, name, codec, exc
            )
            return False
        logger.info("converting subtitle stream %d: %s -> %s", in_stream.index, name, codec)
        self._converters[in_stream.index] = converter
        self._copy_map[in_stream.index] = converter.stream
        return True

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _mux_copies_until(self, limit: Fraction | None) -> None:
        """Mux source audio and subtitle packets whose time is <= `limit` (all remaining if None)."""
        while self._copy_packets is not None:
            if self._pending is None:
                packet = next(self._copy_packets, None)
                if packet is None:
                    self._copy_packets = None
                    for converter in self._converters.values():
                        self._out.mux(converter.flush())
                    return
                if packet.dts is None:
                    continue
                self._pending = packet
            packet = self._pending
            ts = packet.pts if packet.pts is not None else packet.dts
            if limit is not None and ts * packet.time_base > limit:
                return
            converter = self._converters.get(packet.stream_index)
            if converter is not None:
                self._out.mux(converter.convert(packet))
            else:
                packet.stream = self._copy_map[packet.stream_index]
                self._out.mux(packet)
            self._pending = None

    def write(self, image: np.ndarray, pts: int | None) -> None:
        """Encode one (H, W, 3) uint8 RGB frame; `pts` is in `time_base` units (None: from fps)."""
        if self._done:
            raise RuntimeError("VideoWriter is closed")
        if image.shape != (self.height, self.width, 3) or image.dtype != np.uint8:
            want = (self.height, self.width, 3)
            raise ValueError(f"expected a uint8 image of shape {want}, got {image.dtype} {image.shape}")
        if pts is None:
            pts = round(self.frames_written / (self.fps * self.time_base))
        if self._last_pts is not None and pts <= self._last_pts:
            logger.warning("pts %d <= previous %d; using %d", pts, self._last_pts, self._last_pts + 1)
            pts = self._last_pts + 1
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(  # RGB source: sws honours
            format="yuv420p", dst_colorspace=self.colour.space, dst_color_range=self.colour.range
        )
        frame.pts, frame.time_base = pts, self.time_base
        try:
            self._out.mux(self._video.encode(frame))
            self._mux_copies_until(pts * self.time_base)
        except _AV_ERRORS as exc:
            raise VideoError("encode_error", f"encoding frame {self.frames_written} failed: {exc}") from exc
        self._last_pts = pts
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder, copy the remaining audio, finalize and move the file into place."""
        if self._done:
            return
        try:
            if self.frames_written == 0:
                raise VideoError("encode_error", f"no frames were written to {self.path}")
            try:
                self._out.mux(self._video.encode(None))
                self._mux_copies_until(None)
                self._out.close()
            except _AV_ERRORS as exc:
                raise VideoError("encode_error", f"finalizing {self.path} failed: {exc}") from exc
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._close_copies()
        self._done = True
        logger.info("wrote %d frames to %s", self.frames_written, self.path)

    def _close_copies(self) -> None:
        self._pending = None
        self._copy_packets = None
        if self._copy_in is not None:
            self._copy_in.close()
            self._copy_in = None

    def abort(self) -> None:
        """Close everything and delete the temporary file; the output path never appears."""
        if self._done:
            return
        self._done = True
        try:
            self._out.close()
        except _AV_ERRORS as exc:
            logger.debug("ignoring error while closing aborted output: %s", exc)
        self._close_copies()
        self._tmp.unlink(missing_ok=True)
        logger.info("aborted writing %s", self.path)


def _container_holds(fmt: str, stream: av.stream.Stream) -> bool:
    """Whether the `fmt` muxer accepts a copy of `stream` (it writes a header with it, in memory)."""
    try:
        probe = av.open(io.BytesIO(), mode="w", format=fmt)
    except _AV_ERRORS:
        return False
    try:
        probe.add_stream_from_template(stream)
        probe.start_encoding()
        return True
    except _AV_ERRORS:
        return False
    finally:
        try:
            probe.close()
        except _AV_ERRORS as exc:
            logger.debug("ignoring error while closing a probe output: %s", exc)


class _Converter(Protocol):
    """Re-encodes the packets of one input stream into its output `stream`."""

    stream: av.stream.Stream

    def convert(self, packet: av.Packet) -> list[av.Packet]: ...

    def flush(self) -> list[av.Packet]: ...


class _AudioTranscoder:
    """Decodes one audio stream and encodes it with `codec` (for a container that cannot hold it)."""

    def __init__(self, source: av.stream.Stream, out: av.container.OutputContainer, codec: str) -> None:
        ctx = source.codec_context
        self.stream = out.add_stream(codec, rate=ctx.sample_rate, layout=ctx.layout)
        encoder = self.stream.codec_context
        self.resampler = av.AudioResampler(format=encoder.format, layout=encoder.layout, rate=encoder.rate)
        self.source = source

    def convert(self, packet: av.Packet) -> list[av.Packet]:
        packets: list[av.Packet] = []
        for frame in packet.decode():
            for resampled in self.resampler.resample(frame):
                resampled.pts = None  # the encoder counts samples; the first one starts at the first packet
                packets.extend(self.stream.encode(resampled))
        return packets

    def flush(self) -> list[av.Packet]:
        packets: list[av.Packet] = []
        for resampled in self.resampler.resample(None):
            packets.extend(self.stream.encode(resampled))
        return packets + list(self.stream.encode(None))


def _open_subtitle_encoder(encoder: av.CodecContext, source: av.stream.Stream) -> None:
    encoder.time_base = source.time_base
    encoder.subtitle_header = source.codec_context.subtitle_header
    encoder.open()


class _SubtitleConverter:
    """Decodes one text subtitle stream and encodes it with `codec`, keeping each packet's timing."""

    def __init__(self, source: av.stream.Stream, out: av.container.OutputContainer, codec: str) -> None:
        decoder = source.codec_context
        decoder.open()  # sets the ASS header that text subtitle encoders need
        _open_subtitle_encoder(av.CodecContext.create(codec, "w"), source)  # fails before adding a stream
        self.stream = out.add_stream(codec)
        _open_subtitle_encoder(self.stream.codec_context, source)
        self.stream.time_base = source.time_base
        self.source = source

    def convert(self, packet: av.Packet) -> list[av.Packet]:
        """The converted packet (none for an empty cue, or with a warning if it does not convert)."""
        try:
            subtitle = self.source.codec_context.decode2(packet)
            if subtitle is None or not len(subtitle):
                return []
            converted = self.stream.codec_context.encode_subtitle(subtitle)
        except _AV_ERRORS as exc:
            logger.warning("dropping a subtitle at pts %s: %s", packet.pts, exc)
            return []
        converted.pts, converted.dts, converted.time_base = packet.pts, packet.dts, packet.time_base
        converted.duration, converted.stream = packet.duration, self.stream
        return [converted]

    def flush(self) -> list[av.Packet]:
        return []
