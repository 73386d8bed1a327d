"""Run a model's engines over a stream of frames, chunk by chunk, with constant memory.

Chunks share a streaming cache, so the output equals whole-clip processing (the model is causal in
time). Frames whose chunk would not fit the memory budget run as overlapping spatial tiles, each with
its own stream (worker/tiling.py, worker/memory_budget.py). The stages run through an `EngineSet`
(torch, ONNX Runtime or TensorRT); a bare `VSRModel` runs through torch fp32 engines with no shape
bounds. Frames of any size are padded (replicate, bottom/right)
to the model's multiple and cropped back; a clip whose length does not fit the temporal layout is padded
with copies of its last frame.
No I/O here: frames in, frames out.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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
from worker.memory_budget import chunk_memory, plan_within_budget
from worker.temporal_stabilizer import Motion, TemporalStabilizer, check_blend, estimate_motion
from worker.tiling import Tile, plan_tiles

STAGES = ("encode", "denoise", "decode", "stabilize")
DEFAULT_CHUNK_FRAMES = 8  # 8 frames of 1280x704 output: ~4.6 GB peak RSS with fastvsr-tiny on CPU
COMPONENTS = ("encoder", "denoiser", "decoder", "total")
DEFAULT_TILE_OVERLAP = 16  # low-res pixels of context on each inner side of a tile
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


def motion_threads_for(device: torch.device) -> int:
    """Threads that estimate the stabilizer's motion. On a CPU one: the model's threads take the cores.
    Beside a GPU, up to 8 of the cores this process may use: one thread estimates ~16 frames/s (OpenCV's
    Farneback barely parallelises itself), far below what a GPU model makes."""
    if device.type == "cpu":
        return 1
    return max(1, min(8, len(os.sched_getaffinity(0)) - 1))


def padded_size(size: int, multiple: int) -> int:
    return -(-size // multiple) * multiple


def _move_caches(stream: StreamState, device: torch.device) -> None:
    stream.caches = {name: tensor.to(device) for name, tensor in stream.caches.items()}


def _inside(core: slice, limit: int, window_start: int) -> tuple[slice, slice] | None:
    """The part of an output `core` (frame coordinates) inside [0, limit), in frame and in window
    coordinates (the window starts at low-res `window_start`); None if the core lies in the padding."""
    stop = min(core.stop, limit)
    if stop <= core.start:
        return None
    offset = window_start * OUTPUT_SCALE
    return slice(core.start, stop), slice(core.start - offset, stop - offset)


class ClipUpscaler:
    """Upscales one clip at a time; create once per model and reuse."""

    def __init__(
        self,
        model: VSRModel | EngineSet,
        *,
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
        device: str | torch.device = "cpu",
        memory_budget_bytes: int | None = None,
        tile_overlap: int = DEFAULT_TILE_OVERLAP,
        temporal_blend: float = 0.0,
        motion_threads: int | None = None,
    ) -> None:
        """`device` applies to a bare `VSRModel`; an `EngineSet` runs where its engines were loaded.
        `memory_budget_bytes` bounds one chunk's activations (None: whole frames, however large).
        `temporal_blend` > 0 runs the flow-guided temporal stabilizer on the output (worker/
        temporal_stabilizer.py; the service's default is DEFAULT_TEMPORAL_BLEND); 0: the model's frames.
        Its motion is estimated on `motion_threads` threads beside the model (None: `motion_threads_for`)."""
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        if tile_overlap < 0:
            raise ValueError(f"tile_overlap must be >= 0, got {tile_overlap}")
        self.engines = model if isinstance(model, EngineSet) else torch_engines(model, device)
        self.config = self.engines.config
        tc = self.config.vae.temporal_compression
        self.chunk_frames = padded_size(chunk_frames, tc)  # a whole number of latent frames
        self.device = self.engines.device
        self.memory_budget_bytes = memory_budget_bytes
        self.tile_overlap = tile_overlap
        self.temporal_blend = check_blend(temporal_blend)
        if motion_threads is not None and motion_threads < 1:
            raise ValueError(f"motion_threads must be >= 1, got {motion_threads}")
        self.motion_threads = motion_threads or motion_threads_for(self.device)

    def plan(self, height: int, width: int) -> list[Tile]:
        """The tiles frames of this size run as (one tile: the whole padded frame).
        Raises `MemoryBudgetError` if not even the smallest tile fits the budget."""
        multiple = self.config.lr_multiple
        rows, cols = padded_size(height, multiple), padded_size(width, multiple)
        if self.memory_budget_bytes is None:
            return plan_tiles(rows, cols, (rows, cols), self.tile_overlap)
        return plan_within_budget(
            chunk_memory(self.config, self.chunk_frames),
            rows,
            cols,
            self.memory_budget_bytes,
            multiple=multiple,
            overlap=self.tile_overlap,
            offload_caches=self.offload_caches,
        )

    @property
    def offload_caches(self) -> bool:
        """On a GPU, the caches of the tiles not running wait in host memory."""
        return self.device.type != "cpu"

    def check_frame_size(self, height: int, width: int) -> list[Tile]:
        """Plan the tiles of frames of this size before any work is done. Raises `MemoryBudgetError`,
        or `ShapeOutOfProfileError` if a tile (or a first chunk) falls outside the engines' profile."""
        tiles = self.plan(height, width)
        tc = self.config.vae.temporal_compression
        shape = (1, 3, self.chunk_frames + tc, tiles[0].rows.size, tiles[0].cols.size)
        self.engines.engines["encoder"].io.profile.check("encoder", "lr", shape)
        return tiles

    def upscale(
        self, frames: Iterable[np.ndarray], stats: UpscaleStats | None = None
    ) -> Iterator[np.ndarray]:
        """Yield one (4H, 4W, 3) uint8 frame per (H, W, 3) uint8 input frame, in order."""
        stats = stats if stats is not None else UpscaleStats()
        tiles: list[Tile] = []
        streams: list[StreamState] = []
        buffer: list[np.ndarray] = []
        first = True
        stabilizer = TemporalStabilizer(self.temporal_blend)  # per clip: its state spans the chunks
        with ThreadPoolExecutor(self.motion_threads, thread_name_prefix="vsr-motion") as motion_pool:
            motions: list[Future[Motion | None]] = []  # one per buffered frame
            for frame in frames:
                if not tiles:
                    tiles = self.plan(*frame.shape[:2])
                    streams = [self.engines.new_stream() for _ in tiles]
                buffer.append(frame)
                if stabilizer.blend > 0:  # the input's motion is estimated while the model runs
                    pair = stabilizer.motion.pair(frame)
                    motions.append(motion_pool.submit(estimate_motion, *pair))
                if len(buffer) == self.chunk_frames + (1 if first else 0):
                    chunk = self._run_chunk(buffer, first, tiles, streams, stats)
                    yield from self._stabilized(chunk, motions, stabilizer, stats)
                    buffer, motions, first = [], [], False
            if buffer:
                chunk = self._run_chunk(buffer, first, tiles, streams, stats)
                yield from self._stabilized(chunk, motions, stabilizer, stats)

    def _stabilized(
        self,
        outputs: Iterator[np.ndarray],
        motions: list[Future[Motion | None]],
        stabilizer: TemporalStabilizer,
        stats: UpscaleStats,
    ) -> Iterator[np.ndarray]:
        """The chunk's outputs, stabilized along the motions estimated beside the model (timed: the
        wait for a motion not yet estimated, and the blend)."""
        if stabilizer.blend == 0.0:
            yield from outputs
            return
        for out, motion in zip(outputs, motions, strict=True):
            yield self._timed(stats, "stabilize", lambda m=motion, o=out: stabilizer.apply(m.result(), o))

    def _run_chunk(
        self,
        frames: list[np.ndarray],
        first: bool,
        tiles: list[Tile],
        streams: list[StreamState],
        stats: UpscaleStats,
    ) -> Iterator[np.ndarray]:
        real = len(frames)
        tc = self.config.vae.temporal_compression
        length = 1 + padded_size(real - 1, tc) if first else padded_size(real, tc)
        frames = frames + [frames[-1]] * (length - real)
        height, width = frames[0].shape[:2]
        # tiles: the whole frame stays in host memory and each window moves to the device in turn
        clip = self._to_tensor(frames, self.device if len(tiles) == 1 else torch.device("cpu"))
        out = np.empty((real, height * OUTPUT_SCALE, width * OUTPUT_SCALE, 3), np.uint8)
        for tile, stream in zip(tiles, streams, strict=True):
            window = clip[:, :, :, tile.rows.window, tile.cols.window].to(self.device)
            offload = self.offload_caches and len(tiles) > 1
            if offload:
                _move_caches(stream, self.device)
            with torch.inference_mode():
                video = self.engines.upscale_chunk(
                    window, stream, lambda stage, fn: self._timed(stats, stage, fn)
                )
            if offload:
                _move_caches(stream, torch.device("cpu"))
            stats.add_macs(_chunk_macs(self.config, length, window.shape[-2], window.shape[-1], first))
            rows = _inside(tile.rows.core(OUTPUT_SCALE), height * OUTPUT_SCALE, tile.rows.start)
            cols = _inside(tile.cols.core(OUTPUT_SCALE), width * OUTPUT_SCALE, tile.cols.start)
            if rows is None or cols is None:
                continue  # the tile's core lies in the padding
            part = video[0, :, :real, rows[1], cols[1]]
            part = (part * 255.0).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()  # (T, h, w, 3)
            out[:, rows[0], cols[0]] = part
        stats.frames += real
        yield from out

    def _to_tensor(self, frames: list[np.ndarray], device: torch.device) -> torch.Tensor:
        """(1, 3, T, H', W') float in [0, 1] on `device`, padded to the model's multiple."""
        clip = torch.from_numpy(np.stack(frames)).to(device)  # (T, H, W, 3) uint8
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
