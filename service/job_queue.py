"""The RQ queue: JSON serializer (never pickle), an explicit job timeout, and its depth and workers.

RQ only carries work; the job record is the truth. Each (re)queue of a job gets a fresh RQ job id,
kept in the record (`rq_job_id`), so a stale RQ entry from an earlier attempt can never be confused
with the current one.
"""

from __future__ import annotations

import uuid

import redis
from rq import Queue, Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from service.settings import Settings

JOB_FUNCTION = "worker.job_runner.process_job"  # by name: the API never imports the worker (torch)
WAITING = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED, JobStatus.STARTED}


def make_queue(client: redis.Redis, settings: Settings) -> Queue:
    return Queue(settings.queue_name, connection=client, serializer=JSONSerializer)


def new_rq_job_id(job_id: str) -> str:
    return f"{job_id}-{uuid.uuid4().hex[:8]}"


def enqueue_job(queue: Queue, job_id: str, rq_job_id: str, settings: Settings) -> None:
    """Queue `job_id` for a worker under the RQ job id recorded for this attempt."""
    queue.enqueue(
        JOB_FUNCTION,
        job_id,
        job_id=rq_job_id,
        job_timeout=settings.job_timeout_s,
        result_ttl=3600,
        failure_ttl=7 * 86400,
        description=f"upscale {job_id}",
    )


def is_enqueued(queue: Queue, rq_job_id: str | None) -> bool:
    """True if RQ still holds this job waiting or running (False: lost, e.g. an enqueue that never ran)."""
    if rq_job_id is None:
        return False
    try:
        return (
            Job.fetch(rq_job_id, connection=queue.connection, serializer=JSONSerializer).get_status()
            in WAITING
        )
    except NoSuchJobError:
        return False


def cancel_queued(queue: Queue, rq_job_id: str | None) -> None:
    """Take a job that no worker has started off the queue (no-op if it is gone already)."""
    if rq_job_id is not None:
        queue.remove(rq_job_id)


def queue_depth(queue: Queue) -> int:
    return int(queue.count)


def live_workers(queue: Queue) -> int:
    return int(Worker.count(queue=queue))
