"""`VsrClient`: the job service's API from synchronous Python (httpx)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Unpack

import httpx

from vsr.client._base import (
    CHUNK_BYTES,
    Poller,
    ProgressCallback,
    RetryEvent,
    RetryPolicy,
    Source,
    UploadSource,
    api_error,
    base_headers,
    describe_failure,
    envelope,
    new_idempotency_key,
    output_path,
    resolve_connection,
    sent_nothing,
    submit_params,
)
from vsr.client.errors import ApiError, VsrConnectionError, VsrError, WaitTimeoutError
from vsr.client.models import Job, JobPage, JobStatus, ServiceStatus, SubmitParams

if TYPE_CHECKING:
    from vsr.webhooks import WebhookListener

BodyFactory = Callable[[], tuple[Iterator[bytes], Callable[[], None]]]
"""Makes a fresh (body iterator, cleanup) for each attempt of a streamed upload."""


class VsrClient:
    """Client of the FastVSR job service (`/v1`). Use as a context manager, or call `close()`.

    `api_url` / `api_key` default to VSR_API_URL / VSR_API_KEY. Every call retries 429 and 503
    (waiting `Retry-After`) and connection failures as `retry` allows; see RetryPolicy.
    """

    def __init__(
        self,
        api_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        on_retry: Callable[[RetryEvent], None] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api_url, self._key = resolve_connection(api_url, api_key)
        self.retry = retry or RetryPolicy()
        self.on_retry = on_retry
        self._http = httpx.Client(
            base_url=self.api_url,
            headers=base_headers(None),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
        )

    # -- plumbing -------------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> VsrClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _auth(self) -> dict[str, str]:
        return base_headers(self._key)

    def _send(
        self,
        method: str,
        url: str,
        *,
        idempotent: bool,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        body: BodyFactory | None = None,
        replayable: bool = True,
        stream: bool = False,
    ) -> httpx.Response:
        """One API call with retries; returns a 2xx/3xx response (streamed if `stream`), else raises.

        `body` makes a fresh (iterator, cleanup) per attempt for streamed uploads."""
        attempt = 0
        while True:
            attempt += 1
            response, failure = self._attempt(method, url, json, params, headers, body)
            if response is not None and response.status_code not in self.retry.retry_statuses:
                return _finish(response, stream)
            if response is not None:
                error = _read_error(response)
                delay = self.retry.delay(attempt, error.retry_after) if replayable else None
                if delay is None:
                    raise error
                reason = f"{error.status} {error.code}"
            else:
                assert failure is not None
                allowed = replayable and (idempotent or sent_nothing(failure))
                delay = self.retry.delay(attempt) if allowed else None
                reason = describe_failure(None, failure)
                if delay is None:
                    raise VsrConnectionError(f"{method} {self.api_url}{url}: {reason}") from failure
            if self.on_retry is not None:
                self.on_retry(RetryEvent(method, url, attempt, delay, reason))
            time.sleep(delay)

    def _attempt(
        self,
        method: str,
        url: str,
        json: Any,
        params: dict[str, Any] | None,
        headers: dict[str, str] | None,
        body: BodyFactory | None,
    ) -> tuple[httpx.Response | None, httpx.TransportError | None]:
        cleanup: Callable[[], None] | None = None
        try:
            content = None
            if body is not None:
                content, cleanup = body()
            request = self._http.build_request(
                method, url, json=json, params=params, headers={**self._auth(), **(headers or {})},
                content=content,
            )  # fmt: skip
            return self._http.send(request, stream=True), None
        except httpx.TransportError as exc:
            return None, exc
        finally:
            if cleanup is not None:
                cleanup()

    # -- operations -----------------------------------------------------------------------------

    def status(self) -> ServiceStatus:
        """Queue depth, live workers, models, storage backend and upload limit."""
        return ServiceStatus.model_validate_json(self._send("GET", "/v1/status", idempotent=True).content)

    def submit(
        self,
        source: Source,
        *,
        idempotency_key: str | None = None,
        progress: ProgressCallback | None = None,
        **params: Unpack[SubmitParams],
    ) -> Job:
        """Upload a video (path or binary file object), streamed from disk, and queue a job.

        An Idempotency-Key is generated when not given, so retried submissions never make two jobs.
        `progress(sent, total)` follows the file's bytes as they are handed to the connection.
        """
        upload = UploadSource.of(source)
        wrapper = envelope(submit_params(params), upload.filename, upload.size)
        key = idempotency_key or new_idempotency_key()

        def body() -> tuple[Iterator[bytes], Callable[[], None]]:
            handle, owned = upload.open()
            return _iter_body(wrapper.head, wrapper.tail, handle, upload.size, progress), (
                handle.close if owned else _nothing
            )

        response = self._send(
            "POST", "/v1/jobs", idempotent=True, headers={"Idempotency-Key": key, **wrapper.headers()},
            body=body, replayable=upload.replayable,
        )  # fmt: skip
        return Job.model_validate_json(response.content)

    def submit_reference(
        self, uri: str, *, idempotency_key: str | None = None, **params: Unpack[SubmitParams]
    ) -> Job:
        """Queue a job whose input is an object in an allow-listed bucket (`s3://bucket/key`)."""
        headers = {"Idempotency-Key": idempotency_key or new_idempotency_key()}
        body = {"input": uri, **submit_params(params)}
        response = self._send("POST", "/v1/jobs", idempotent=True, json=body, headers=headers)
        return Job.model_validate_json(response.content)

    def get(self, job_id: str) -> Job:
        return Job.model_validate_json(self._send("GET", job_path(job_id), idempotent=True).content)

    def list_page(
        self, *, status: JobStatus | str | None = None, limit: int = 20, cursor: str | None = None
    ) -> JobPage:
        """One page of the tenant's jobs, newest first."""
        query: dict[str, Any] = {"limit": limit}
        if status is not None:
            query["status"] = str(status)
        if cursor is not None:
            query["cursor"] = cursor
        response = self._send("GET", "/v1/jobs", idempotent=True, params=query)
        return JobPage.model_validate_json(response.content)

    def list(
        self, *, status: JobStatus | str | None = None, limit: int | None = None, page_size: int = 50
    ) -> Iterator[Job]:
        """The tenant's jobs, newest first, page after page (at most `limit` when given)."""
        cursor: str | None = None
        seen = 0
        while True:
            size = page_size if limit is None else min(page_size, limit - seen)
            if size <= 0:
                return
            page = self.list_page(status=status, limit=size, cursor=cursor)
            for job in page.jobs:
                seen += 1
                yield job
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def cancel(self, job_id: str) -> Job:
        """Cancel: a queued job at once; a running one stops at its next chunk (status still processing)."""
        response = self._send("POST", f"{job_path(job_id)}/cancel", idempotent=True)
        return Job.model_validate_json(response.content)

    def delete_files(self, job_id: str) -> None:
        """Delete a finished job's stored input and output (the record stays)."""
        self._send("DELETE", job_path(job_id), idempotent=True)

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        interval_s: float = 0.5,
        max_interval_s: float = 5.0,
        on_update: Callable[[Job], None] | None = None,
    ) -> Job:
        """Poll until the job is succeeded, failed or canceled; return it (check `.status`, or call
        `.raise_for_status()`). Polls back off while nothing changes. WaitTimeoutError after `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        poller = Poller(interval_s, max_interval_s)
        job: Job | None = None
        while True:
            job = self.get(job_id)
            if on_update is not None:
                on_update(job)
            if job.terminal:
                return job
            delay = poller.next_delay(job.status, job.progress.frames_done)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeoutError(job_id, timeout or 0, job)
                delay = min(delay, left)
            time.sleep(delay)

    def wait_for_webhook(
        self,
        job_id: str,
        listener: WebhookListener,
        *,
        timeout: float | None = None,
        fallback_poll_s: float | None = 60.0,
    ) -> Job:
        """Wait for the job's verified `job.completed` webhook on `listener` (submit with
        `webhook_url=listener.url`), then return the job as read now (fresh result URL).

        `fallback_poll_s` also reads the job that often, in case a webhook cannot reach the listener."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last_poll = time.monotonic()
        while True:
            slice_s = 0.5 if deadline is None else min(0.5, max(0.0, deadline - time.monotonic()))
            if listener.wait_for_job(job_id, timeout=slice_s) is not None:
                return self.get(job_id)
            if fallback_poll_s is not None and time.monotonic() - last_poll >= fallback_poll_s:
                last_poll = time.monotonic()
                job = self.get(job_id)
                if job.terminal:
                    return job
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeoutError(job_id, timeout or 0, None)

    def download(
        self, job_id: str, dest: str | os.PathLike[str], *, progress: ProgressCallback | None = None
    ) -> Path:
        """Stream a succeeded job's output to `dest` (a file, or a directory for `<id>_x4.<container>`).

        Follows the 307 to the presigned URL (sent without the API key) or reads the API's stream.
        The file appears only when complete (written to `<dest>.part`, then renamed)."""
        target: Path | None = None
        attempt = 0
        while True:
            attempt += 1
            response = self._send("GET", f"{job_path(job_id)}/result", idempotent=True, stream=True)
            try:
                if response.is_redirect:
                    location = response.headers["location"]
                    response.close()
                    response = self._fetch_presigned(location)
                if target is None:
                    target = output_path(dest, job_id, response)
                _save(response, target, progress)
                return target
            except httpx.TransportError as exc:
                delay = self.retry.delay(attempt)
                if delay is None:
                    message = f"download of job {job_id}: {describe_failure(None, exc)}"
                    raise VsrConnectionError(message) from exc
                time.sleep(delay)
            finally:
                response.close()

    def _fetch_presigned(self, url: str) -> httpx.Response:
        """GET a presigned storage URL: no API key, no redirects; storage errors become ApiError."""
        response = self._http.send(httpx.Request("GET", url, headers=base_headers(None)), stream=True)
        if response.is_error:
            response.read()
            response.close()
            raise api_error(response)
        return response


def _nothing() -> None:
    return None


def _finish(response: httpx.Response, stream: bool) -> httpx.Response:
    """A non-retried answer: raise for errors; read the body unless streaming was asked for."""
    if response.is_error:
        raise _read_error(response)
    if not stream:
        response.read()
        response.close()
    return response


def _read_error(response: httpx.Response) -> ApiError:
    try:
        response.read()
    except httpx.TransportError:
        pass  # the status is enough
    finally:
        response.close()
    return api_error(response)


def job_path(job_id: str) -> str:
    """`/v1/jobs/<id>`, refusing ids that would change the path."""
    if not job_id or "/" in job_id or job_id in (".", ".."):
        raise VsrError(f"invalid job id {job_id!r}")
    return f"/v1/jobs/{job_id}"


def _iter_body(
    head: bytes, tail: bytes, handle: IO[bytes], size: int | None, progress: ProgressCallback | None
) -> Iterator[bytes]:
    """The multipart body: `head`, the file in chunks (`size` bytes when known), `tail`."""
    yield head
    sent = 0
    if progress is not None:
        progress(0, size)
    while (want := CHUNK_BYTES if size is None else min(CHUNK_BYTES, size - sent)) > 0:
        chunk = handle.read(want)
        if not chunk:
            break
        sent += len(chunk)
        yield chunk
        if progress is not None:
            progress(sent, size)
    if size is not None and sent != size:
        raise VsrError(f"the file shrank while it was being uploaded ({sent} of {size} bytes)")
    yield tail


def _save(response: httpx.Response, target: Path, progress: ProgressCallback | None) -> None:
    total = int(response.headers["content-length"]) if "content-length" in response.headers else None
    part = target.with_name(target.name + ".part")
    done = 0
    try:
        with part.open("wb") as out:
            if progress is not None:
                progress(0, total)
            for chunk in response.iter_bytes(CHUNK_BYTES):
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
        if total is not None and done != total:
            raise httpx.ReadError(f"connection closed after {done} of {total} bytes")
        part.replace(target)
    finally:
        part.unlink(missing_ok=True)
