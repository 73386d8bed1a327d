"""One job, start to end: download -> probe -> upscale chunk by chunk -> upload -> publish -> mark -> notify.

`process_job` is the RQ entry point. The job record is authoritative: a job that is no longer `queued`
when a worker picks it up is skipped, and every outcome is written to the record, never only to RQ.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rq.timeouts import JobTimeoutException

from service.jobs import IllegalTransitionError, JobError, JobOutput, JobRecord, JobStatus
from service.storage import StorageError, temp_key
from worker.runtime import WorkerRuntime, current_runtime
from worker.upscale_file import UpscaleOptions, UpscaleResult, upscale_video
from worker.video_io import VideoError, probe_video

log = logging.getLogger(__name__)
VIDEO_ERROR_CODES = {
    "not_found": "invalid_video",
    "not_a_video": "invalid_video",
    "no_frames": "invalid_video",
    "decode_error": "invalid_video",
    "unsupported_option": "invalid_params",
    "encode_error": "encode_error",
    "input_too_large": "input_too_large",
    "input_too_long": "input_too_long",
}
CONTENT_TYPES = {"mp4": "video/mp4", "mkv": "video/x-matroska"}


class JobCanceledError(Exception):
    pass


def process_job(job_id: str) -> str:
    """RQ entry point (enqueued by name from the API)."""
    return JobRunner(current_runtime()).run(job_id)


class JobRunner:
    def __init__(self, runtime: WorkerRuntime) -> None:
        self.runtime = runtime
        self.services = runtime.services
        self.store = runtime.services.store
        self.metrics = runtime.services.metrics

    def run(self, job_id: str) -> str:
        record = self.store.get(job_id)
        if record is None or record.status != JobStatus.QUEUED:
            log.info("job %s skipped: %s", job_id, "no record" if record is None else record.status)
            return "skipped"
        try:
            record = self.store.transition(
                job_id, JobStatus.PROCESSING, attempts=record.attempts + 1, worker=self.runtime.name
            )
        except IllegalTransitionError:
            return "skipped"  # canceled between the read and the claim
        assert record.started_at is not None
        queue_wait = (record.started_at - record.created_at).total_seconds()
        self.metrics.jobs.labels(status=JobStatus.PROCESSING).inc()
        self.metrics.stage_seconds.labels("queue_wait").observe(queue_wait)
        record = self.store.update(job_id, lambda r: r.timings.update(queue_wait=round(queue_wait, 4)))
        self.services.notifier.notify(record, "start")
        return self._finish(job_id, *self._attempt(record))

    def _attempt(self, record: JobRecord) -> tuple[JobStatus, dict[str, object]]:
        try:
            return JobStatus.SUCCEEDED, self._execute(record)
        except JobCanceledError:
            return JobStatus.CANCELED, {}
        except VideoError as exc:
            code = VIDEO_ERROR_CODES.get(exc.code, "invalid_video")
            return JobStatus.FAILED, {"error": JobError(code=code, message=str(exc))}
        except StorageError as exc:
            code = "input_not_found" if exc.code == "not_found" else exc.code
            return JobStatus.FAILED, {"error": JobError(code=code, message=str(exc))}
        except JobTimeoutException as exc:
            message = f"the job ran longer than {self.services.settings.job_timeout_s} s: {exc}"
            return JobStatus.FAILED, {"error": JobError(code="timeout", message=message)}
        except Exception as exc:
            log.exception("job %s crashed", record.id)
            message = f"{type(exc).__name__}: {exc}"
            return JobStatus.FAILED, {"error": JobError(code="internal_error", message=message)}

    def _finish(self, job_id: str, status: JobStatus, fields: dict[str, object]) -> str:
        record = self.store.transition(job_id, status, **fields)
        if status != JobStatus.SUCCEEDED and record.input.bucket is None:
            self._delete_quietly(record.input.key)  # failed or canceled: nothing of it is left behind
        self.metrics.jobs.labels(status=status).inc()
        self.services.notifier.notify(record, "completed")
        log.info("job %s %s%s", job_id, status, f" ({record.error.code})" if record.error else "")
        return str(status)

    def _execute(self, record: JobRecord) -> dict[str, object]:
        settings = self.services.settings
        work_root = settings.data_dir / "work"
        work_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f"{record.id}-", dir=work_root) as tmp:
            source = Path(tmp) / f"input{Path(record.input.key).suffix}"
            download_s = self._timed(
                "download",
                lambda: self.services.storage.download_file(record.input.key, source, record.input.bucket),
            )
            self._raise_if_canceled(record.id)
            info = probe_video(source)
            self.store.update(record.id, lambda r: setattr(r.progress, "frames_total", info.frames_estimate))
            output = Path(tmp) / f"output.{record.params.container}"
            result = self._upscale(record, source, output)
            output_bytes = output.stat().st_size
            self._raise_if_canceled(record.id)
            key = f"jobs/{record.tenant}/{record.id}/output.{record.params.container}"
            upload_s = self._timed("upload", lambda: self._publish(output, key, record.params.container))
        io = {"download": download_s, "upload": upload_s}
        return self._success_fields(record, result, key, output_bytes, io)

    def _upscale(self, record: JobRecord, source: Path, output: Path) -> UpscaleResult:
        settings = self.services.settings
        params = record.params
        options = UpscaleOptions(
            scale=params.scale,
            codec=params.codec,
            crf=params.crf,
            preset=params.preset,
            chunk_frames=settings.chunk_frames,
            device=settings.device,
            max_input_pixels=settings.max_input_pixels,
            max_input_frames=settings.max_input_frames,
        )
        model = self.runtime.model(params.model or settings.default_model)
        last_write = time.monotonic()

        def progress(done: int, total: int | None) -> None:
            nonlocal last_write
            current = self.store.get(record.id)
            if current is None or current.cancel_requested:
                raise JobCanceledError(record.id)
            if time.monotonic() - last_write >= settings.progress_interval_s:
                last_write = time.monotonic()
                updated = self.store.update(record.id, lambda r: _set_progress(r, done, total))
                self.services.notifier.notify(updated, "progress")

        return upscale_video(source, output, model, options, progress)

    def _publish(self, path: Path, key: str, container: str) -> None:
        """Upload under a temporary key, then publish: the final key only ever holds a whole file."""
        storage = self.services.storage
        staging = temp_key(key)
        try:
            storage.put_file(staging, path, CONTENT_TYPES.get(container, "application/octet-stream"))
            storage.publish(staging, key)
        except BaseException:
            self._delete_quietly(staging)
            raise

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
            "video_encode": result.encode_seconds,
            "upload": io["upload"],
        }
        for stage in ("decode", "model_encode", "denoise", "model_decode", "video_encode"):
            self.metrics.stage_seconds.labels(stage).observe(timings[stage])
        for component in ("encoder", "denoiser", "decoder"):
            self.metrics.macs.labels(component).inc(stats.macs[component])
        self.metrics.frames.inc(stats.frames)
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
        progress = record.progress.model_copy(
            update={"frames_done": result.frames, "frames_total": result.frames}
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

    def _raise_if_canceled(self, job_id: str) -> None:
        current = self.store.get(job_id)
        if current is None or current.cancel_requested:
            raise JobCanceledError(job_id)

    def _delete_quietly(self, key: str) -> None:
        try:
            self.services.storage.delete(key)
        except StorageError as exc:
            log.warning("could not delete %s: %s", key, exc)


def _set_progress(record: JobRecord, done: int, total: int | None) -> None:
    record.progress.frames_done = done
    if total is not None:
        record.progress.frames_total = max(total, done)
