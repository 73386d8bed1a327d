"""GPU checks, run by bench/gpu_check.sh on a lent device (they skip where no CUDA GPU exists)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import tiny_model
from worker.upscaler import ClipUpscaler

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_cuda_matches_cpu_and_streams() -> None:
    model = tiny_model("fastvsr", temporal_compression=4)
    rng = np.random.default_rng(0)
    clip = [rng.integers(0, 256, (36, 60, 3), dtype=np.uint8) for _ in range(13)]
    cpu = np.stack(list(ClipUpscaler(model, chunk_frames=4).upscale(clip)))
    gpu_model = tiny_model("fastvsr", temporal_compression=4).cuda()
    gpu = np.stack(list(ClipUpscaler(gpu_model, chunk_frames=4, device="cuda").upscale(clip)))
    assert gpu.shape == cpu.shape == (13, 144, 240, 3)
    assert np.abs(gpu.astype(int) - cpu.astype(int)).max() <= 2


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_low_precision_engines_match_cpu_fp32(precision: str) -> None:
    """Whole upscaled frames from torch CUDA autocast engines vs the CPU fp32 path (uint8 levels)."""
    from engines.pipeline import load_engines
    from engines.settings import EngineSettings

    rng = np.random.default_rng(1)
    clip = [rng.integers(0, 256, (36, 60, 3), dtype=np.uint8) for _ in range(13)]
    cpu = np.stack(
        list(ClipUpscaler(tiny_model("fastvsr", temporal_compression=4), chunk_frames=4).upscale(clip))
    )
    settings = EngineSettings(backend="torch", precision=precision)  # type: ignore[arg-type]
    engines = load_engines(tiny_model("fastvsr", temporal_compression=4), settings, "cuda")
    gpu = np.stack(list(ClipUpscaler(engines, chunk_frames=4).upscale(clip)))
    difference = np.abs(gpu.astype(int) - cpu.astype(int))
    assert gpu.shape == cpu.shape == (13, 144, 240, 3)
    assert difference.mean() < 1.0 and difference.max() <= 16, (difference.mean(), difference.max())


def test_gpu_memory_gauge_reads_cuda() -> None:
    from service.metrics import ServiceMetrics
    from worker.gpu_memory import export_gpu_memory

    rng = np.random.default_rng(2)
    clip = [rng.integers(0, 256, (36, 60, 3), dtype=np.uint8) for _ in range(9)]
    model = tiny_model("fastvsr", temporal_compression=4).cuda()
    assert len(list(ClipUpscaler(model, chunk_frames=4, device="cuda").upscale(clip))) == 9
    metrics = ServiceMetrics()
    reading = export_gpu_memory(metrics, torch.device("cuda"))
    assert reading is not None
    assert reading.peak > 0 and reading.reserved >= reading.allocated > 0  # the model's weights stay
    assert 0 < reading.device_used <= reading.device_total
    assert metrics.registry.get_sample_value("vsr_gpu_memory_bytes", {"kind": "peak"}) == reading.peak


def test_gpu_memory_stays_within_the_tile_budget() -> None:
    """A 720p-input chunk far over budget runs as tiles; the CUDA allocator's peak stays under it."""
    budget = 256 << 20
    model = tiny_model("fastvsr").cuda()
    upscaler = ClipUpscaler(model, chunk_frames=4, device="cuda", memory_budget_bytes=budget)
    assert len(upscaler.plan(720, 1280)) > 1
    rng = np.random.default_rng(3)
    clip = [rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8) for _ in range(5)]
    weights = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    assert len(list(upscaler.upscale(clip))) == 5
    assert torch.cuda.max_memory_allocated() - weights <= budget
