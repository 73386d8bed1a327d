"""The public shape of a job, shared by API responses and webhook payloads."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from service.jobs import JobError, JobParams, JobRecord, JobStatus, Progress
from service.storage import Storage


class JobUrls(BaseModel):
    get: str
    cancel: str
    result: str


class OutputView(BaseModel):
    url: str | None  # presigned (S3) or the API's result route (local storage); None once deleted
    width: int
    height: int
    frames: int
    fps: float
    bytes: int


class JobView(BaseModel):
    id: str
    status: JobStatus
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    params: JobParams
    progress: Progress
    timings: dict[str, float]
    macs: dict[str, int]
    error: JobError | None
    output: OutputView | None
    cancel_requested: bool
    attempts: int  # worker claims so far (a retry after a lost worker makes it 2, ...)
    urls: JobUrls


def job_urls(base_url: str, job_id: str) -> JobUrls:
    root = f"{base_url.rstrip('/')}/v1/jobs/{job_id}"
    return JobUrls(get=root, cancel=f"{root}/cancel", result=f"{root}/result")


def output_filename(record: JobRecord) -> str:
    return f"{record.id}_x{record.params.scale}.{record.params.container}"


def job_view(record: JobRecord, base_url: str, storage: Storage | None) -> JobView:
    """The record as clients see it. `storage` mints a presigned output URL; without it (webhook
    payloads, which outlive a presigned URL's expiry) the output URL is the API's result route."""
    urls = job_urls(base_url, record.id)
    output = None
    if record.output is not None:
        url = None
        if not record.files_deleted:
            presigned = storage.presigned_url(record.output.key, output_filename(record)) if storage else None
            url = presigned or urls.result
        output = OutputView(url=url, **record.output.model_dump(exclude={"key"}))
    return JobView(
        id=record.id,
        status=record.status,
        created_at=record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        params=record.params,
        progress=record.progress,
        timings=record.timings,
        macs=record.macs,
        error=record.error,
        output=output,
        cancel_requested=record.cancel_requested,
        attempts=record.attempts,
        urls=urls,
    )
