"""Finds jobs whose worker is gone and puts them back in the queue (or fails them), re-queues jobs
RQ lost, and retries deletions that failed during a storage outage.

A worker holds a lease (a Redis key with a TTL) on the job it processes and renews it every third of
its life. A `processing` job without a lease was abandoned: its worker died or lost Redis for longer
than the lease. It is re-queued until it has used `max_attempts` claims, then fails with
`worker_lost`, so a job that kills every worker that touches it (a poison pill) cannot loop forever.
Every API and worker process runs a reaper; the transitions are atomic, so they never collide.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from service.container import Services
from service.job_queue import enqueue_job, is_enqueued, new_rq_job_id
from service.jobs import IllegalTransitionError, JobError, JobNotFoundError, JobRecord, JobStatus, utcnow
from service.storage import attempt_prefix

log = logging.getLogger(__name__)


class _NotAbandonedError(Exception):
    pass


@dataclass
class ReaperReport:
    requeued: int = 0
    failed: int = 0
    reenqueued: int = 0
    deleted: int = 0


class JobReaper:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.store = services.store
        self.settings = services.settings

    def run_once(self) -> ReaperReport:
        report = ReaperReport()
        for job_id in self.store.ids_with_status(JobStatus.PROCESSING):
            if self.store.lease_holder(job_id) is None:
                outcome = self._reap(job_id)
                report.requeued += outcome == JobStatus.QUEUED
                report.failed += outcome in (JobStatus.FAILED, JobStatus.CANCELED)
        for job_id in self.store.ids_with_status(JobStatus.QUEUED):
            report.reenqueued += self._reenqueue_if_lost(job_id)
        report.deleted = self.services.janitor.collect()
        return report

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.wait(self.settings.reaper_interval_s):
            try:
                report = self.run_once()
                if report.requeued or report.failed or report.reenqueued:
                    log.warning("reaper: %s", report)
            except Exception:  # Redis or storage down: try again next round
                log.exception("reaper round failed")

    def _reap(self, job_id: str) -> JobStatus | None:
        """Requeue or fail one abandoned job; None if it turned out not to be abandoned."""
        lost_attempt = 0

        def change(record: JobRecord) -> None:
            nonlocal lost_attempt
            if record.status != JobStatus.PROCESSING or self.store.lease_holder(job_id) is not None:
                raise _NotAbandonedError
            lost_attempt = record.attempts
            record.worker = None
            if record.cancel_requested:
                record.status = JobStatus.CANCELED
                record.finished_at = utcnow()
            elif record.attempts >= self.settings.max_attempts:
                record.status, record.finished_at = JobStatus.FAILED, utcnow()
                message = f"the job's worker stopped during each of its {record.attempts} attempts"
                record.error = JobError(code="worker_lost", message=message)
            else:
                record.status = JobStatus.QUEUED
                record.rq_job_id = new_rq_job_id(job_id)
                record.progress.restart()

        try:
            record = self.store.update(job_id, change)
        except (_NotAbandonedError, JobNotFoundError, IllegalTransitionError):
            return None
        self.services.janitor.delete(attempt_prefix(job_id, lost_attempt))
        log.warning("job %s: attempt %d lost its worker -> %s", job_id, lost_attempt, record.status)
        if record.status == JobStatus.QUEUED:
            enqueue_job(self.services.queue, job_id, record.rq_job_id or "", self.settings)
        else:
            self._finished(record)
        return record.status

    def _finished(self, record: JobRecord) -> None:
        if record.input.bucket is None:
            self.services.janitor.delete(record.input.key)
        self.services.metrics.jobs.labels(status=record.status).inc()
        self.services.notifier.notify(record, "completed")

    def _reenqueue_if_lost(self, job_id: str) -> bool:
        """A queued job whose RQ entry vanished (an enqueue that never ran) is enqueued again."""
        record = self.store.get(job_id)
        if record is None or record.status != JobStatus.QUEUED:
            return False
        if (utcnow() - record.updated_at).total_seconds() < self.settings.requeue_grace_s:
            return False
        if is_enqueued(self.services.queue, record.rq_job_id):
            return False
        rq_job_id = new_rq_job_id(job_id)

        def change(current: JobRecord) -> None:
            if current.status != JobStatus.QUEUED or current.rq_job_id != record.rq_job_id:
                raise _NotAbandonedError
            current.rq_job_id = rq_job_id

        try:
            self.store.update(job_id, change)
        except (_NotAbandonedError, JobNotFoundError):
            return False
        enqueue_job(self.services.queue, job_id, rq_job_id, self.settings)
        log.warning("job %s was missing from the queue: enqueued again", job_id)
        return True
