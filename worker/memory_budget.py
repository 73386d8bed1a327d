"""How much memory one chunk takes, and the largest tile window that fits a memory budget.

The peak is measured, not guessed: the torch reference model runs one first chunk and one steady chunk
on fake tensors (no compute, no real allocation) while a dispatch mode tracks the bytes of every live
tensor storage. The peak is affine in the frame's pixel count, so two probes fit it exactly. It is fp32
activations of the torch engines (weights, caches and intermediates); bf16/fp16 engines need about half,
and a process's RSS adds the allocator's slack and the frame buffers on top.
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
    """Peak bytes of one chunk of a fixed length: `fixed + per_pixel * height * width` (low-res sizes)."""

    fixed: float
    per_pixel: float

    def bytes_for(self, height: int, width: int) -> int:
        return round(self.fixed + self.per_pixel * height * width)


def probe_peak_bytes(config: VSRConfig, chunk_frames: int, height: int, width: int) -> int:
    """Peak live bytes of a first chunk (`chunk_frames` + the first frame) then a steady chunk."""
    tc = config.vae.temporal_compression
    engines = torch_engines(VSRModel(config).eval(), "cpu")  # real weights: a few MB, built in ms
    with FakeTensorMode(allow_non_fake_inputs=True), torch.inference_mode():
        stream = engines.new_stream()
        with LiveStorageBytes() as tracker:
            first = torch.zeros(1, 3, chunk_frames + tc, height, width)
            engines.upscale_chunk(first, stream)
            engines.upscale_chunk(first[:, :, :chunk_frames], stream)
    return tracker.peak


@lru_cache(maxsize=32)
def chunk_memory(config: VSRConfig, chunk_frames: int) -> ChunkMemory:
    """Fit the affine model from two probes at small sizes (about a second each)."""
    side = config.lr_multiple * max(1, 32 // config.lr_multiple)
    small = probe_peak_bytes(config, chunk_frames, side, side)
    large = probe_peak_bytes(config, chunk_frames, side, 2 * side)
    per_pixel = (large - small) / (side * side)
    return ChunkMemory(fixed=small - per_pixel * side * side, per_pixel=per_pixel)


class MemoryBudgetError(ValueError):
    """Not even the smallest tile fits the memory budget."""


def tile_window(
    memory: ChunkMemory, height: int, width: int, budget_bytes: int, multiple: int, smallest: int
) -> tuple[int, int]:
    """The largest window (rows, cols), multiples of `multiple`, whose chunk fits `budget_bytes`.

    The whole frame when it fits; else square windows (cut to the frame), as large as the budget allows.
    """
    if memory.bytes_for(height, width) <= budget_bytes:
        return height, width
    pixels = (budget_bytes - memory.fixed) / memory.per_pixel
    side = int(max(pixels, 0) ** 0.5) // multiple * multiple
    while side >= smallest:
        window = (min(side, height), min(side, width))
        if memory.bytes_for(*window) <= budget_bytes:
            if min(window) == side:
                return window
            # one axis is cut to the frame: grow the other while the budget allows
            long_axis = max(height, width)
            other = int((pixels / min(window)) // multiple * multiple)
            grown = min(max(other, side), long_axis)
            return (min(window), grown) if height < width else (grown, min(window))
        side -= multiple
    need = memory.bytes_for(smallest, smallest) / MIB
    raise MemoryBudgetError(
        f"a memory budget of {budget_bytes / MIB:.0f} MiB cannot hold even a {smallest}x{smallest} tile "
        f"(about {need:.0f} MiB per chunk); raise the budget or lower chunk_frames"
    )
