"""Client exceptions: `ApiError(status, code, message)` and one subclass per HTTP status family."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vsr.client.models import Job


class VsrError(Exception):
    """Base of every error the client raises."""


class ApiError(VsrError):
    """The service answered with an error: `{"error": {"code", "message"}}` and an HTTP status."""

    def __init__(
        self, status: int, code: str, message: str, *, retry_after: float | None = None, request_id: str = ""
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.retry_after = retry_after  # seconds, from the Retry-After header (429/503)
        self.request_id = request_id  # "METHOD url" of the failing request


class BadRequestError(ApiError):
    """400: malformed JSON or multipart body."""


class AuthenticationError(ApiError):
    """401: missing or wrong API key."""


class PermissionDeniedError(ApiError):
    """403: e.g. an s3:// input outside the allow-listed buckets."""


class NotFoundError(ApiError):
    """404: no such job (also another tenant's job)."""


class ConflictError(ApiError):
    """409: the job is in the wrong state (finished, still active, no result)."""


class GoneError(ApiError):
    """410: the job's files were deleted."""


class PayloadTooLargeError(ApiError):
    """413: the upload exceeds the service's limit."""


class UnsupportedMediaError(ApiError):
    """415: not a video, or an unsupported request content type."""


class InvalidRequestError(ApiError):
    """422: invalid parameters, unknown model, refused webhook URL, empty file, bad reference, ..."""


class RateLimitedError(ApiError):
    """429: the tenant has too many jobs queued or in flight (see `retry_after`)."""


class ServerError(ApiError):
    """5xx."""


class ServiceUnavailableError(ServerError):
    """503: Redis or storage is down (see `retry_after`)."""


STATUS_ERRORS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    410: GoneError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaError,
    422: InvalidRequestError,
    429: RateLimitedError,
    503: ServiceUnavailableError,
}


def error_class(status: int) -> type[ApiError]:
    return STATUS_ERRORS.get(status, ServerError if status >= 500 else ApiError)


class VsrConnectionError(VsrError):
    """The service could not be reached (or the connection broke) after every allowed attempt."""


class WaitTimeoutError(VsrError, TimeoutError):
    """`wait` gave up before the job finished; `job` is the last state seen (None if never read)."""

    def __init__(self, job_id: str, timeout: float, job: Job | None = None) -> None:
        status = job.status if job is not None else "unknown"
        super().__init__(f"job {job_id} still {status} after {timeout:g} s")
        self.job_id, self.timeout, self.job = job_id, timeout, job


class JobFailedError(VsrError):
    """Raised by `Job.raise_for_status()` for a failed or canceled job."""

    def __init__(self, job: Job) -> None:
        code = job.error.code if job.error else f"job_{job.status}"
        message = job.error.message if job.error else f"job {job.id} was {job.status}"
        super().__init__(f"{code}: {message}")
        self.job, self.code, self.message = job, code, message
