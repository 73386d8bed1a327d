"""`AsyncVsrClient`: the job service's API from asyncio or trio (httpx + anyio); mirrors `VsrClient`."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Unpack

import anyio
import anyio.to_thread
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
from vsr.client.sync import job_path

if TYPE_CHECKING:
    from vsr.webhooks import WebhookListener

AsyncBodyFactory = Callable[[], tuple[AsyncIterator[bytes], Callable[[], None]]]


class AsyncVsrClient:
    """Async client of the FastVSR job service (`/v1`): `async with AsyncVsrClient(...) as client:`.

    Same operations, arguments, retries and errors as `VsrClient`; file I/O runs in worker threads.
    """

    def __init__(
        self,
        api_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        on_retry: Callable[[RetryEvent], None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.api_url, self._key = resolve_connection(api_url, api_key)
        self.retry = retry or RetryPolicy()
        self.on_retry = on_retry
        self._http = httpx.AsyncClient(
            base_url=self.api_url,
            headers=base_headers(None),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncVsrClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _send(
        self,
        method: str,
        url: str,
        *,
        idempotent: bool,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        body: AsyncBodyFactory | None = None,
        replayable: bool = True,
        stream: bool = False,
    ) -> httpx.Response:
        """One API call with retries (see `VsrClient._send`)."""
        attempt = 0
        while True:
            attempt += 1
            response, failure = await self._attempt(method, url, json, params, headers, body)
            if response is not None and response.status_code not in self.retry.retry_statuses:
                return await _finish(response, stream)
            if response is not None:
                error = await _read_error(response)
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
            await anyio.sleep(delay)

    async def _attempt(
        self,
        method: str,
        url: str,
        json: Any,
        params: dict[str, Any] | None,
        headers: dict[str, str] | None,
        body: AsyncBodyFactory | None,
    ) -> tuple[httpx.Response | None, httpx.TransportError | None]:
        cleanup: Callable[[], None] | None = None
        try:
            content = None
            if body is not None:
                content, cleanup = body()
            request = self._http.build_request(
                method, url, json=json, params=params, headers={**base_headers(self._key), **(headers or {})},
                content=content,
            )  # fmt: skip
            return await self._http.send(request, stream=True), None
        except httpx.TransportError as exc:
            return None, exc
        finally:
            if cleanup is not None:
                cleanup()

    async def status(self) -> ServiceStatus:
        response = await self._send("GET", "/v1/status", idempotent=True)
        return ServiceStatus.model_validate_json(response.content)

    async def submit(
        self,
        source: Source,
        *,
        idempotency_key: str | None = None,
        progress: ProgressCallback | None = None,
        **params: Unpack[SubmitParams],
    ) -> Job:
        """Upload a video (streamed; file reads in a worker thread) and queue a job (see `VsrClient`)."""
        upload = await anyio.to_thread.run_sync(UploadSource.of, source)
        wrapper = envelope(submit_params(params), upload.filename, upload.size)
        key = idempotency_key or new_idempotency_key()

        def body() -> tuple[AsyncIterator[bytes], Callable[[], None]]:
            handle, owned = upload.open()
            iterator = _aiter_body(wrapper.head, wrapper.tail, handle, upload.size, progress)
            return iterator, (handle.close if owned else _nothing)

        response = await self._send(
            "POST", "/v1/jobs", idempotent=True, headers={"Idempotency-Key": key, **wrapper.headers()},
            body=body, replayable=upload.replayable,
        )  # fmt: skip
        return Job.model_validate_json(response.content)

    async def submit_reference(
        self, uri: str, *, idempotency_key: str | None = None, **params: Unpack[SubmitParams]
    ) -> Job:
        headers = {"Idempotency-Key": idempotency_key or new_idempotency_key()}
        body = {"input": uri, **submit_params(params)}
        response = await self._send("POST", "/v1/jobs", idempotent=True, json=body, headers=headers)
        return Job.model_validate_json(response.content)

    async def get(self, job_id: str) -> Job:
        return Job.model_validate_json((await self._send("GET", job_path(job_id), idempotent=True)).content)

    async def list_page(
        self, *, status: JobStatus | str | None = None, limit: int = 20, cursor: str | None = None
    ) -> JobPage:
        query: dict[str, Any] = {"limit": limit}
        if status is not None:
            query["status"] = str(status)
        if cursor is not None:
            query["cursor"] = cursor
        response = await self._send("GET", "/v1/jobs", idempotent=True, params=query)
        return JobPage.model_validate_json(response.content)

    async def list(
        self, *, status: JobStatus | str | None = None, limit: int | None = None, page_size: int = 50
    ) -> AsyncIterator[Job]:
        """`async for job in client.list(...)`: every page, newest first (at most `limit`)."""
        cursor: str | None = None
        seen = 0
        while True:
            size = page_size if limit is None else min(page_size, limit - seen)
            if size <= 0:
                return
            page = await self.list_page(status=status, limit=size, cursor=cursor)
            for job in page.jobs:
                seen += 1
                yield job
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def cancel(self, job_id: str) -> Job:
        response = await self._send("POST", f"{job_path(job_id)}/cancel", idempotent=True)
        return Job.model_validate_json(response.content)

    async def delete_files(self, job_id: str) -> None:
        await self._send("DELETE", job_path(job_id), idempotent=True)

    async def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        interval_s: float = 0.5,
        max_interval_s: float = 5.0,
        on_update: Callable[[Job], None] | None = None,
    ) -> Job:
        """Poll until the job is terminal (see `VsrClient.wait`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        poller = Poller(interval_s, max_interval_s)
        while True:
            job = await self.get(job_id)
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
            await anyio.sleep(delay)

    async def wait_for_webhook(
        self,
        job_id: str,
        listener: WebhookListener,
        *,
        timeout: float | None = None,
        fallback_poll_s: float | None = 60.0,
    ) -> Job:
        """Wait for the job's verified `job.completed` webhook on `listener` (see `VsrClient`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last_poll = time.monotonic()
        while True:
            slice_s = 0.5 if deadline is None else min(0.5, max(0.0, deadline - time.monotonic()))
            wait = functools.partial(listener.wait_for_job, job_id, timeout=slice_s)
            event = await anyio.to_thread.run_sync(wait)
            if event is not None:
                return await self.get(job_id)
            if fallback_poll_s is not None and time.monotonic() - last_poll >= fallback_poll_s:
                last_poll = time.monotonic()
                job = await self.get(job_id)
                if job.terminal:
                    return job
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeoutError(job_id, timeout or 0, None)

    async def download(
        self, job_id: str, dest: str | os.PathLike[str], *, progress: ProgressCallback | None = None
    ) -> Path:
        """Stream a succeeded job's output to `dest` (see `VsrClient.download`)."""
        target: Path | None = None
        attempt = 0
        while True:
            attempt += 1
            response = await self._send("GET", f"{job_path(job_id)}/result", idempotent=True, stream=True)
            try:
                if response.is_redirect:
                    location = response.headers["location"]
                    await response.aclose()
                    response = await self._fetch_presigned(location)
                if target is None:
                    target = output_path(dest, job_id, response)
                await _save(response, target, progress)
                return target
            except httpx.TransportError as exc:
                delay = self.retry.delay(attempt)
                if delay is None:
                    raise VsrConnectionError(
                        f"download of job {job_id}: {describe_failure(None, exc)}"
                    ) from exc
                await anyio.sleep(delay)
            finally:
                await response.aclose()

    async def _fetch_presigned(self, url: str) -> httpx.Response:
        request = httpx.Request("GET", url, headers=base_headers(None))
        response = await self._http.send(request, stream=True)
        if response.is_error:
            raise await _read_error(response)
        return response


def _nothing() -> None:
    return None


async def _finish(response: httpx.Response, stream: bool) -> httpx.Response:
    if response.is_error:
        raise await _read_error(response)
    if not stream:
        await response.aread()
        await response.aclose()
    return response


async def _read_error(response: httpx.Response) -> ApiError:
    try:
        await response.aread()
    except httpx.TransportError:
        pass  # the status is enough
    finally:
        await response.aclose()
    return api_error(response)


async def _aiter_body(
    head: bytes, tail: bytes, handle: IO[bytes], size: int | None, progress: ProgressCallback | None
) -> AsyncIterator[bytes]:
    yield head
    sent = 0
    if progress is not None:
        progress(0, size)
    while (want := CHUNK_BYTES if size is None else min(CHUNK_BYTES, size - sent)) > 0:
        chunk = await anyio.to_thread.run_sync(handle.read, want)
        if not chunk:
            break
        sent += len(chunk)
        yield chunk
        if progress is not None:
            progress(sent, size)
    if size is not None and sent != size:
        raise VsrError(f"the file shrank while it was being uploaded ({sent} of {size} bytes)")
    yield tail


async def _save(response: httpx.Response, target: Path, progress: ProgressCallback | None) -> None:
    total = int(response.headers["content-length"]) if "content-length" in response.headers else None
    part = target.with_name(target.name + ".part")
    done = 0
    try:
        out = await anyio.to_thread.run_sync(part.open, "wb")
        try:
            if progress is not None:
                progress(0, total)
            async for chunk in response.aiter_bytes(CHUNK_BYTES):
                await anyio.to_thread.run_sync(out.write, chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
        finally:
            await anyio.to_thread.run_sync(out.close)
        if total is not None and done != total:
            raise httpx.ReadError(f"connection closed after {done} of {total} bytes")
        await anyio.to_thread.run_sync(part.replace, target)
    finally:
        await anyio.to_thread.run_sync(functools.partial(part.unlink, missing_ok=True))
