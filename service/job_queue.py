"""The RQ queue: JSON serializer (never pickle), an explicit job timeout, and its depth and workers."""

from __future__ import annotations

import redis
from rq import Queue, Worker
from rq.serializers import JSONSerializer

from service.settings import Settings

JOB_FUNCTION = "worker.job_runner.process_job"  # by name: the API never imports the worker (torch)


def make_queue(client: redis.Redis, settings: Settings) -> Queue:
    return Queue(settings.queue_name, connection=client, serializer=JSONSerializer)


def enqueue_job(queue: Queue, job_id: str, settings: Settings) -> None:
    """Queue `job_id` for a worker; the RQ job shares the job's id."""
    queue.enqueue(
        JOB_FUNCTION,
        job_id,
        job_id=job_id,
        job_timeout=settings.job_timeout_s,
        result_ttl=3600,
        failure_ttl=7 * 86400,
        description=f"upscale {job_id}",
    )


def cancel_queued(queue: Queue, job_id: str) -> None:
    """Take a job that no worker has started off the queue (no-op if it is gone already)."""
    queue.remove(job_id)


def queue_depth(queue: Queue) -> int:
    return int(queue.count)


def live_workers(queue: Queue) -> int:
    return int(Worker.count(queue=queue))
