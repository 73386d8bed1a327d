"""What the sync and async clients share: configuration, retry policy, the streamed multipart envelope,
error decoding and the polling schedule. No I/O happens here."""

from __future__ import annotations

import email.utils
import json
import os
import random
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from vsr.client.errors import ApiError, error_class
from vsr.client.models import SubmitParams

DEFAULT_API_URL = "http://127.0.0.1:8000"
CHUNK_BYTES = 256 * 1024
USER_AGENT = "vsr-client/0.1"

ProgressCallback = Callable[[int, int | None], None]
"""`progress(bytes_done, bytes_total)`; total is None when unknown. Restarts from 0 on a retried upload."""

Source = str | os.PathLike[str] | IO[bytes]
"""What `submit` uploads: a path, or a binary file object (seekable ones can be retried)."""


@dataclass(frozen=True)
class RetryEvent:
    """Passed to `on_retry` before the client sleeps and tries again."""

    method: str
    url: str
    attempt: int  # the attempt that just failed, from 1
    delay_s: float
    reason: str  # "429 too_many_jobs", "ConnectError: ...", ...


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff (jittered), honouring `Retry-After`.

    429 and 503 answers are retried for every call (the service did nothing); connection failures
    before anything was sent likewise; other broken connections only for idempotent calls (reads,
    cancel, and submissions, which always carry an Idempotency-Key). A `Retry-After` is waited out
    exactly; one longer than `max_retry_after_s` ends the retries at once.
    """

    max_attempts: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 10.0
    max_retry_after_s: float = 120.0
    retry_statuses: frozenset[int] = frozenset({429, 503})

    def backoff(self, attempt: int) -> float:
        """Seconds before attempt `attempt + 1`: half the exponential step plus up to half again."""
        step = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        return step / 2 + random.uniform(0, step / 2)

    def delay(self, attempt: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait after failed attempt `attempt` (from 1), or None to stop retrying."""
        if attempt >= self.max_attempts:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after_s else None
        return self.backoff(attempt)


NO_RETRY = RetryPolicy(max_attempts=1)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def api_error(response: httpx.Response) -> ApiError:
    """The typed error for an error response (its body must have been read)."""
    code, message = f"http_{response.status_code}", response.reason_phrase or "error"
    try:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            code = str(error.get("code") or code)
            message = str(error.get("message") or message)
    except ValueError:
        text = response.text.strip()
        if text:
            message = text[:300]
    request = response.request
    return error_class(response.status_code)(
        response.status_code,
        code,
        message,
        retry_after=parse_retry_after(response.headers.get("retry-after")),
        request_id=f"{request.method} {request.url}",
    )


def describe_failure(response: httpx.Response | None, exc: BaseException | None) -> str:
    if response is not None:
        return f"{response.status_code} {response.reason_phrase}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def sent_nothing(exc: httpx.TransportError) -> bool:
    """True when the request cannot have reached the service (safe to retry anything)."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def resolve_connection(api_url: str | None, api_key: str | None) -> tuple[str, str | None]:
    """Explicit values, else VSR_API_URL / VSR_API_KEY, else the local default URL and no key."""
    url = (api_url or os.environ.get("VSR_API_URL") or DEFAULT_API_URL).rstrip("/")
    key = api_key if api_key is not None else os.environ.get("VSR_API_KEY")
    return url, key or None


def base_headers(api_key: str | None) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def new_idempotency_key() -> str:
    return f"vsr-{secrets.token_hex(16)}"


def submit_params(params: SubmitParams | Mapping[str, Any]) -> dict[str, Any]:
    """The JSON params, with unset (None) values left to the service's defaults."""
    return {name: value for name, value in params.items() if value is not None}


def _quote(name: str) -> str:
    """A form-data filename as browsers send it (quotes and line breaks percent-encoded)."""
    return name.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


@dataclass(frozen=True)
class Envelope:
    """A multipart/form-data body around one file: `head` + the file's bytes + `tail`."""

    boundary: str
    head: bytes
    tail: bytes
    file_bytes: int | None

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def content_length(self) -> int | None:
        return None if self.file_bytes is None else len(self.head) + self.file_bytes + len(self.tail)

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": self.content_type}
        if self.content_length is not None:
            headers["Content-Length"] = str(self.content_length)
        return headers


def envelope(params: Mapping[str, Any], filename: str, file_bytes: int | None) -> Envelope:
    boundary = f"vsr-{secrets.token_hex(16)}"
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="params"\r\n'
        "Content-Type: application/json\r\n\r\n"
        f"{json.dumps(dict(params))}\r\n"
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{_quote(filename)}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return Envelope(boundary, head, f"\r\n--{boundary}--\r\n".encode(), file_bytes)


@dataclass
class UploadSource:
    """A file to upload, reopened (path) or rewound (seekable file object) for each attempt."""

    path: Path | None
    handle: IO[bytes] | None
    filename: str
    size: int | None
    start: int = 0

    @classmethod
    def of(cls, source: Source) -> UploadSource:
        if isinstance(source, str | os.PathLike):
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(f"no such file: {path}")
            return cls(path, None, path.name, path.stat().st_size)
        named = getattr(source, "name", None)  # a path for open() files; an int for pipes
        name = (Path(named).name if isinstance(named, str) else "") or "upload"
        try:
            start = source.tell()
            size = source.seek(0, os.SEEK_END) - start
            source.seek(start)
        except (OSError, AttributeError, ValueError):
            return cls(None, source, name, None)
        return cls(None, source, name, size, start)

    @property
    def replayable(self) -> bool:
        return self.path is not None or self.size is not None

    def open(self) -> tuple[IO[bytes], bool]:
        """(handle positioned at the start, whether the caller must close it)."""
        if self.path is not None:
            return self.path.open("rb"), True
        assert self.handle is not None
        if self.size is not None:
            self.handle.seek(self.start)
        return self.handle, False


class Poller:
    """The polling schedule of `wait`: starts at `interval_s`, grows x1.5 up to `max_interval_s`,
    and drops back to `interval_s` whenever the job moved (status or progress changed)."""

    def __init__(self, interval_s: float, max_interval_s: float) -> None:
        self.first, self.max = interval_s, max(interval_s, max_interval_s)
        self.current = interval_s
        self._last: tuple[str, int] | None = None

    def next_delay(self, status: str, frames_done: int) -> float:
        state = (status, frames_done)
        self.current = self.first if state != self._last else min(self.max, self.current * 1.5)
        self._last = state
        return self.current


def output_path(dest: str | os.PathLike[str], job_id: str, response: httpx.Response) -> Path:
    """`dest` itself, or inside the directory `dest` the name the service gives the file
    (Content-Disposition), else `<job>_x4.<mp4|mkv>` from the content type."""
    path = Path(dest)
    if not path.is_dir():
        return path
    match = re.search(r'filename="?([^";]+)"?', response.headers.get("content-disposition", ""))
    name = Path(match[1]).name if match else ""
    if not name or name in (".", ".."):
        container = "mkv" if "matroska" in response.headers.get("content-type", "") else "mp4"
        name = f"{job_id}_x4.{container}"
    return path / name
