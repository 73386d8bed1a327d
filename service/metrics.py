"""Prometheus metrics (base units, `_total` counters, no job-id labels) on a registry built per process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# Video jobs take seconds to an hour: buckets from 10 ms to 1 h.
STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)
FRAME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
STAGES = (
    "queue_wait",
    "download",
    "decode",
    "model_encode",
    "denoise",
    "model_decode",
    "stabilize",
    "video_encode",
    "upload",
)

GPU_MEMORY_KINDS = ("allocated", "reserved", "peak", "device_used", "device_total")


@dataclass(frozen=True)
class GpuMemory:
    """One reading of a worker's GPU memory, in bytes.

    allocated / reserved / peak: torch's caching allocator in this process (tensors in use, memory held
    from the driver, most ever allocated since the worker started); device_used / device_total: the
    whole GPU as the driver reports it (every process, TensorRT and ONNX Runtime workspaces included).
    """

    allocated: int
    reserved: int
    peak: int
    device_used: int
    device_total: int


class ServiceMetrics:
    """Every metric the API and the worker export; one instance per process (or per test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.jobs = Counter("vsr_jobs", "Jobs that reached a status", ["status"], registry=r)
        self.stage_seconds = Histogram(
            "vsr_stage_seconds", "Time per job stage", ["stage"], buckets=STAGE_BUCKETS, registry=r
        )
        self.macs = Counter("vsr_macs", "Multiply-accumulates computed", ["component"], registry=r)
        # Counted as frames leave the model (every attempt, whatever its outcome), so rate() is live.
        self.frames = Counter("vsr_frames", "Frames upscaled", registry=r)
        self.frame_seconds = Histogram(
            "vsr_frame_inference_seconds", "Model time per frame", buckets=FRAME_BUCKETS, registry=r
        )
        self.requests = Counter(
            "vsr_http_requests", "API requests", ["method", "route", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "vsr_http_request_duration_seconds",
            "API request latency",
            ["method", "route"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        # Set by workers whose engines run on CUDA (worker/gpu_memory.py); absent on CPU workers.
        self.gpu_memory = Gauge(
            "vsr_gpu_memory_bytes", "GPU memory of a worker, by kind", ["kind"], registry=r
        )

        # The worker's current job (one job per worker process; 0 when idle, NaN while unknown).
        self.job_frames = Gauge(
            "vsr_worker_job_frames",
            "Frames of the worker's current job: done so far, and the total expected",
            ["kind"],
            registry=r,
        )
        self.job_fps = Gauge(
            "vsr_worker_frames_per_second",
            "Frames per second of the worker's current job (its attempt's average so far)",
            registry=r,
        )
        self.job_eta = Gauge(
            "vsr_worker_eta_seconds", "Seconds until the worker's current job finishes", registry=r
        )
        self.clear_job_progress()

    def set_job_progress(self, done: int, total: int | None, fps: float | None, eta_s: float | None) -> None:
        """Export the current job's progress (None: not known yet)."""
        nan = float("nan")
        self.job_frames.labels(kind="done").set(done)
        self.job_frames.labels(kind="total").set(nan if total is None else total)
        self.job_fps.set(nan if fps is None else fps)
        self.job_eta.set(nan if eta_s is None else eta_s)

    def clear_job_progress(self) -> None:
        """The worker is idle: every current-job gauge reads 0."""
        self.set_job_progress(0, 0, 0.0, 0.0)

    def set_gpu_memory(self, reading: GpuMemory) -> None:
        for kind in GPU_MEMORY_KINDS:
            self.gpu_memory.labels(kind=kind).set(getattr(reading, kind))

    def watch_queue(self, depth: Callable[[], int], workers: Callable[[], int]) -> None:
        """Export queue depth and live workers, read from Redis at scrape time."""
        self.registry.register(_QueueCollector(depth, workers))


class _QueueCollector(Collector):
    def __init__(self, depth: Callable[[], int], workers: Callable[[], int]) -> None:
        self._depth, self._workers = depth, workers

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            depth, workers = float(self._depth()), float(self._workers())
        except Exception:  # Redis down: export nothing rather than fail the scrape
            return
        yield GaugeMetricFamily("vsr_queue_depth", "Jobs waiting in the queue", value=depth)
        yield GaugeMetricFamily("vsr_workers", "Live workers listening on the queue", value=workers)
