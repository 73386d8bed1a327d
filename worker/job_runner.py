"""One job, start to end: claim -> download -> probe -> upscale chunk by chunk -> upload -> publish ->
mark -> notify.

`process_job` is the RQ entry point. The job record is authoritative: a job that is no longer `queued`
when a worker picks it up is skipped. The claim sets a lease that a heartbeat thread renews; every later
write to the record is fenced by (worker, attempt), so an attempt that lost its lease (its job was
re-queued by a reaper) can never overwrite the outcome of the attempt that replaced it. Between chunks
the worker checks the cancel flag, its lease, and whether it was asked to shut down (then it puts the
job back in the queue). Storage transfers and Redis writes survive outages within their retry budgets.
"""

from __future__ import annotations

import logging
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import redis
import torch
from rq.timeouts import JobTimeoutException

from service.job_queue import enqueue_job, new_rq_job_id
from service.jobs import (
    IllegalTransitionError,
    JobError,
    JobOutput,
    JobRecord,
    JobStatus,
    Owner,
    OwnershipLostError,
)
from service.progress import progress_rate
from service.storage import StorageError, attempt_prefix
from worker.gpu_memory import export_gpu_memory
from worker.leases import Heartbeat, redis_unavailable, storage_unavailable, with_backoff
from worker.runtime import WorkerRuntime, current_runtime
from worker.upscale_file import UpscaleOptions, UpscaleResult, upscale_video
from worker.video_io import VideoError, probe_video

log = logging.getLogger(__name__)
T = TypeVar("T")
VIDEO_ERROR_CODES = {
    "not_found": "invalid_video",
    "not_a_video": "invalid_video",
    "no_frames": "invalid_video",
    "decode_error": "invalid_video",
    "unsupported_option": "invalid_params",
    "encode_error": "encode_error",
    "input_too_large": "input_too_large",
    "input_too_long": "input_too_long",
    "unsupported_codec": "unsupported_codec",
}
WORK_PATH = re.compile(r"/\S*/((?:input|output)\.\w+)")
CONTENT_TYPES = {"mp4": "video/mp4", "mkv": "video/x-matroska"}
SUCCEEDED, REQUEUED, LOST = "succeeded", "requeued", "lost"


class JobCanceledError(Exception):
    pass


class JobInterruptedError(Exception):
    """The worker is shutting down: the job goes back to the queue."""


def process_job(job_id: str) -> str:
    """RQ entry point (enqueued by name from the API)."""
    return JobRunner(current_runtime()).run(job_id)


class JobRunner:
    def __init__(self, runtime: WorkerRuntime) -> None:
        self.runtime = runtime
        self.services = runtime.services
        self.settings = runtime.services.settings
        self.store = runtime.services.store
        self.metrics = runtime.services.metrics
        self._upscale_s = 0.0  # wall seconds of the last upscale (decode to encoded output)

    def run(self, job_id: str) -> str:
        self.runtime.active_job = job_id
        try:
            return self._run(job_id)
        finally:
            self.runtime.active_job = None

    def _run(self, job_id: str) -> str:
        record = self._redis(lambda: self.store.get(job_id))
        if record is None or record.status != JobStatus.QUEUED:
            log.info("job %s skipped: %s", job_id, "no record" if record is None else record.status)
            return "skipped"
        try:
            record = self._redis(lambda: self.store.claim(job_id, self.runtime.name, self.settings.lease_s))
        except IllegalTransitionError:
            return "skipped"  # canceled, or claimed by another worker, between the read and the claim
        owner: Owner = (self.runtime.name, record.attempts)
        with Heartbeat(self.store, job_id, owner, self.settings.lease_s) as heartbeat:
            try:
                record = self._started(record, owner)
                status, fields = self._attempt(record, owner, heartbeat)
                return self._finish(record, owner, status, fields)
            except JobInterruptedError:
                return self._requeue(record, owner)
            except OwnershipLostError:
                log.warning(
                    "job %s: attempt %d lost its lease; leaving it to the new attempt", job_id, owner[1]
                )
                self.services.janitor.delete(attempt_prefix(job_id, owner[1]))
                return LOST

    def _started(self, record: JobRecord, owner: Owner) -> JobRecord:
        assert record.started_at is not None
        queue_wait = (record.started_at - record.created_at).total_seconds()
        self.metrics.jobs.labels(status=JobStatus.PROCESSING).inc()
        self.metrics.stage_seconds.labels("queue_wait").observe(queue_wait)
        record = self._redis(
            lambda: self.store.update(
                record.id, lambda r: r.timings.update(queue_wait=round(queue_wait, 4)), owner=owner
            )
        )
        self.services.notifier.notify(record, "start")
        return record

    def _attempt(
        self, record: JobRecord, owner: Owner, heartbeat: Heartbeat
    ) -> tuple[JobStatus, dict[str, object]]:
        """Run the job; map every failure to a status and an error code (interruptions propagate)."""
        try:
            return JobStatus.SUCCEEDED, self._execute(record, owner, heartbeat)
        except (JobInterruptedError, OwnershipLostError):
            raise
        except JobCanceledError:
            return JobStatus.CANCELED, {}
        except VideoError as exc:
            code = VIDEO_ERROR_CODES.get(exc.code, "invalid_video")
            message = WORK_PATH.sub(
                r"\1", str(exc)
            )  # the worker's scratch paths are not the client's business
            return JobStatus.FAILED, {"error": JobError(code=code, message=message)}
        except StorageError as exc:
            code = "input_not_found" if exc.code == "not_found" else exc.code
            return JobStatus.FAILED, {"error": JobError(code=code, message=str(exc))}
        except JobTimeoutException as exc:
            message = f"the job ran longer than {self.settings.job_timeout_s} s: {exc}"
            return JobStatus.FAILED, {"error": JobError(code="timeout", message=message)}
        except Exception as exc:
            log.exception("job %s crashed", record.id)
            message = f"{type(exc).__name__}: {exc}"
            return JobStatus.FAILED, {"error": JobError(code="internal_error", message=message)}

    def _finish(self, record: JobRecord, owner: Owner, status: JobStatus, fields: dict[str, object]) -> str:
        """Clean up, then write the outcome: a client that sees the final status sees no leftovers."""
        current = self._redis(lambda: self.store.get(record.id))
        if current is None or (current.worker, current.attempts) != owner:
            raise OwnershipLostError(record.id)
        janitor = self.services.janitor
        janitor.delete(attempt_prefix(record.id, owner[1]))
        if status != JobStatus.SUCCEEDED and record.input.bucket is None:
            janitor.delete(record.input.key)  # failed or canceled: nothing of it is left behind
        if status != JobStatus.SUCCEEDED:  # a stopped attempt has no time left to finish
            fields = {**fields, "progress": current.progress.model_copy(update={"eta_s": None})}
        record = self._redis(lambda: self.store.transition(record.id, status, owner=owner, **fields))
        self.metrics.jobs.labels(status=status).inc()
        self.services.notifier.notify(record, "completed")
        log.info("job %s %s%s", record.id, status, f" ({record.error.code})" if record.error else "")
        return str(status)

    def _requeue(self, record: JobRecord, owner: Owner) -> str:
        """Give the job back (shutdown): this attempt does not count against the job."""
        rq_job_id = new_rq_job_id(record.id)

        def change(current: JobRecord) -> None:
            current.status, current.worker, current.rq_job_id = JobStatus.QUEUED, None, rq_job_id
            current.attempts -= 1
            current.progress.restart()

        self._redis(lambda: self.store.update(record.id, change, owner=owner))
        enqueue_job(self.services.queue, record.id, rq_job_id, self.settings)
        self.services.janitor.delete(attempt_prefix(record.id, owner[1]))
        log.warning("job %s: worker shutting down, job re-queued", record.id)
        return REQUEUED

    def _execute(self, record: JobRecord, owner: Owner, heartbeat: Heartbeat) -> dict[str, object]:
        storage = self.services.storage
        work_root = self.settings.data_dir / "work"
        work_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f"{record.id}-", dir=work_root) as tmp:
            source = Path(tmp) / f"input{Path(record.input.key).suffix}"
            download_s = self._timed(
                "download",
                lambda: self._storage(
                    lambda: storage.download_file(record.input.key, source, record.input.bucket), "download"
                ),
            )
            self._checkpoint(record.id, heartbeat)
            info = probe_video(source)
            self._redis(
                lambda: self.store.update(
                    record.id,
                    lambda r: setattr(r.progress, "frames_total", info.frames_estimate),
                    owner=owner,
                )
            )
            output = Path(tmp) / f"output.{record.params.container}"
            result = self._upscale(record, owner, heartbeat, source, output)
            output_bytes = output.stat().st_size
            self._checkpoint(record.id, heartbeat)
            key = f"jobs/{record.tenant}/{record.id}/output.{record.params.container}"
            staging = attempt_prefix(record.id, owner[1]) + key.rsplit("/", 1)[-1]
            upload_s = self._timed(
                "upload", lambda: self._publish(output, staging, key, record.params.container)
            )
        io = {"download": download_s, "upload": upload_s}
        return self._success_fields(record, result, key, output_bytes, io)

    def _checkpoint(self, job_id: str, heartbeat: Heartbeat) -> None:
        """Between chunks: stop if the lease is gone, the job was canceled, or the worker is stopping."""
        if heartbeat.lost.is_set():
            raise OwnershipLostError(job_id)
        if self.runtime.shutdown_requested.is_set() and self.settings.shutdown == "requeue":
            raise JobInterruptedError(job_id)
        try:
            current = self.store.get(job_id)
        except redis.RedisError:
            return  # Redis is away: carry on; the outcome is written when it is back
        if current is None or current.cancel_requested:
            raise JobCanceledError(job_id)

    def _upscale(
        self, record: JobRecord, owner: Owner, heartbeat: Heartbeat, source: Path, output: Path
    ) -> UpscaleResult:
        settings = self.settings
        params = record.params
        options = UpscaleOptions(
            scale=params.scale,
            codec=params.codec,
            crf=params.crf,
            preset=params.preset,
            chunk_frames=settings.chunk_frames,
            device=settings.device,
            max_input_pixels=settings.max_input_pixels,
            memory_budget_bytes=settings.memory_budget_mb and settings.memory_budget_mb << 20,
            max_input_frames=settings.max_input_frames,
            io_niceness=settings.io_niceness,
            temporal_blend=settings.temporal_blend,
            motion_threads=settings.motion_threads,
        )
        model = self.runtime.model(params.model or settings.default_model)
        metrics = self.metrics
        started = last_write = time.monotonic()
        counted = 0  # frames of this attempt already added to vsr_frames_total

        def progress(done: int, total: int | None) -> None:
            nonlocal last_write, counted
            now = time.monotonic()
            expected = None if total is None else max(total, done)  # the estimate may fall short
            fps, eta_s = progress_rate(done, expected, now - started)
            metrics.frames.inc(max(done - counted, 0))
            counted = max(counted, done)
            metrics.set_job_progress(done, expected, fps, eta_s)
            self._checkpoint(record.id, heartbeat)
            if now - last_write < settings.progress_interval_s:
                return
            last_write = now
            self._export_gpu_memory(model.device)
            try:
                updated = self.store.update(
                    record.id, lambda r: _set_progress(r, done, total, fps, eta_s), owner=owner
                )
            except redis.RedisError:
                return  # progress is best effort
            self.services.notifier.notify(updated, "progress")

        try:
            result = upscale_video(source, output, model, options, progress)
            self._upscale_s = time.monotonic() - started
            return result
        finally:
            metrics.clear_job_progress()
            self._export_gpu_memory(model.device)  # after every job, whatever its outcome

    def _export_gpu_memory(self, device: torch.device) -> None:
        """Update `vsr_gpu_memory_bytes` (CUDA engines only); a metric never fails a job."""
        try:
            export_gpu_memory(self.metrics, device)
        except Exception:
            log.debug("cannot read GPU memory on %s", device, exc_info=True)

    def _publish(self, path: Path, staging: str, key: str, container: str) -> None:
        """Upload under this attempt's staging key, then publish: the final key only ever holds a whole
        file. A failed upload's staging objects are deleted now, or by the reaper once storage is back."""
        storage = self.services.storage
        try:
            content_type = CONTENT_TYPES.get(container, "application/octet-stream")
            self._storage(lambda: storage.put_file(staging, path, content_type), "upload")
            self._storage(lambda: storage.publish(staging, key), "publish")
        except BaseException:
            self.services.janitor.delete(staging)
            raise

    def _storage(self, action: Callable[[], None], what: str) -> None:
        with_backoff(
            action, retry_on=storage_unavailable, budget_s=self.settings.storage_retry_budget_s, what=what
        )

    def _redis(self, action: Callable[[], T]) -> T:
        return with_backoff(
            action, retry_on=redis_unavailable, budget_s=self.settings.redis_retry_budget_s, what="redis"
        )

    def _success_fields(
        self, record: JobRecord, result: UpscaleResult, key: str, output_bytes: int, io: dict[str, float]
    ) -> dict[str, object]:
        stats = result.stats
        timings = {
            **record.timings,
            "download": io["download"],
            "decode": result.decode_seconds,
            "model_encode": stats.seconds["encode"],
            "denoise": stats.seconds["denoise"],
            "model_decode": stats.seconds["decode"],
            "stabilize": stats.seconds["stabilize"],
            "video_encode": result.encode_seconds,
            "upload": io["upload"],
        }
        for stage in ("decode", "model_encode", "denoise", "model_decode", "stabilize", "video_encode"):
            self.metrics.stage_seconds.labels(stage).observe(timings[stage])
        for component in ("encoder", "denoiser", "decoder"):
            self.metrics.macs.labels(component).inc(stats.macs[component])
        if stats.frames:
            self.metrics.frame_seconds.observe(sum(stats.seconds.values()) / stats.frames)
        output = JobOutput(
            key=key,
            width=result.width,
            height=result.height,
            frames=result.frames,
            fps=float(result.fps),
            bytes=output_bytes,
        )
        fps, _ = progress_rate(result.frames, result.frames, self._upscale_s)  # the whole run's average
        progress = record.progress.model_copy(
            update={"frames_done": result.frames, "frames_total": result.frames, "fps": fps, "eta_s": 0.0}
        )
        return {
            "output": output,
            "timings": {k: round(v, 4) for k, v in timings.items()},
            "macs": dict(stats.macs),
            "progress": progress,
        }

    def _timed(self, stage: str, action: Callable[[], None]) -> float:
        start = time.perf_counter()
        action()
        seconds = time.perf_counter() - start
        self.metrics.stage_seconds.labels(stage).observe(seconds)
        return seconds


def _set_progress(
    record: JobRecord, done: int, total: int | None, fps: float | None, eta_s: float | None
) -> None:
    progress = record.progress
    progress.frames_done, progress.fps, progress.eta_s = done, fps, eta_s
    if total is not None:
        progress.frames_total = max(total, done)
