"""The worker's GPU memory gauge, `vsr_gpu_memory_bytes{kind}`: set from a memory reader (a fake one here,
where no CUDA GPU exists; tests/test_gpu.py reads a real one), absent for CPU engines."""

from __future__ import annotations

import torch
from prometheus_client import generate_latest

from service.metrics import GPU_MEMORY_KINDS, GpuMemory, ServiceMetrics
from worker.gpu_memory import cuda_memory, export_gpu_memory

MIB = 1024**2


class FakeReader:
    """Readings in the order given, and the devices it was asked about."""

    def __init__(self, *readings: GpuMemory) -> None:
        self.readings = list(readings)
        self.devices: list[torch.device] = []

    def __call__(self, device: torch.device) -> GpuMemory | None:
        self.devices.append(device)
        return self.readings.pop(0) if device.type == "cuda" else None


def gauge(metrics: ServiceMetrics, kind: str) -> float | None:
    return metrics.registry.get_sample_value("vsr_gpu_memory_bytes", {"kind": kind})


def test_gauge_follows_each_reading() -> None:
    metrics = ServiceMetrics()
    first = GpuMemory(
        allocated=300 * MIB,
        reserved=512 * MIB,
        peak=400 * MIB,
        device_used=900 * MIB,
        device_total=80 * 1024 * MIB,
    )
    second = GpuMemory(
        allocated=100 * MIB,
        reserved=512 * MIB,
        peak=700 * MIB,
        device_used=1100 * MIB,
        device_total=80 * 1024 * MIB,
    )
    reader = FakeReader(first, second)
    device = torch.device("cuda", 1)

    assert export_gpu_memory(metrics, device, reader) == first
    assert {kind: gauge(metrics, kind) for kind in GPU_MEMORY_KINDS} == {
        "allocated": 300 * MIB,
        "reserved": 512 * MIB,
        "peak": 400 * MIB,
        "device_used": 900 * MIB,
        "device_total": 80 * 1024 * MIB,
    }
    export_gpu_memory(metrics, device, reader)  # a gauge: the latest reading replaces the previous one
    assert gauge(metrics, "allocated") == 100 * MIB and gauge(metrics, "peak") == 700 * MIB
    assert gauge(metrics, "device_used") == 1100 * MIB
    assert reader.devices == [device, device]
    text = generate_latest(metrics.registry).decode()
    assert 'vsr_gpu_memory_bytes{kind="reserved"} 5.36870912e+08' in text


def test_cpu_engines_export_no_gpu_memory() -> None:
    metrics = ServiceMetrics()
    assert cuda_memory(torch.device("cpu")) is None  # the real reader, without touching CUDA
    assert export_gpu_memory(metrics, torch.device("cpu")) is None
    assert all(gauge(metrics, kind) is None for kind in GPU_MEMORY_KINDS)
    text = generate_latest(metrics.registry).decode()
    assert "# TYPE vsr_gpu_memory_bytes gauge" in text  # declared, with no sample
    assert "vsr_gpu_memory_bytes{" not in text
