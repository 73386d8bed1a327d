"""Frames per second and ETA of a job: the pure computation, the record's fields and the worker gauges."""

from __future__ import annotations

import math

import pytest
from prometheus_client import generate_latest

from service.jobs import Progress
from service.metrics import ServiceMetrics
from service.progress import progress_rate


def test_rate_is_the_average_since_the_start() -> None:
    assert progress_rate(30, 120, 10.0) == (3.0, 30.0)  # 90 frames left at 3 frames/s
    assert progress_rate(1, 3, 3.0) == (0.333, 6.0)  # fps rounded to 3 places, eta from the exact rate


def test_unknown_and_finished() -> None:
    assert progress_rate(0, 100, 5.0) == (None, None)  # no frame yet: no rate
    assert progress_rate(5, 100, 0.0) == (None, None)  # no time measured
    assert progress_rate(12, None, 4.0) == (3.0, None)  # total unknown: a rate, no ETA
    assert progress_rate(10, 10, 2.0) == (5.0, 0.0)
    assert progress_rate(12, 10, 2.0) == (6.0, 0.0)  # the frame estimate fell short: never negative


@pytest.mark.parametrize("done", [1, 7, 50, 99])
def test_eta_at_the_measured_rate_lands_on_the_total(done: int) -> None:
    fps, eta_s = progress_rate(done, 100, done / 2.5)  # 2.5 frames/s
    assert fps == 2.5 and eta_s is not None
    assert math.isclose(done + eta_s * fps, 100)


def test_restart_keeps_the_total_only() -> None:
    progress = Progress(frames_done=40, frames_total=96, fps=2.0, eta_s=28.0)
    progress.restart()
    assert progress == Progress(frames_done=0, frames_total=96, fps=None, eta_s=None)


def test_worker_gauges_follow_the_current_job() -> None:
    metrics = ServiceMetrics()

    def sample(name: str, kind: str | None = None) -> float:
        labels = {} if kind is None else {"kind": kind}
        value = metrics.registry.get_sample_value(name, labels)
        assert value is not None, name
        return value

    assert sample("vsr_worker_frames_per_second") == sample("vsr_worker_eta_seconds") == 0  # idle
    assert sample("vsr_worker_job_frames", "done") == sample("vsr_worker_job_frames", "total") == 0
    metrics.set_job_progress(30, 120, 3.0, 30.0)
    assert sample("vsr_worker_frames_per_second") == 3.0 and sample("vsr_worker_eta_seconds") == 30.0
    assert (sample("vsr_worker_job_frames", "done"), sample("vsr_worker_job_frames", "total")) == (30, 120)
    metrics.set_job_progress(1, None, None, None)  # nothing known yet: NaN, not a made-up number
    assert math.isnan(sample("vsr_worker_eta_seconds")) and math.isnan(sample("vsr_worker_frames_per_second"))
    metrics.clear_job_progress()
    assert sample("vsr_worker_eta_seconds") == 0 and sample("vsr_worker_job_frames", "done") == 0
    text = generate_latest(metrics.registry).decode()
    assert "job_id" not in text and 'vsr_worker_job_frames{kind="total"} 0.0' in text
