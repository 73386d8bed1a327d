"""The worker's GPU memory gauge (`vsr_gpu_memory_bytes{kind}`), read from torch when engines run on CUDA."""

from __future__ import annotations

from collections.abc import Callable

import torch

from service.metrics import GpuMemory, ServiceMetrics

MemoryReader = Callable[[torch.device], GpuMemory | None]


def cuda_memory(device: torch.device) -> GpuMemory | None:
    """This process's torch allocator statistics and the device's use; None off CUDA."""
    if device.type != "cuda":
        return None
    stats = torch.cuda.memory_stats(device)  # one call: cheaper than three memory_* helpers
    free, total = torch.cuda.mem_get_info(device)
    return GpuMemory(
        allocated=int(stats.get("allocated_bytes.all.current", 0)),
        reserved=int(stats.get("reserved_bytes.all.current", 0)),
        peak=int(stats.get("allocated_bytes.all.peak", 0)),
        device_used=int(total - free),
        device_total=int(total),
    )


def export_gpu_memory(
    metrics: ServiceMetrics, device: torch.device, reader: MemoryReader = cuda_memory
) -> GpuMemory | None:
    """Set the gauge from one reading (nothing is set for a CPU device); return the reading."""
    reading = reader(device)
    if reading is not None:
        metrics.set_gpu_memory(reading)
    return reading
