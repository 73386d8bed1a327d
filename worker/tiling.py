"""Spatial tiles: split frames too large for the memory budget into overlapping windows.

Every window has the same size (so every tile runs the same engine shapes) and keeps `overlap` low-res
pixels of context on each side that touches another tile. Only each tile's core is kept: the cores
partition the frame, so the overlap is context that is discarded, never blended.
Pure arithmetic: no tensors, no I/O.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """One axis of a tile: the window [start, start + size) runs, the core [keep_start, keep_end) is kept."""

    start: int
    size: int
    keep_start: int
    keep_end: int

    @property
    def window(self) -> slice:
        return slice(self.start, self.start + self.size)

    def core(self, scale: int = 1) -> slice:
        """The kept part, in frame coordinates times `scale`."""
        return slice(self.keep_start * scale, self.keep_end * scale)

    def core_in_window(self, scale: int = 1) -> slice:
        """The kept part, in window coordinates times `scale`."""
        return slice((self.keep_start - self.start) * scale, (self.keep_end - self.start) * scale)


@dataclass(frozen=True)
class Tile:
    rows: Span
    cols: Span


def split_axis(length: int, window: int, overlap: int, align: int = 1) -> list[Span]:
    """Cover [0, length) with windows of `window` pixels, starting on multiples of `align` (the model's
    stride, so tiles see the same pixel phase as the whole frame), whose cores partition it and keep at
    least `overlap` pixels of context towards every neighbour. Uses as few windows as that allows."""
    if window >= length:
        return [Span(0, length, 0, length)]
    edge = window - overlap  # the first and last windows need context on one side only
    inner = window - 2 * (overlap + align - 1)  # the longest inner core that always keeps its context
    if inner < 1:
        raise ValueError(f"tile window {window} leaves no core with an overlap of {overlap} on both sides")
    bounds = _core_bounds(length, edge, inner)
    last_start = (length - window) // align * align
    spans = []
    for keep_start, keep_end in itertools.pairwise(bounds):
        if keep_start == 0:
            start = 0
        elif keep_end == length:
            start = length - window
        else:
            centre = (keep_start + keep_end) // 2
            start = min(max((centre - window // 2) // align * align, 0), last_start)
        spans.append(Span(start, window, keep_start, keep_end))
    return spans


def _core_bounds(length: int, edge: int, inner: int) -> list[int]:
    """Boundaries of as few cores as possible: the two edge cores at most `edge`, the others `inner`."""
    count = 2 + max(0, -(-(length - 2 * edge) // inner))
    if count == 2 or length / count <= inner:  # equal cores fit everywhere
        return [round(k * length / count) for k in range(count + 1)]
    first = -(-(length - (count - 2) * inner) // 2)  # the edges take what the inner cores cannot
    middle = length - 2 * first
    inner_bounds = [first + round(k * middle / (count - 2)) for k in range(count - 1)]
    return [0, *inner_bounds, length]


def plan_tiles(height: int, width: int, window: tuple[int, int], overlap: int, align: int = 1) -> list[Tile]:
    """Tiles (row-major) over a `height` x `width` frame with windows of `window` = (rows, cols)."""
    rows = split_axis(height, window[0], overlap, align)
    cols = split_axis(width, window[1], overlap, align)
    return [Tile(r, c) for r in rows for c in cols]
