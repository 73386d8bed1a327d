"""Spatial tiles within a memory budget: the plan, the measured memory model, and fidelity on real frames."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from imageio.v3 import imread

from engines.pipeline import torch_engines
from evaluation.metrics import frame_metrics
from models.registry import resolve_model
from tests.conftest import tiny_model
from worker.memory_budget import (
    ChunkMemory,
    LiveStorageBytes,
    MemoryBudgetError,
    chunk_memory,
    plan_within_budget,
    probe_peak_bytes,
)
from worker.tiling import plan_tiles, split_axis
from worker.upscaler import ClipUpscaler

MIB = 1 << 20


@pytest.mark.parametrize("align", [1, 8, 16])
@pytest.mark.parametrize("overlap", [0, 4, 16])
def test_tile_cores_partition_the_axis_and_keep_their_context(overlap: int, align: int) -> None:
    for length in range(16, 400, 16):
        for window in range(16, 240, 16):
            try:
                spans = split_axis(length, window, overlap, align)
            except ValueError:
                assert window - 2 * (overlap + align - 1) < 1  # only refused when no core is left
                continue
            assert spans[0].keep_start == 0 and spans[-1].keep_end == length
            assert all(a.keep_end == b.keep_start for a, b in itertools.pairwise(spans))
            for span in spans:
                assert span.size == min(window, length) and 0 <= span.start <= length - span.size
                assert span.start % align == 0
                assert span.start <= span.keep_start < span.keep_end <= span.start + span.size
                if span.keep_start > 0 and span.start > 0:  # context towards the previous tile
                    assert span.keep_start - span.start >= overlap
                if span.keep_end < length and span.start + span.size < length:
                    assert span.start + span.size - span.keep_end >= overlap


def test_a_frame_that_fits_is_one_tile() -> None:
    (tile,) = plan_tiles(64, 96, (64, 96), overlap=16)
    assert (tile.rows.window, tile.cols.window) == (slice(0, 64), slice(0, 96))


def test_the_memory_model_is_affine_in_pixels_and_matches_real_tensors() -> None:
    config = tiny_model().config
    memory = chunk_memory(config, 4)
    for height, width in [(48, 80), (96, 32)]:
        probe = probe_peak_bytes(config, 4, height, width)
        assert probe.peak == pytest.approx(memory.bytes_for(height, width), rel=1e-3)
        assert probe.caches == pytest.approx(memory.cache_bytes_for(height, width), rel=1e-3)
        assert 0 < probe.caches < probe.peak
    # the fake-tensor probe counts what a real run allocates
    engines = torch_engines(tiny_model(), "cpu")
    stream = engines.new_stream()
    with torch.inference_mode(), LiveStorageBytes() as tracker:
        clip = torch.rand(1, 3, 5, 48, 80)
        engines.upscale_chunk(clip, stream)
        engines.upscale_chunk(clip[:, :, :4], stream)
    assert tracker.peak == pytest.approx(memory.bytes_for(48, 80), rel=0.02)


MEMORY = ChunkMemory(fixed=10 * MIB, per_pixel=1000.0, cache_per_pixel=400.0)


def _need(tiles: list, offload: bool) -> int:
    window = (tiles[0].rows.size, tiles[0].cols.size)
    others = 0 if offload else (len(tiles) - 1) * MEMORY.cache_bytes_for(*window)
    return MEMORY.bytes_for(*window) + others


@pytest.mark.parametrize("offload", [True, False])
def test_the_plan_is_the_fewest_tiles_that_fit(offload: bool) -> None:
    def plan(height: int, width: int, budget: int) -> list:
        return plan_within_budget(
            MEMORY, height, width, budget, multiple=16, overlap=16, offload_caches=offload
        )

    (whole,) = plan(64, 64, 20 * MIB)  # 14 MiB: the whole frame
    assert (whole.rows.size, whole.cols.size) == (64, 64)
    budget = (200 if offload else 600) * MIB  # without offload, every tile's caches stay: 351 MiB at least
    tiles = plan(720, 1280, budget)
    window = (tiles[0].rows.size, tiles[0].cols.size)
    assert len(tiles) > 1 and window[0] % 16 == 0 and window[1] % 16 == 0
    assert _need(tiles, offload) <= budget
    bigger = plan_tiles(720, 1280, (window[0] + 16, window[1] + 16), 16, align=16)
    assert _need(bigger, offload) > budget or len(bigger) >= len(tiles)
    strip = plan(64, 4096, 250 * MIB)  # a strip: windows as long as the budget allows
    assert strip[0].rows.size == 64 and strip[0].cols.size > 1000
    with pytest.raises(MemoryBudgetError, match="over the memory budget of 11 MiB"):
        plan(720, 1280, 11 * MIB)


def test_tiles_keep_every_chunk_within_the_budget() -> None:
    model = tiny_model()
    budget = 54 * MIB
    upscaler = ClipUpscaler(model, chunk_frames=4, memory_budget_bytes=budget, tile_overlap=8)
    height, width = 50, 90
    tiles = upscaler.plan(height, width)
    assert len(tiles) > 1
    window = (tiles[0].rows.size, tiles[0].cols.size)
    probe = probe_peak_bytes(model.config, 4, *window)
    assert probe.peak + (len(tiles) - 1) * probe.caches <= budget  # on the CPU every tile's caches stay
    assert probe_peak_bytes(model.config, 4, 56, 96).peak > budget  # the whole (padded) frame would not fit
    rng = np.random.default_rng(0)
    clip = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(6)]
    out = list(upscaler.upscale(clip))
    assert len(out) == 6 and all(f.shape == (200, 360, 3) for f in out)


def test_tiled_output_matches_untiled_on_real_frames(shared_data: Path) -> None:
    """The shipped model on real LR frames: tiled vs whole-frame Y-PSNR (against GT) within 0.05 dB."""
    sequence = shared_data / "sam2_bedroom" / "bedroom"
    names = sorted(p.name for p in (sequence / "LR").glob("*.png"))[:5]
    box = (slice(20, 116), slice(40, 200))  # a 96x160 low-res crop, 4x in GT
    lr = [imread(sequence / "LR" / n)[box][..., :3] for n in names]
    gt = [imread(sequence / "GT" / n)[4 * 20 : 4 * 116, 4 * 40 : 4 * 200][..., :3] for n in names]
    model = resolve_model().model
    whole = list(ClipUpscaler(model, chunk_frames=4).upscale(lr))
    tiled_upscaler = ClipUpscaler(model, chunk_frames=4, memory_budget_bytes=320 * MIB)
    assert len(tiled_upscaler.plan(96, 160)) > 1
    tiled = list(tiled_upscaler.upscale(lr))
    psnr_whole = np.mean([frame_metrics(o, g)[0] for o, g in zip(whole, gt, strict=True)])
    psnr_tiled = np.mean([frame_metrics(o, g)[0] for o, g in zip(tiled, gt, strict=True)])
    assert abs(psnr_tiled - psnr_whole) <= 0.05, (psnr_tiled, psnr_whole)
    assert not np.array_equal(np.stack(whole), np.stack(tiled))  # the tiles really ran separately
