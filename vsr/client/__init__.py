"""Python SDK of the FastVSR job service: `VsrClient` (sync) and `AsyncVsrClient` (async), on httpx.

```python
from vsr.client import VsrClient

with VsrClient("http://127.0.0.1:8000", "vsr_...") as client:
    job = client.submit("clip.mp4", codec="h265", progress=lambda done, total: print(done, total))
    job = client.wait(job.id, timeout=600).raise_for_status()
    client.download(job.id, "clip_x4.mp4")
```
"""

from vsr.client._base import DEFAULT_API_URL, NO_RETRY, ProgressCallback, RetryEvent, RetryPolicy, Source
from vsr.client.aio import AsyncVsrClient
from vsr.client.errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    GoneError,
    InvalidRequestError,
    JobFailedError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    ServiceUnavailableError,
    UnsupportedMediaError,
    VsrConnectionError,
    VsrError,
    WaitTimeoutError,
)
from vsr.client.models import (
    TERMINAL,
    Job,
    JobErrorInfo,
    JobOutput,
    JobPage,
    JobProgress,
    JobStatus,
    ServiceStatus,
    SubmitParams,
)
from vsr.client.sync import VsrClient

__all__ = [
    "DEFAULT_API_URL",
    "NO_RETRY",
    "TERMINAL",
    "ApiError",
    "AsyncVsrClient",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "GoneError",
    "InvalidRequestError",
    "Job",
    "JobErrorInfo",
    "JobFailedError",
    "JobOutput",
    "JobPage",
    "JobProgress",
    "JobStatus",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "ProgressCallback",
    "RateLimitedError",
    "RetryEvent",
    "RetryPolicy",
    "ServerError",
    "ServiceStatus",
    "ServiceUnavailableError",
    "Source",
    "SubmitParams",
    "UnsupportedMediaError",
    "VsrClient",
    "VsrConnectionError",
    "VsrError",
    "WaitTimeoutError",
]
