"""Video probing, frame decoding and encoding (with audio pass-through) on PyAV."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

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
    """Stream facts of a video file, as reported by the container."""

    path: str
    width: int
    height: int
    fps: Fraction
    time_base: Fraction
    frames_estimate: int | None
    has_audio: bool
    audio_codecs: tuple[str, ...]
    duration_s: float | None


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
        return VideoInfo(
            path=str(path),
            width=width,
            height=height,
            fps=fps,
            time_base=time_base,
            frames_estimate=frames_estimate,
            has_audio=bool(audio_codecs),
            audio_codecs=audio_codecs,
            duration_s=duration_s,
        )


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
        header = (stream.codec_context.width, stream.codec_context.height)
        count, size = 0, header if min(header) > 0 else None  # decoded frames must match the header
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
            yield Frame(image=frame.to_ndarray(format="rgb24"), pts=frame.pts)
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
    ) -> None:
        self.path = Path(path)
        fmt = _validate(self.path, codec, crf, preset, width, height)
        fps, time_base = Fraction(fps), Fraction(time_base)
        if fps <= 0 or time_base <= 0:
            raise VideoError("unsupported_option", f"fps and time_base must be > 0, got {fps}, {time_base}")
        self.width, self.height, self.fps, self.time_base = width, height, fps, time_base
        self.frames_written = 0
        self._last_pts: int | None = None
        self._done = False
        self._audio_in: av.container.InputContainer | None = None
        self._audio_map: dict[int, av.stream.Stream] = {}
        self._audio_packets: Iterator[av.Packet] | None = None
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
            if codec == "h265" and fmt in ("mp4", "mov"):
                self._video.codec_context.codec_tag = "hvc1"
            if audio_source is not None:
                self._open_audio(audio_source)
        except BaseException:
            self.abort()
            raise

    def _open_audio(self, source: str | Path) -> None:
        """Add a copy of every audio stream of `source` to the output."""
        p = Path(source)
        if not p.exists():
            raise VideoError("not_found", f"audio source not found: {p}")
        try:
            self._audio_in = av.open(str(p), mode="r")
        except _AV_ERRORS as exc:
            raise VideoError("not_a_video", f"cannot open audio source {p}: {exc}") from exc
        streams = list(self._audio_in.streams.audio)
        for in_stream in streams:
            try:
                self._audio_map[in_stream.index] = self._out.add_stream_from_template(in_stream)
            except _AV_ERRORS as exc:
                raise VideoError(
                    "unsupported_option",
                    f"audio codec {in_stream.codec_context.name!r} cannot be copied into "
                    f"{self.path.suffix}: {exc}",
                ) from exc
        if streams:
            self._audio_packets = self._audio_in.demux(*streams)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _mux_audio_until(self, limit: Fraction | None) -> None:
        """Mux source audio packets whose time is <= `limit` (all remaining if None)."""
        while self._audio_packets is not None:
            if self._pending is None:
                packet = next(self._audio_packets, None)
                if packet is None:
                    self._audio_packets = None
                    return
                if packet.dts is None:
                    continue
                self._pending = packet
            packet = self._pending
            ts = packet.pts if packet.pts is not None else packet.dts
            if limit is not None and ts * packet.time_base > limit:
                return
            packet.stream = self._audio_map[packet.stream_index]
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
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts, frame.time_base = pts, self.time_base
        try:
            self._out.mux(self._video.encode(frame))
            self._mux_audio_until(pts * self.time_base)
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
                self._mux_audio_until(None)
                self._out.close()
            except _AV_ERRORS as exc:
                raise VideoError("encode_error", f"finalizing {self.path} failed: {exc}") from exc
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._close_audio()
        self._done = True
        logger.info("wrote %d frames to %s", self.frames_written, self.path)

    def _close_audio(self) -> None:
        self._pending = None
        self._audio_packets = None
        if self._audio_in is not None:
            self._audio_in.close()
            self._audio_in = None

    def abort(self) -> None:
        """Close everything and delete the temporary file; the output path never appears."""
        if self._done:
            return
        self._done = True
        try:
            self._out.close()
        except _AV_ERRORS as exc:
            logger.debug("ignoring error while closing aborted output: %s", exc)
        self._close_audio()
        self._tmp.unlink(missing_ok=True)
        logger.info("aborted writing %s", self.path)
