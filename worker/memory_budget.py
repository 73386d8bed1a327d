"""How much memory one chunk takes, and the largest tile window that fits a memory budget.

The peak is measured, not guessed: the torch reference model runs one first chunk and one steady chunk
on fake tensors (no compute, no real allocation) while a dispatch mode tracks the bytes of every live
tensor storage. The peak is affine in the frame's pixel count, so two probes fit it exactly. It is fp32
activations of the torch engines (weights, caches and intermediates); bf16/fp16 engines need about half,
and a process's RSS adds the allocator's slack and the frame buffers on top. The stream caches (the
causal convolutions' and attention's past frames) are about half of it and live as long as the clip,
one set per tile.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from engines.pipeline import torch_engines
from models.config import VSRConfig
from models.sr_model import VSRModel
from worker.tiling import Tile, plan_tiles

MIB = 1 << 20


class LiveStorageBytes(TorchDispatchMode):
    """Tracks the bytes of tensor storages created inside it that are still alive, and their peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._sizes: dict[int, int] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor):
                self._track(value.untyped_storage())
        self.peak = max(self.peak, self.live)
        return out

    def _track(self, storage: torch.UntypedStorage) -> None:
        key = id(storage)
        if key in self._sizes:
            return  # a view of a storage already counted
        self._sizes[key] = storage.nbytes()
        self.live += self._sizes[key]
        weakref.finalize(storage, self._release, key)

    def _release(self, key: int) -> None:
        self.live -= self._sizes.pop(key)


@dataclass(frozen=True)
class ChunkMemory:
    """Peak bytes of one chunk of a fixed length, `fixed + per_pixel * pixels` (low-res pixels), of which
    `cache_per_pixel * pixels` are the stream caches that stay alive between chunks."""

    fixed: float
    per_pixel: float
    cache_per_pixel: float

    def bytes_for(self, height: int, width: int) -> int:
        return round(self.fixed + self.per_pixel * height * width)

    def cache_bytes_for(self, height: int, width: int) -> int:
        return round(self.cache_per_pixel * height * width)


@dataclass(frozen=True)
class Probe:
    peak: int  # bytes of live tensors at the worst moment
    caches: int  # bytes of the stream caches kept for the next chunk


def probe_peak_bytes(config: VSRConfig, chunk_frames: int, height: int, width: int) -> Probe:
    """Live bytes of a first chunk (`chunk_frames` + the first frame) then a steady chunk."""
    tc = config.vae.temporal_compression
    engines = torch_engines(VSRModel(config).eval(), "cpu")  # real weights: a few MB, built in ms
    with FakeTensorMode(allow_non_fake_inputs=True), torch.inference_mode():
        stream = engines.new_stream()
        with LiveStorageBytes() as tracker:
            first = torch.zeros(1, 3, chunk_frames + tc, height, width)
            engines.upscale_chunk(first, stream)
            engines.upscale_chunk(first[:, :, :chunk_frames], stream)
        caches = sum(t.untyped_storage().nbytes() for t in stream.caches.values())
    return Probe(tracker.peak, caches)


@lru_cache(maxsize=32)
def chunk_memory(config: VSRConfig, chunk_frames: int) -> ChunkMemory:
    """Fit the affine model from two probes at small sizes (about a second each)."""
    side = config.lr_multiple * max(1, 32 // config.lr_multiple)
    small = probe_peak_bytes(config, chunk_frames, side, side)
    large = probe_peak_bytes(config, chunk_frames, side, 2 * side)
    pixels = side * side
    per_pixel = (large.peak - small.peak) / pixels
    cache_per_pixel = (large.caches - small.caches) / pixels
    return ChunkMemory(small.peak - per_pixel * pixels, per_pixel, cache_per_pixel)


class MemoryBudgetError(ValueError):
    """Not even the smallest tiles fit the memory budget."""


def plan_within_budget(
    memory: ChunkMemory,
    height: int,
    width: int,
    budget_bytes: int,
    *,
    multiple: int,
    overlap: int,
    offload_caches: bool,
) -> list[Tile]:
    """The fewest, largest tiles whose memory fits `budget_bytes`: the whole frame if it fits.

    The peak is one tile's chunk plus the caches every other tile keeps between chunks, unless those
    are offloaded to host memory (`offload_caches`, engines on a GPU).
    """
    smallest = -(-(2 * (overlap + multiple - 1) + multiple) // multiple) * multiple
    least = need = memory.bytes_for(height, width)
    if need <= budget_bytes:
        return plan_tiles(height, width, (height, width), overlap)
    for side in range(max(height, width) - multiple, smallest - 1, -multiple):
        window = (min(side, height), min(side, width))
        tiles = plan_tiles(height, width, window, overlap, align=multiple)
        need = memory.bytes_for(*window)
        if not offload_caches:
            need += (len(tiles) - 1) * memory.cache_bytes_for(*window)
        if need <= budget_bytes:
            return tiles
        least = min(least, need)
    where = "in host memory" if not offload_caches else "per tile"
    raise MemoryBudgetError(
        f"a {width}x{height} frame needs at least {least / MIB:.0f} MiB ({where}), over the memory budget "
        f"of {budget_bytes / MIB:.0f} MiB; raise the budget or lower chunk_frames"
    )
