"""Run a model's engines over a stream of frames, chunk by chunk, with constant memory.

Chunks share a streaming cache, so the output equals whole-clip processing (the model is causal in
time). The stages run through an `EngineSet` (torch, ONNX Runtime or TensorRT); a bare `VSRModel` runs
through torch fp32 engines with no shape bounds. Frames of any size are padded (replicate, bottom/right)
to the model's multiple and cropped back; a clip whose length does not fit the temporal layout is padded
with copies of its last frame.
No I/O here: frames in, frames out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from engines.pipeline import EngineSet, StreamState, torch_engines
from models.config import OUTPUT_SCALE, VSRConfig
from models.macs import MacCount, count_macs
from models.sr_model import VSRModel

STAGES = ("encode", "denoise", "decode")
DEFAULT_CHUNK_FRAMES = 8  # 8 frames of 1280x704 output: ~4.6 GB peak RSS with fastvsr-tiny on CPU
COMPONENTS = ("encoder", "denoiser", "decoder", "total")
T = TypeVar("T")


@dataclass
class UpscaleStats:
    """What a run cost: frames, seconds per stage, and MACs per component."""

    frames: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    macs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COMPONENTS, 0))

    def add_macs(self, count: MacCount) -> None:
        for key, value in count.as_dict().items():
            self.macs[key] += value


@lru_cache(maxsize=16)
def _chunk_macs(config: VSRConfig, frames: int, height: int, width: int, first: bool) -> MacCount:
    return count_macs(config, frames, height, width, first_chunk=first)


def padded_size(size: int, multiple: int) -> int:
    return -(-size // multiple) * multiple


class ClipUpscaler:
    """Upscales one clip at a time; create once per model and reuse."""

    def __init__(
        self,
        model: VSRModel | EngineSet,
        *,
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
        device: str | torch.device = "cpu",
    ) -> None:
        """`device` applies to a bare `VSRModel`; an `EngineSet` runs where its engines were loaded."""
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        self.engines = model if isinstance(model, EngineSet) else torch_engines(model, device)
        self.config = self.engines.config
        tc = self.config.vae.temporal_compression
        self.chunk_frames = padded_size(chunk_frames, tc)  # a whole number of latent frames
        self.device = self.engines.device

    def check_frame_size(self, height: int, width: int) -> None:
        """Raise `ShapeOutOfProfileError` if frames of this size (or a first chunk) fall outside the
        engines' profile, before any work is done."""
        multiple, tc = self.config.lr_multiple, self.config.vae.temporal_compression
        shape = (1, 3, self.chunk_frames + tc, padded_size(height, multiple), padded_size(width, multiple))
        self.engines.engines["encoder"].io.profile.check("encoder", "lr", shape)

    def upscale(
        self, frames: Iterable[np.ndarray], stats: UpscaleStats | None = None
    ) -> Iterator[np.ndarray]:
        """Yield one (4H, 4W, 3) uint8 frame per (H, W, 3) uint8 input frame, in order."""
        stats = stats if stats is not None else UpscaleStats()
        stream = self.engines.new_stream()
        buffer: list[np.ndarray] = []
        first = True
        for frame in frames:
            buffer.append(frame)
            if len(buffer) == self.chunk_frames + (1 if first else 0):
                yield from self._run_chunk(buffer, first, stream, stats)
                buffer, first = [], False
        if buffer:
            yield from self._run_chunk(buffer, first, stream, stats)

    def _run_chunk(
        self, frames: list[np.ndarray], first: bool, stream: StreamState, stats: UpscaleStats
    ) -> Iterator[np.ndarray]:
        real = len(frames)
        tc = self.config.vae.temporal_compression
        length = 1 + padded_size(real - 1, tc) if first else padded_size(real, tc)
        frames = frames + [frames[-1]] * (length - real)
        height, width = frames[0].shape[:2]
        clip = self._to_tensor(frames)  # (1, 3, T, H', W')
        with torch.inference_mode():
            video = self.engines.upscale_chunk(clip, stream, lambda stage, fn: self._timed(stats, stage, fn))
        stats.add_macs(_chunk_macs(self.config, length, clip.shape[-2], clip.shape[-1], first))
        stats.frames += real
        out = video[0, :, :real, : height * OUTPUT_SCALE, : width * OUTPUT_SCALE]
        out = (out * 255.0).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()  # (T, 4H, 4W, 3)
        yield from out

    def _to_tensor(self, frames: list[np.ndarray]) -> torch.Tensor:
        clip = torch.from_numpy(np.stack(frames)).to(self.device)  # (T, H, W, 3) uint8
        clip = clip.permute(3, 0, 1, 2).unsqueeze(0).float() / 255.0  # (1, 3, T, H, W)
        h, w = clip.shape[-2:]
        multiple = self.config.lr_multiple
        pad_h, pad_w = padded_size(h, multiple) - h, padded_size(w, multiple) - w
        if pad_h or pad_w:
            clip = F.pad(clip, (0, pad_w, 0, pad_h, 0, 0), mode="replicate")
        return clip

    def _timed(self, stats: UpscaleStats, stage: str, fn: Callable[..., T], *args: object) -> T:
        start = time.perf_counter()
        out = fn(*args)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        stats.seconds[stage] += time.perf_counter() - start
        return out
