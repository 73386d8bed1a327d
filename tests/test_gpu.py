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
