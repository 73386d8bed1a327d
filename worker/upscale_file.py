"""Upscale one video file to another: decode -> model, chunk by chunk -> encode (+ audio copy).

Decoding and encoding run on their own threads, with bounded queues, while the model runs
(worker/stages.py). The output file appears only when the whole video was written; any failure leaves
no partial file.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from engines.base import ShapeOutOfProfileError
from engines.pipeline import EngineSet
from models.config import OUTPUT_SCALE
from models.sr_model import VSRModel
from worker.memory_budget import MemoryBudgetError
from worker.stages import IO_NICENESS, run_overlapped
from worker.temporal_stabilizer import DEFAULT_TEMPORAL_BLEND, check_blend
from worker.upscaler import DEFAULT_CHUNK_FRAMES, ClipUpscaler, UpscaleStats
from worker.video_io import (
    Frame,
    VideoError,
    VideoInfo,
    VideoWriter,
    iter_frames,
    probe_video,
    validate_encode_options,
)

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int | None], None]  # (frames done, frames expected or None)


@dataclass(frozen=True)
class UpscaleOptions:
    scale: int = OUTPUT_SCALE
    codec: str = "h264"
    crf: int = 18
    preset: str = "medium"
    chunk_frames: int = DEFAULT_CHUNK_FRAMES
    copy_audio: bool = True
    device: str = "cpu"
    max_input_pixels: int | None = None  # refuse larger frames (decompression bombs) before decoding
    max_input_frames: int | None = None  # refuse longer videos (header, then while decoding)
    memory_budget_bytes: int | None = None  # one chunk's activations; larger frames run as tiles
    io_niceness: int = IO_NICENESS  # decode/encode threads yield CPU to the model (0: equal priority)
    temporal_blend: float = DEFAULT_TEMPORAL_BLEND  # flow-guided stabilizer on the output (0: off)
    motion_threads: int | None = None  # threads estimating the stabilizer's motion (None: by device)

    def validate(self, output: Path) -> None:
        """Raise `VideoError("unsupported_option")` for any option this output cannot take."""
        if self.scale != OUTPUT_SCALE:
            raise VideoError(
                "unsupported_option", f"scale {self.scale} is not supported (only {OUTPUT_SCALE})"
            )
        validate_encode_options(output, self.codec, self.crf, self.preset)
        if self.chunk_frames < 1:
            raise VideoError("unsupported_option", f"chunk_frames must be >= 1, got {self.chunk_frames}")
        if not 0 <= self.io_niceness <= 19:
            raise VideoError("unsupported_option", f"io_niceness must be 0-19, got {self.io_niceness}")
        try:
            check_blend(self.temporal_blend)
        except ValueError as exc:
            raise VideoError("unsupported_option", str(exc)) from exc
        if self.motion_threads is not None and self.motion_threads < 1:
            raise VideoError("unsupported_option", f"motion_threads must be >= 1, got {self.motion_threads}")
        if self.memory_budget_bytes is not None and self.memory_budget_bytes <= 0:
            raise VideoError(
                "unsupported_option", f"memory_budget_bytes must be > 0, got {self.memory_budget_bytes}"
            )
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise VideoError(
                "unsupported_option", f"device {self.device!r} requested but no CUDA GPU is available"
            )


@dataclass
class UpscaleResult:
    output: Path
    width: int
    height: int
    frames: int
    fps: Fraction
    stats: UpscaleStats = field(default_factory=UpscaleStats)
    decode_seconds: float = 0.0  # demux + decode + colour conversion of the input
    encode_seconds: float = 0.0  # colour conversion + encode + mux of the output (audio copy included)


def check_input_limits(info: VideoInfo, options: UpscaleOptions) -> None:
    """Refuse inputs over the configured size from what the header declares, before decoding a frame."""
    pixels = info.width * info.height
    if options.max_input_pixels is not None and pixels > options.max_input_pixels:
        raise VideoError(
            "input_too_large",
            f"{info.width}x{info.height} input exceeds the {options.max_input_pixels}-pixel limit per frame",
        )
    if options.max_input_frames is not None and (info.frames_estimate or 0) > options.max_input_frames:
        raise VideoError(
            "input_too_long",
            f"about {info.frames_estimate} frames exceed the limit of {options.max_input_frames}",
        )


def upscale_video(
    source: str | Path,
    output: str | Path,
    model: VSRModel | EngineSet,
    options: UpscaleOptions | None = None,
    progress: ProgressCallback | None = None,
) -> UpscaleResult:
    """Upscale `source` 4x into `output` (mp4/mkv/mov). Raises `VideoError` with a code on bad input."""
    options = options or UpscaleOptions()
    source, output = Path(source), Path(output)
    options.validate(output)
    if output.resolve() == source.resolve():
        raise VideoError("unsupported_option", "output must not overwrite the input")
    if not output.parent.is_dir():
        raise VideoError("unsupported_option", f"output directory does not exist: {output.parent}")
    info = probe_video(source)
    check_input_limits(info, options)
    width, height = info.width * OUTPUT_SCALE, info.height * OUTPUT_SCALE
    upscaler = ClipUpscaler(
        model,
        chunk_frames=options.chunk_frames,
        device=options.device,
        memory_budget_bytes=options.memory_budget_bytes,
        temporal_blend=options.temporal_blend,
        motion_threads=options.motion_threads,
    )
    try:
        upscaler.check_frame_size(info.height, info.width)
    except (ShapeOutOfProfileError, MemoryBudgetError) as exc:
        raise VideoError("input_too_large", str(exc)) from exc
    stats = UpscaleStats()
    pts_queue: deque[int | None] = deque()  # input timestamps, kept for the output frames

    def images(frames: Iterator[Frame]) -> Iterator[np.ndarray]:
        for frame in frames:
            pts_queue.append(frame.pts)
            yield frame.image

    writer = VideoWriter(
        output,
        width=width,
        height=height,
        fps=info.fps,
        time_base=info.time_base,
        codec=options.codec,
        crf=options.crf,
        preset=options.preset,
        audio_source=source if options.copy_audio and info.has_audio else None,
        subtitle_source=source if info.subtitle_codecs else None,
        colour=info.colour,
    )
    with writer:
        times = run_overlapped(
            iter_frames(source, options.max_input_frames),
            lambda frames: upscaler.upscale(images(frames), stats),
            lambda image: writer.write(image, pts_queue.popleft()),
            depth=upscaler.chunk_frames + 1,  # the next chunk decodes while this one runs
            on_output=None if progress is None else lambda done: progress(done, info.frames_estimate),
            io_niceness=options.io_niceness,
        )
        start = time.perf_counter()
    encode_seconds = times.write + time.perf_counter() - start  # + flush, audio copy, mux and rename
    log.info("upscaled %s -> %s (%d frames)", source, output, stats.frames)
    return UpscaleResult(output, width, height, stats.frames, info.fps, stats, times.read, encode_seconds)
