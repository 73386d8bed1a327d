"""Typed views of the API's JSON (fields the server adds later are kept, not refused)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict

from vsr.client.errors import JobFailedError


class JobStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})


class SubmitParams(TypedDict, total=False):
    """Job parameters (see the API's JobParams); unset ones take the service's defaults."""

    model: str
    codec: Literal["h264", "h265"]
    crf: int
    preset: str
    container: Literal["mp4", "mkv"]
    webhook_url: str
    webhook_events: list[Literal["start", "progress", "completed"]]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class JobProgress(_Model):
    frames_done: int = 0
    frames_total: int | None = None
    fps: float | None = None  # this attempt's average frames/s (the whole run's once succeeded)
    eta_s: float | None = None  # seconds to finish at that rate; 0 once succeeded

    @property
    def fraction(self) -> float | None:
        """Done fraction in [0, 1], or None while the frame count is unknown."""
        if not self.frames_total:
            return None
        return min(1.0, self.frames_done / self.frames_total)


class JobErrorInfo(_Model):
    code: str
    message: str


class JobOutput(_Model):
    url: str | None  # presigned (S3) or the API's result route (local storage); None once deleted
    width: int
    height: int
    frames: int
    fps: float
    bytes: int


class JobUrls(_Model):
    get: str
    cancel: str
    result: str


class Job(_Model):
    """One job as `GET /v1/jobs/{id}` returns it."""

    id: str
    status: JobStatus
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    params: dict[str, Any] = {}
    progress: JobProgress = JobProgress()
    timings: dict[str, float] = {}
    macs: dict[str, int] = {}
    error: JobErrorInfo | None = None
    output: JobOutput | None = None
    cancel_requested: bool = False
    attempts: int = 0
    urls: JobUrls

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def raise_for_status(self) -> Job:
        """Return the job unless it failed or was canceled (then raise JobFailedError)."""
        if self.status in (JobStatus.FAILED, JobStatus.CANCELED):
            raise JobFailedError(self)
        return self


class JobPage(_Model):
    jobs: list[Job]
    next_cursor: str | None = None


class ServiceStatus(_Model):
    queue: str
    queue_depth: int
    workers: int
    models: list[str]
    default_model: str
    storage: str
    max_upload_bytes: int
