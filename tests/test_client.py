"""The Python SDK (sync and async) and the `vsr` client commands against running services: the whole
service in this process (API + embedded worker), an API on a real Redis with no worker (jobs stay
queued: limits, cancel), a Redis that goes down and comes back (503), and S3 storage (Ceph RGW)."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from service.settings import Settings, load_settings
from tests.media import make_test_clip
from tests.support.embedded import drain, isolated
from tests.support.ports import free_port
from tests.support.processes import REPO
from tests.support.redis_server import RedisServer
from tests.support.s3_server import S3Server
from tests.support.service import ApiTenant, files_under, make_tenant
from tests.support.stack import BUCKET, INPUT_BUCKET, ServiceStack
from vsr.client import (
    NO_RETRY,
    ApiError,
    AsyncVsrClient,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    GoneError,
    InvalidRequestError,
    Job,
    JobFailedError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitedError,
    RetryEvent,
    RetryPolicy,
    ServerError,
    ServiceUnavailableError,
    UnsupportedMediaError,
    VsrClient,
    VsrConnectionError,
    WaitTimeoutError,
)
from vsr.client._base import CHUNK_BYTES
from vsr.serve import ServiceThreads
from vsr.webhooks import WebhookListener

MAX_UPLOAD = 1_500_000  # the multipart envelope may add 128 KiB before the API refuses on Content-Length


@pytest.fixture(scope="module")
def acme() -> ApiTenant:
    return make_tenant("acme")


@pytest.fixture(scope="module")
def globex() -> ApiTenant:
    return make_tenant("globex")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_test_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=4, width=32, height=24)


def settings(data_dir: Path, tenants: list[ApiTenant], **overrides: object) -> Settings:
    values: dict[str, object] = {
        **isolated("client"),
        "data_dir": data_dir,
        "tenants": [t.config for t in tenants],
        "max_upload_bytes": MAX_UPLOAD,
        "webhook_allow_private": True,
        "webhook_retry_schedule_s": [0, 0.2],
        "progress_interval_s": 0,
    }
    return load_settings(**(values | overrides))


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, acme: ApiTenant, globex: ApiTenant
) -> Iterator[ServiceThreads]:
    """API + one worker on the in-process Redis substitute, local storage."""
    running = ServiceThreads(settings(tmp_path_factory.mktemp("data"), [acme, globex]), port=free_port())
    yield running.start()
    drain(running.url, [acme.key, globex.key])
    running.stop()


@pytest.fixture
def client(service: ServiceThreads, acme: ApiTenant) -> Iterator[VsrClient]:
    with VsrClient(service.url, acme.key) as opened:
        yield opened


@pytest.fixture
def api_only(redis_url: str, tmp_path: Path, acme: ApiTenant) -> Iterator[ServiceThreads]:
    """An API on a real Redis with no worker: jobs stay queued. At most one queued job per tenant."""
    config = settings(
        tmp_path / "data", [acme], redis_url=redis_url, tenant_max_queued=1, tenant_retry_after_s=1
    )
    running = ServiceThreads(config, port=free_port()).start()
    yield running
    running.stop()


# -- every operation ------------------------------------------------------------------------------


def test_submit_streams_the_file_with_progress_and_is_idempotent(
    client: VsrClient, clip: Path, tmp_path: Path
) -> None:
    calls: list[tuple[int, int | None]] = []
    job = client.submit(
        clip, crf=20, codec="h265", container="mkv", progress=lambda d, t: calls.append((d, t))
    )
    size = clip.stat().st_size
    assert isinstance(job, Job) and job.status in ("queued", "processing")
    assert job.params["crf"] == 20 and job.params["codec"] == "h265" and job.params["container"] == "mkv"
    assert calls[0] == (0, size) and calls[-1] == (size, size)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)

    # A multi-chunk file is read and sent chunk by chunk, never whole (refused afterwards: not a video).
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(CHUNK_BYTES * 4 + 123))
    steps: list[int] = []
    with pytest.raises(UnsupportedMediaError) as refused:
        client.submit(junk, progress=lambda d, t: steps.append(d))
    assert refused.value.status == 415 and refused.value.code == "not_a_video"
    assert steps[-1] == junk.stat().st_size and len(steps) == 6  # 0, then 5 chunks
    assert max(b - a for a, b in in_pairs(steps)) <= CHUNK_BYTES

    # A stream that cannot seek (a pipe) goes out chunked, without a known size; it is not retried.
    pipe_calls: list[tuple[int, int | None]] = []
    piped = client.submit(
        io.BufferedReader(Unseekable(clip.read_bytes())), progress=lambda d, t: pipe_calls.append((d, t))
    )
    assert piped.status in ("queued", "processing") and pipe_calls[-1] == (size, None)

    # The same Idempotency-Key returns the same job, from a path or a file object alike.
    first = client.submit(clip, idempotency_key="order-7")
    with clip.open("rb") as handle:
        again = client.submit(handle, idempotency_key="order-7")
    assert again.id == first.id != job.id


class Unseekable(io.RawIOBase):
    """A read-only stream without tell/seek, like a pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def in_pairs(values: list[int]) -> list[tuple[int, int]]:
    return list(itertools.pairwise(values))


def test_get_wait_list_download_status(client: VsrClient, clip: Path, tmp_path: Path) -> None:
    jobs = [client.submit(clip), client.submit(clip, container="mkv")]
    updates: list[Job] = []
    done = [client.wait(j.id, timeout=120, on_update=updates.append) for j in jobs]
    assert [j.status for j in done] == ["succeeded", "succeeded"]
    assert updates[-1].status == "succeeded" and updates[-1].progress.frames_done == 4
    first = client.get(jobs[0].id)
    assert first.output is not None and (first.output.width, first.output.height) == (128, 96)
    assert first.timings["model_decode"] > 0 and first.macs["total"] > 0
    assert first.raise_for_status() is first

    # download: to a file, and into a directory under the service's name; bytes as the API serves them
    saved = client.download(first.id, tmp_path / "out.mp4", progress=lambda d, t: None)
    assert saved == tmp_path / "out.mp4" and saved.read_bytes()[4:8] == b"ftyp"
    assert saved.stat().st_size == first.output.bytes
    into = client.download(jobs[1].id, tmp_path)
    assert into == tmp_path / f"{jobs[1].id}_x4.mkv" and into.read_bytes()[:4] == b"\x1a\x45\xdf\xa3"
    assert not list(tmp_path.glob("*.part"))

    # list: newest first, page after page, with a status filter and a limit
    listed = [j.id for j in client.list(page_size=1)]
    assert listed[:2] == [jobs[1].id, jobs[0].id] and len(listed) == len(set(listed))
    assert [j.id for j in client.list(status="succeeded", limit=2, page_size=1)] == listed[:2]
    page = client.list_page(limit=1)
    assert len(page.jobs) == 1 and page.next_cursor is not None
    assert client.list_page(limit=1, cursor=page.next_cursor).jobs[0].id == listed[1]

    status = client.status()
    assert status.workers == 1 and status.storage == "local" and status.max_upload_bytes == MAX_UPLOAD


def test_wait_for_webhook(service: ServiceThreads, acme: ApiTenant, client: VsrClient, clip: Path) -> None:
    with WebhookListener(acme.secret) as hooks:
        job = client.submit(clip, webhook_url=hooks.url, webhook_events=["start", "completed"])
        done = client.wait_for_webhook(job.id, hooks, timeout=120, fallback_poll_s=None)
        assert done.status == "succeeded" and done.output is not None
        assert [e.type for e in hooks.events] == ["job.started", "job.completed"]
        assert hooks.events[-1].job_id == job.id and hooks.events[-1].data["status"] == "succeeded"
        assert hooks.rejected == 0
        with pytest.raises(WaitTimeoutError):  # no event is coming for this job id
            client.wait_for_webhook("no-such-job", hooks, timeout=0.3, fallback_poll_s=None)


def test_async_client_every_operation(
    service: ServiceThreads, acme: ApiTenant, clip: Path, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with AsyncVsrClient(service.url, acme.key) as client:
            calls: list[int] = []
            job = await client.submit(clip, crf=22, progress=lambda d, t: calls.append(d))
            assert calls[-1] == clip.stat().st_size and job.params["crf"] == 22
            with clip.open("rb") as handle:
                assert (await client.submit(handle, idempotency_key=f"a-{job.id}")).id != job.id
            done = await client.wait(job.id, timeout=120)
            assert done.status == "succeeded" and (await client.get(job.id)).status == "succeeded"
            saved = await client.download(job.id, tmp_path / "async.mp4")
            assert (
                saved.read_bytes()[4:8] == b"ftyp"
                and done.output
                and saved.stat().st_size == done.output.bytes
            )
            listed = [j.id async for j in client.list(limit=3, page_size=2)]
            assert len(listed) == 3 and job.id in listed[:2]
            assert (await client.list_page(status="succeeded", limit=1)).jobs[0].status == "succeeded"
            assert (await client.status()).workers == 1
            with WebhookListener(acme.secret) as hooks:
                hooked = await client.submit(clip, webhook_url=hooks.url)
                finished = await client.wait_for_webhook(hooked.id, hooks, timeout=120, fallback_poll_s=None)
                assert finished.status == "succeeded"
            with pytest.raises(ConflictError) as finished_error:
                await client.cancel(job.id)
            assert finished_error.value.code == "job_finished"
            await client.delete_files(job.id)
            with pytest.raises(GoneError):
                await client.download(job.id, tmp_path / "gone.mp4")
            with pytest.raises(NotFoundError):
                await client.get("nope")
            with pytest.raises(InvalidRequestError):
                await client.submit_reference("s3://media/clip.mp4")
        async with AsyncVsrClient(service.url, "vsr_wrong") as wrong:
            with pytest.raises(AuthenticationError):
                await wrong.status()

    asyncio.run(scenario())


def test_cancel_a_queued_job_and_no_result_yet(api_only: ServiceThreads, acme: ApiTenant, clip: Path) -> None:
    with VsrClient(api_only.url, acme.key) as client:
        job = client.submit(clip)
        with pytest.raises(ConflictError) as early:
            client.download(job.id, api_only.settings.data_dir / "early.mp4")
        assert early.value.code == "no_result"
        with pytest.raises(WaitTimeoutError) as waited:
            client.wait(job.id, timeout=0.3, interval_s=0.05)
        assert waited.value.job is not None and waited.value.job.status == "queued"
        canceled = client.cancel(job.id)
        assert canceled.status == "canceled" and client.cancel(job.id).status == "canceled"  # idempotent
        with pytest.raises(JobFailedError) as failed:
            client.wait(job.id).raise_for_status()
        assert failed.value.code == "job_canceled"


def test_async_cancel_of_a_queued_job(api_only: ServiceThreads, acme: ApiTenant, clip: Path) -> None:
    objects = api_only.settings.data_dir / "objects"

    async def scenario() -> None:
        async with AsyncVsrClient(api_only.url, acme.key) as client:
            job = await client.submit(clip)
            assert job.status == "queued" and len(files_under(objects)) == 1  # the stored input
            with pytest.raises(ConflictError) as early:
                await client.download(job.id, api_only.settings.data_dir / "early.mp4")
            assert early.value.code == "no_result"
            with pytest.raises(WaitTimeoutError) as waited:
                await client.wait(job.id, timeout=0.3, interval_s=0.05)
            assert waited.value.job is not None and waited.value.job.status == "queued"
            canceled = await client.cancel(job.id)
            assert canceled.id == job.id and canceled.status == "canceled"
            assert (await client.cancel(job.id)).status == "canceled"  # idempotent
            assert (await client.get(job.id)).status == "canceled"
            with pytest.raises(JobFailedError) as failed:
                (await client.wait(job.id)).raise_for_status()
            assert failed.value.code == "job_canceled"
            assert files_under(objects) == []  # a canceled job keeps no input
            # the tenant's one queued slot is free again
            assert (await client.submit(clip)).status == "queued"

    asyncio.run(scenario())


# -- error paths ----------------------------------------------------------------------------------


def test_http_errors_are_typed(
    client: VsrClient, service: ServiceThreads, globex: ApiTenant, clip: Path, tmp_path: Path
) -> None:
    with VsrClient(service.url, "vsr_not_a_key") as wrong, pytest.raises(AuthenticationError) as denied:
        wrong.list_page()
    assert (denied.value.status, denied.value.code) == (401, "unauthorized")

    with pytest.raises(NotFoundError) as missing:
        client.get("0123456789abcdef")
    assert (missing.value.status, missing.value.code) == (404, "job_not_found")
    job = client.wait(client.submit(clip).id, timeout=120)
    with VsrClient(service.url, globex.key) as other, pytest.raises(NotFoundError):
        other.get(job.id)  # another tenant's job does not exist for them

    for size in (MAX_UPLOAD + 1, 5 * MAX_UPLOAD):  # refused while streaming / on the declared length
        big = tmp_path / f"big{size}.mp4"
        big.write_bytes(b"\0" * size)
        with pytest.raises(PayloadTooLargeError) as too_large:
            client.submit(big)
        assert (too_large.value.status, too_large.value.code) == (413, "upload_too_large")

    for kwargs, code in (({"crf": 99}, "invalid_params"), ({"model": "nope"}, "unknown_model")):
        with pytest.raises(InvalidRequestError) as invalid:
            client.submit(clip, **kwargs)  # type: ignore[arg-type]
        assert (invalid.value.status, invalid.value.code) == (422, code)
    with pytest.raises(InvalidRequestError) as reference:
        client.submit_reference("s3://media/raw/clip.mp4")
    assert reference.value.code == "unsupported_reference"  # this service has local storage

    with pytest.raises(ConflictError) as finished:
        client.cancel(job.id)
    assert (finished.value.status, finished.value.code) == (409, "job_finished")
    client.delete_files(job.id)
    with pytest.raises(GoneError) as gone:
        client.download(job.id, tmp_path / "x.mp4")
    assert (gone.value.status, gone.value.code) == (410, "result_deleted")
    assert not (tmp_path / "x.mp4").exists()
    with pytest.raises(FileNotFoundError):
        client.submit(tmp_path / "missing.mp4")


@pytest.fixture
def redis_refusing_writes(redis_url: str) -> Iterator[Callable[[bool], None]]:
    """Switch the real Redis into refusing writes (maxmemory 1 byte, no eviction: `OOM command not
    allowed`), an error the API has no handler for, so it answers 500 internal_error."""
    client = redis.Redis.from_url(redis_url)

    def refuse(on: bool) -> None:
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", 1 if on else 0)

    yield refuse
    refuse(False)
    client.close()


def test_bad_request_and_server_errors_are_typed(
    api_only: ServiceThreads,
    acme: ApiTenant,
    clip: Path,
    redis_refusing_writes: Callable[[bool], None],
) -> None:
    """400 -> BadRequestError, a 5xx other than 503 -> ServerError (not retried), in both clients."""
    # A name decoded with surrogateescape from non-UTF-8 bytes (os.fsdecode(b"tiny\xff")): json.dumps
    # writes a lone surrogate escape, which is not valid JSON text, so the API answers 400 malformed_json.
    bad_name = os.fsdecode(b"tiny\xff")
    objects = api_only.settings.data_dir / "objects"
    events: list[RetryEvent] = []

    def check_bad_request(error: pytest.ExceptionInfo[BadRequestError]) -> None:
        assert type(error.value) is BadRequestError and isinstance(error.value, ApiError)
        assert (error.value.status, error.value.code) == (400, "malformed_json")

    def check_server_error(error: pytest.ExceptionInfo[ServerError]) -> None:
        assert type(error.value) is ServerError  # not ServiceUnavailableError: a 500 is not retried
        assert (error.value.status, error.value.code) == (500, "internal_error")
        assert error.value.message == "internal server error; it is logged"
        assert "Traceback" not in str(error.value)

    with VsrClient(api_only.url, acme.key, on_retry=events.append) as client:
        with pytest.raises(BadRequestError) as bad:
            client.submit(clip, model=bad_name)
        check_bad_request(bad)
        redis_refusing_writes(True)
        with pytest.raises(ServerError) as broken:
            client.submit(clip)
        check_server_error(broken)
        redis_refusing_writes(False)

    async def scenario() -> None:
        async with AsyncVsrClient(api_only.url, acme.key, on_retry=events.append) as client:
            with pytest.raises(BadRequestError) as bad:
                await client.submit(clip, model=bad_name)
            check_bad_request(bad)
            redis_refusing_writes(True)
            with pytest.raises(ServerError) as broken:
                await client.submit(clip)
            check_server_error(broken)
            redis_refusing_writes(False)
            assert files_under(objects) == []  # nothing stored for any refused submission
            assert (await client.submit(clip)).status == "queued"  # the service is fine again

    asyncio.run(scenario())
    assert events == []  # neither error is retried
    assert files_under(api_only.settings.data_dir / "spool") == []


def test_unexpected_error_before_the_upload_is_read_reaches_the_client(
    api_only: ServiceThreads, acme: ApiTenant, clip: Path, redis_refusing_writes: Callable[[bool], None]
) -> None:
    """A 500 raised before the body is read (the tenant-limit check) is still answered, in the error
    shape: the connection is kept and the unread upload drained, so the client does not see a reset."""
    upload = clip.read_bytes() + b"\0" * (16 << 20)  # far more than the socket buffers hold
    redis_refusing_writes(True)
    for _ in range(3):
        response = httpx.post(
            f"{api_only.url}/v1/jobs", headers=acme.headers, files={"file": ("big.mp4", upload)}, timeout=60
        )
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "internal_error"
    redis_refusing_writes(False)
    assert files_under(api_only.settings.data_dir / "spool") == []


class ClearFaultOnFirstRetry:
    """An `on_retry` hook that records the events and clears the fault at the first one. The client calls
    it before it waits `Retry-After`, so the retry finds the fault gone however slow the machine is (no
    timer racing the client's wait)."""

    def __init__(self, clear: Callable[[], object]) -> None:
        self.clear = clear
        self.events: list[RetryEvent] = []
        self.cleared_at: float | None = None

    def __call__(self, event: RetryEvent) -> None:
        self.events.append(event)
        if self.cleared_at is None:
            self.clear()
            self.cleared_at = time.monotonic()


def test_429_is_retried_after_retry_after(api_only: ServiceThreads, acme: ApiTenant, clip: Path) -> None:
    with VsrClient(api_only.url, acme.key, retry=NO_RETRY) as impatient:
        blocker = impatient.submit(clip)  # the tenant's one allowed queued job
        with pytest.raises(RateLimitedError) as limited:
            impatient.submit(clip)
        assert (limited.value.status, limited.value.code, limited.value.retry_after) == (
            429,
            "too_many_jobs",
            1,
        )
    refused: list[RetryEvent] = []
    with (
        VsrClient(
            api_only.url, acme.key, retry=RetryPolicy(max_retry_after_s=0.5), on_retry=refused.append
        ) as unwilling,
        pytest.raises(RateLimitedError),
    ):
        unwilling.submit(clip)  # Retry-After 1 s is longer than it accepts: no waiting
    assert refused == []  # gave up at once instead of retrying

    hook = ClearFaultOnFirstRetry(
        lambda: httpx.post(blocker.urls.cancel, headers=acme.headers).raise_for_status()
    )
    with VsrClient(api_only.url, acme.key, on_retry=hook) as client:
        job = client.submit(clip)  # 429, then (the blocker canceled meanwhile) 202 after Retry-After
        retried_at = time.monotonic()
        assert job.status == "queued" and hook.cleared_at is not None
        assert retried_at - hook.cleared_at >= 1.0  # the client waited Retry-After (1 s) before retrying
        assert [(e.attempt, e.delay_s, e.reason) for e in hook.events] == [(1, 1.0, "429 too_many_jobs")]
        assert [j.status for j in client.list()] == ["queued", "canceled"]  # one job per submission


def test_503_is_retried_until_redis_is_back(tmp_path: Path, acme: ApiTenant) -> None:
    redis_server = RedisServer(port=free_port(), workdir=tmp_path / "redis").start()
    config = settings(tmp_path / "data", [acme], redis_url=redis_server.url)
    running = ServiceThreads(config, port=free_port()).start()
    hook = ClearFaultOnFirstRetry(redis_server.start)  # Redis comes back before the client's wait
    try:
        with VsrClient(running.url, acme.key, on_retry=hook) as client:
            assert client.list_page().jobs == []
            redis_server.stop()
            with VsrClient(running.url, acme.key, retry=NO_RETRY) as impatient:
                with pytest.raises(ServiceUnavailableError) as down:
                    impatient.list_page()
                assert (down.value.status, down.value.code, down.value.retry_after) == (
                    503,
                    "redis_unavailable",
                    5,
                )
            page = client.list_page()  # 503, then the same call again once Retry-After (5 s) has passed
            retried_at = time.monotonic()
            assert page.jobs == [] and hook.cleared_at is not None
            assert retried_at - hook.cleared_at >= 5.0
            assert [(e.attempt, e.delay_s, e.reason) for e in hook.events] == [
                (1, 5.0, "503 redis_unavailable")
            ]
    finally:
        running.stop()
        redis_server.stop()


def test_async_429_is_retried_after_retry_after(
    api_only: ServiceThreads, acme: ApiTenant, clip: Path
) -> None:
    with VsrClient(api_only.url, acme.key, retry=NO_RETRY) as sync_client:
        blocker = sync_client.submit(clip)  # the tenant's one allowed queued job
    hook = ClearFaultOnFirstRetry(
        lambda: httpx.post(blocker.urls.cancel, headers=acme.headers).raise_for_status()
    )

    async def scenario() -> None:
        async with AsyncVsrClient(api_only.url, acme.key, retry=NO_RETRY) as impatient:
            with pytest.raises(RateLimitedError) as limited:
                await impatient.submit(clip)
            assert (limited.value.status, limited.value.code, limited.value.retry_after) == (
                429,
                "too_many_jobs",
                1,
            )
        async with AsyncVsrClient(api_only.url, acme.key, on_retry=hook) as client:
            job = await client.submit(clip)  # 429, then 202 once Retry-After has passed
            retried_at = time.monotonic()
            assert job.status == "queued" and hook.cleared_at is not None
            assert retried_at - hook.cleared_at >= 1.0
            assert [(e.attempt, e.delay_s, e.reason) for e in hook.events] == [(1, 1.0, "429 too_many_jobs")]
            assert [j.status async for j in client.list()] == ["queued", "canceled"]

    asyncio.run(scenario())


def test_async_503_is_retried_until_redis_is_back(tmp_path: Path, acme: ApiTenant, clip: Path) -> None:
    """An upload refused with 503 while Redis is down is sent again after Retry-After: one job."""
    redis_server = RedisServer(port=free_port(), workdir=tmp_path / "redis").start()
    config = settings(tmp_path / "data", [acme], redis_url=redis_server.url)
    running = ServiceThreads(config, port=free_port()).start()
    hook = ClearFaultOnFirstRetry(redis_server.start)  # Redis comes back before the client's wait

    async def scenario() -> None:
        async with AsyncVsrClient(running.url, acme.key, on_retry=hook) as client:
            assert (await client.list_page()).jobs == []
            redis_server.stop()
            async with AsyncVsrClient(running.url, acme.key, retry=NO_RETRY) as impatient:
                with pytest.raises(ServiceUnavailableError) as down:
                    await impatient.submit(clip)
                assert (down.value.status, down.value.code, down.value.retry_after) == (
                    503,
                    "redis_unavailable",
                    5,
                )
            sent: list[int] = []
            job = await client.submit(clip, progress=lambda done, total: sent.append(done))
            retried_at = time.monotonic()
            assert job.status == "queued" and hook.cleared_at is not None
            assert retried_at - hook.cleared_at >= 5.0
            assert [(e.method, e.attempt, e.delay_s, e.reason) for e in hook.events] == [
                ("POST", 1, 5.0, "503 redis_unavailable")
            ]
            assert sent.count(0) == 2 and sent[-1] == clip.stat().st_size  # the file went out twice
            assert [j.id async for j in client.list()] == [job.id]  # and made one job

    try:
        asyncio.run(scenario())
    finally:
        running.stop()
        redis_server.stop()


def test_connection_errors_are_retried_then_reported() -> None:
    events: list[RetryEvent] = []
    policy = RetryPolicy(max_attempts=3, backoff_base_s=0.01)
    with (
        VsrClient(f"http://127.0.0.1:{free_port()}", "vsr_x", retry=policy, on_retry=events.append) as client,
        pytest.raises(VsrConnectionError, match="ConnectError"),
    ):
        client.status()
    assert [e.attempt for e in events] == [1, 2] and all(e.reason.startswith("ConnectError") for e in events)
    assert all(e.delay_s <= 0.02 for e in events)


def test_s3_reference_and_download_through_the_presigned_redirect(
    s3_server: S3Server, redis_server: RedisServer, tmp_path: Path, clip: Path
) -> None:
    """Real processes (`vsr serve` + `vsr worker`), Redis and S3, as in production; the sync client,
    then the async one. The buckets are shared with other tests: everything stored is deleted again."""
    tenant = make_tenant("sdk")
    stack = ServiceStack(redis_server.url.replace("/0", "/4"), tmp_path / "stack", s3_server, acme=tenant)
    source = f"sdk-client/{free_port()}.mp4"
    stack.start()
    try:
        stack.s3.upload_file(str(clip), INPUT_BUCKET, source)
        with VsrClient(stack.api_url, tenant.key) as client:
            submitted = client.submit_reference(f"s3://{INPUT_BUCKET}/{source}", crf=24)
            job = client.wait(submitted.id, timeout=120)
            assert job.status == "succeeded" and job.params["crf"] == 24
            assert job.output is not None and job.output.url and job.output.url.startswith(s3_server.endpoint)
            result = httpx.get(f"{stack.api_url}/v1/jobs/{job.id}/result", headers=tenant.headers)
            assert result.status_code == 307  # the API redirects to storage ...
            saved = client.download(job.id, tmp_path)  # ... which must not get the API key
            assert saved == tmp_path / f"{job.id}_x4.mp4"  # the name the presigned URL gives it
            assert saved.stat().st_size == job.output.bytes and saved.read_bytes()[4:8] == b"ftyp"
            with pytest.raises(InvalidRequestError) as missing:
                client.submit_reference(f"s3://{INPUT_BUCKET}/sdk-client/missing.mp4")
            assert missing.value.code == "input_not_found"
            with pytest.raises(PermissionDeniedError) as outside:
                client.submit_reference(f"s3://{BUCKET}/jobs/sdk/x/input.mp4")
            assert (outside.value.status, outside.value.code) == (403, "bucket_not_allowed")
            client.delete_files(job.id)
            assert stack.stored_keys(f"jobs/{tenant.id}/") == []

        async def scenario() -> None:
            async with AsyncVsrClient(stack.api_url, tenant.key) as client:
                submitted = await client.submit_reference(
                    f"s3://{INPUT_BUCKET}/{source}", crf=26, idempotency_key="async-ref"
                )
                assert submitted.status in ("queued", "processing") and submitted.params["crf"] == 26
                again = await client.submit_reference(
                    f"s3://{INPUT_BUCKET}/{source}", crf=26, idempotency_key="async-ref"
                )
                assert again.id == submitted.id  # idempotent
                job = await client.wait(submitted.id, timeout=120)
                assert job.status == "succeeded" and job.output is not None
                assert (job.output.width, job.output.height, job.output.frames) == (128, 96, 4)
                saved = await client.download(job.id, tmp_path / "async-ref.mp4")  # presigned redirect
                assert saved.stat().st_size == job.output.bytes and saved.read_bytes()[4:8] == b"ftyp"
                with pytest.raises(InvalidRequestError) as missing:
                    await client.submit_reference(f"s3://{INPUT_BUCKET}/sdk-client/missing.mp4")
                assert missing.value.code == "input_not_found"
                with pytest.raises(PermissionDeniedError) as outside:
                    await client.submit_reference(f"s3://{BUCKET}/jobs/sdk/x/input.mp4")
                assert (outside.value.status, outside.value.code) == (403, "bucket_not_allowed")
                await client.delete_files(job.id)

        asyncio.run(scenario())
        assert stack.stored_keys(f"jobs/{tenant.id}/") == []
        assert stack.s3.head_object(Bucket=INPUT_BUCKET, Key=source)["ContentLength"] == clip.stat().st_size
    finally:
        stack.s3.delete_object(Bucket=INPUT_BUCKET, Key=source)
        stack.stop()


# -- the `vsr` client commands ----------------------------------------------------------------------


def vsr(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VSR_")}
    return subprocess.run(
        [sys.executable, "-m", "vsr.cli", *args],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_commands_print_json_and_fail_with_codes(
    service: ServiceThreads, acme: ApiTenant, clip: Path, tmp_path: Path
) -> None:
    env = {"VSR_API_URL": service.url, "VSR_API_KEY": acme.key}
    out = tmp_path / "cli.mp4"
    submitted = vsr("submit", str(clip), "--crf", "21", "--wait", "-o", str(out), "--json", env=env)
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)
    assert job["status"] == "succeeded" and job["params"]["crf"] == 21
    assert out.stat().st_size == job["output"]["bytes"]

    queued = vsr("submit", str(clip), "--json", "--idempotency-key", "cli-1", env=env)
    replayed = vsr("submit", str(clip), "--json", "--idempotency-key", "cli-1", env=env)
    assert json.loads(queued.stdout)["id"] == json.loads(replayed.stdout)["id"]
    waited = vsr("wait", json.loads(queued.stdout)["id"], "--json", env=env)
    assert waited.returncode == 0 and json.loads(waited.stdout)["status"] == "succeeded"

    status = vsr("status", job["id"], "--json", env=env)
    assert json.loads(status.stdout)["id"] == job["id"]
    service_status = vsr("status", "--json", "--api-url", service.url, "--api-key", acme.key, env={})
    assert json.loads(service_status.stdout)["workers"] == 1
    listed = vsr("list", "--json", "--limit", "2", "--status", "succeeded", env=env)
    assert [j["status"] for j in json.loads(listed.stdout)] == ["succeeded", "succeeded"]
    downloaded = vsr("download", job["id"], str(tmp_path / "again.mp4"), "--json", env=env)
    assert json.loads(downloaded.stdout) == {
        "id": job["id"],
        "path": str(tmp_path / "again.mp4"),
        "bytes": job["output"]["bytes"],
    }
    human = vsr("status", job["id"], env=env)
    assert human.returncode == 0 and f"job {job['id']}  succeeded" in human.stdout and "GMACs" in human.stdout

    for args, code in (
        (("cancel", job["id"]), "job_finished"),
        (("status", "nope"), "job_not_found"),
        (("submit", str(tmp_path / "missing.mp4")), "file_not_found"),
        (("submit", str(clip), "--crf", "99"), "invalid_params"),
    ):
        failed = vsr(*args, env=env)
        assert failed.returncode == 1 and failed.stderr.startswith(f"vsr: error: {code}: "), (
            args,
            failed.stderr,
        )
    denied = vsr("list", env={"VSR_API_URL": service.url, "VSR_API_KEY": "vsr_wrong"})
    assert denied.returncode == 1 and denied.stderr.startswith("vsr: error: unauthorized: ")


def test_cli_cancel_a_queued_job(api_only: ServiceThreads, acme: ApiTenant, clip: Path) -> None:
    env = {"VSR_API_URL": api_only.url, "VSR_API_KEY": acme.key}
    submitted = vsr("submit", str(clip), "--json", env=env)
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["id"]
    assert json.loads(submitted.stdout)["status"] == "queued"  # no worker: it stays queued

    canceled = vsr("cancel", job_id, "--json", env=env)
    assert canceled.returncode == 0, canceled.stderr
    body = json.loads(canceled.stdout)
    assert (body["id"], body["status"]) == (job_id, "canceled")
    with VsrClient(api_only.url, acme.key) as client:
        assert client.get(job_id).status == "canceled"  # the service agrees
        second = client.submit(clip)  # the tenant's one queued slot is free again
    assert files_under(api_only.settings.data_dir / "objects") != []

    human = vsr("cancel", second.id, env=env)
    assert human.returncode == 0, human.stderr
    assert human.stdout.strip() == f"job {second.id} canceled"
    assert files_under(api_only.settings.data_dir / "objects") == []  # canceled jobs keep no input
