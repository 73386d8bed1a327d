"""The HTTP API on a real uvicorn port, a real Redis and local storage, with no worker running.

Every refused request is checked for leaving nothing behind: no stored object, no spooled upload, no job.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.jobs import JobStatus
from service.settings import Settings, load_settings
from tests.media import make_test_clip
from tests.support.ports import free_port
from tests.support.service import ApiTenant, files_under, make_tenant
from tests.support.webhook_receiver import WebhookReceiver
from vsr.serve import ServiceThreads

MAX_UPLOAD = 200_000


@pytest.fixture(scope="module")
def tenants() -> tuple[ApiTenant, ApiTenant]:
    return make_tenant("acme"), make_tenant("globex")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_test_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=4, width=32, height=24)


def api_settings(redis_url: str, data_dir: Path, tenants: tuple[ApiTenant, ...]) -> Settings:
    return load_settings(
        redis_url=redis_url,
        data_dir=data_dir,
        tenants=[t.config for t in tenants],
        max_upload_bytes=MAX_UPLOAD,
        webhook_allow_private=True,
        webhook_retry_schedule_s=[0, 0.2],
    )


@pytest.fixture
def api(redis_url: str, tmp_path: Path, tenants: tuple[ApiTenant, ApiTenant]) -> Iterator[ServiceThreads]:
    service = ServiceThreads(api_settings(redis_url, tmp_path / "data", tenants), port=free_port()).start()
    yield service
    service.stop()


def submit(
    api: ServiceThreads, tenant: ApiTenant, path: Path, params: object = None, **headers: str
) -> httpx.Response:
    data = {} if params is None else {"params": params if isinstance(params, str) else json.dumps(params)}
    with path.open("rb") as handle:
        return httpx.post(
            f"{api.url}/v1/jobs",
            headers={**tenant.headers, **headers},
            files={"file": (path.name, handle, "video/mp4")},
            data=data,
        )


def assert_nothing_left(api: ServiceThreads, tenant: ApiTenant) -> None:
    data_dir = api.settings.data_dir
    assert files_under(data_dir / "objects") == []
    assert files_under(data_dir / "spool") == []
    listing = httpx.get(f"{api.url}/v1/jobs", headers=tenant.headers).json()
    assert listing["jobs"] == []


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def test_openapi_and_docs_are_served(api: ServiceThreads) -> None:
    spec = httpx.get(f"{api.url}/openapi.json").json()
    for path in ("/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/cancel", "/v1/jobs/{job_id}/result"):
        assert path in spec["paths"]
    body = spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)
    progress = spec["components"]["schemas"]["Progress"]["properties"]
    assert set(progress) == {"frames_done", "frames_total", "fps", "eta_s"}
    assert httpx.get(f"{api.url}/docs").status_code == 200


def test_api_key_is_required(api: ServiceThreads, clip: Path) -> None:
    assert httpx.get(f"{api.url}/v1/jobs").status_code == 401
    wrong = httpx.get(f"{api.url}/v1/jobs", headers={"Authorization": "Bearer vsr_wrong"})
    assert wrong.status_code == 401 and error_code(wrong) == "unauthorized"
    assert wrong.headers["www-authenticate"] == "Bearer"


def test_upload_is_queued_and_readable(
    api: ServiceThreads, tenants: tuple[ApiTenant, ApiTenant], clip: Path
) -> None:
    acme = tenants[0]
    response = submit(api, acme, clip, {"crf": 20, "codec": "h265", "container": "mkv"})
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "queued" and job["created_at"]
    assert job["urls"]["get"] == f"{api.url}/v1/jobs/{job['id']}"
    assert response.headers["location"] == job["urls"]["get"]
    again = httpx.get(job["urls"]["get"], headers=acme.headers).json()
    assert again["params"]["codec"] == "h265" and again["params"]["model"] == "fastvsr-tiny"
    assert again["progress"] == {"frames_done": 0, "frames_total": None, "fps": None, "eta_s": None}
    stored = files_under(api.settings.data_dir / "objects")
    assert len(stored) == 1 and stored[0].read_bytes() == clip.read_bytes()
    assert files_under(api.settings.data_dir / "spool") == []
    status = httpx.get(f"{api.url}/v1/status", headers=acme.headers).json()
    assert status["queue_depth"] == 1 and status["workers"] == 0


def test_another_tenant_gets_404_everywhere(
    api: ServiceThreads, tenants: tuple[ApiTenant, ApiTenant], clip: Path
) -> None:
    acme, globex = tenants
    job = submit(api, acme, clip).json()
    root = job["urls"]["get"]
    for method, url in (
        ("GET", root),
        ("POST", f"{root}/cancel"),
        ("GET", f"{root}/result"),
        ("DELETE", root),
    ):
        response = httpx.request(method, url, headers=globex.headers)
        assert response.status_code == 404 and error_code(response) == "job_not_found", (method, url)
    assert httpx.get(f"{api.url}/v1/jobs", headers=globex.headers).json()["jobs"] == []
    assert httpx.get(root, headers=acme.headers).json()["status"] == "queued"  # untouched


def test_idempotent_resubmit_returns_the_same_job(
    api: ServiceThreads, tenants: tuple[ApiTenant, ApiTenant], clip: Path
) -> None:
    acme, globex = tenants
    first = submit(api, acme, clip, **{"Idempotency-Key": "order-42"})
    second = submit(api, acme, clip, **{"Idempotency-Key": "order-42"})
    other_tenant = submit(api, globex, clip, **{"Idempotency-Key": "order-42"})
    assert first.status_code == second.status_code == 202
    assert second.json()["id"] == first.json()["id"] and second.headers["idempotent-replayed"] == "true"
    assert other_tenant.json()["id"] != first.json()["id"]
    assert len(httpx.get(f"{api.url}/v1/jobs", headers=acme.headers).json()["jobs"]) == 1
    assert len(files_under(api.settings.data_dir / "objects")) == 2  # one input per distinct job


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"crf": 99}, 422, "invalid_params"),
        ({"crf": "18"}, 422, "invalid_params"),
        ({"scale": 2}, 422, "invalid_params"),
        ({"codec": "vp9"}, 422, "invalid_params"),
        ({"container": "avi"}, 422, "invalid_params"),
        ({"preset": "warp"}, 422, "invalid_params"),
        ({"webhook_events": ["done"]}, 422, "invalid_params"),
        ({"unknown": 1}, 422, "invalid_params"),
        ({"model": "nope"}, 422, "unknown_model"),
        ({"webhook_url": "ftp://example.com/hook"}, 422, "invalid_webhook_url"),
        ("{not json", 400, "malformed_json"),
        ("[1, 2]", 422, "invalid_params"),
    ],
)
def test_invalid_params_are_refused_and_leave_nothing(
    api: ServiceThreads,
    tenants: tuple[ApiTenant, ApiTenant],
    clip: Path,
    params: object,
    status: int,
    code: str,
) -> None:
    response = submit(api, tenants[0], clip, params)
    assert response.status_code == status and error_code(response) == code, response.text
    assert_nothing_left(api, tenants[0])


def test_private_webhook_url_refused_unless_allowed(
    redis_url: str, tmp_path: Path, tenants: tuple[ApiTenant, ApiTenant], clip: Path
) -> None:
    settings = api_settings(redis_url, tmp_path, tenants).model_copy(update={"webhook_allow_private": False})
    service = ServiceThreads(settings, port=free_port()).start()
    try:
        for url in ("http://127.0.0.1:9/hook", "http://10.0.0.5/hook", "http://169.254.169.254/latest"):
            response = submit(service, tenants[0], clip, {"webhook_url": url})
            assert response.status_code == 422 and error_code(response) == "invalid_webhook_url", url
        assert_nothing_left(service, tenants[0])
    finally:
        service.stop()


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"just some text, not a video\n" * 10, 415, "not_a_video"),
        (b"", 422, "empty_file"),
        (b"\x00" * (MAX_UPLOAD + 1), 413, "upload_too_large"),
    ],
)
def test_bad_files_are_refused_and_leave_nothing(
    api: ServiceThreads,
    tenants: tuple[ApiTenant, ApiTenant],
    tmp_path: Path,
    content: bytes,
    status: int,
    code: str,
) -> None:
    path = tmp_path / "video.mp4"
    path.write_bytes(content)
    response = submit(api, tenants[0], path)
    assert response.status_code == status and error_code(response) == code, response.text
    assert_nothing_left(api, tenants[0])


def test_oversized_streamed_upload_without_length_is_cut_off(
    api: ServiceThreads, tenants: tuple[ApiTenant, ApiTenant]
) -> None:
    boundary = "vsrboundary"
    sent = {"bytes": 0}

    def body() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode()
        for _ in range(64):  # 4 MiB, far over the limit, streamed with no Content-Length
            sent["bytes"] += 65536
            yield b"\x00" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {**tenants[0].headers, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    try:
        response = httpx.post(f"{api.url}/v1/jobs", headers=headers, content=body())
        assert response.status_code == 413 and error_code(response) == "upload_too_large"
    except httpx.RemoteProtocolError:
        pass  # the server may close the connection while the client is still sending
    assert_nothing_left(api, tenants[0])


def test_malformed_requests(api: ServiceThreads, tenants: tuple[ApiTenant, ApiTenant]) -> None:
    headers = tenants[0].headers
    plain = httpx.post(f"{api.url}/v1/jobs", headers={**headers, "Content-Type": "text/plain"}, content=b"x")
    assert plain.status_code == 415 and error_code(plain) == "unsupported_media_type"
    broken = httpx.post(
        f"{api.url}/v1/jobs",
        headers={**headers, "Content-Type": "multipart/form-data; boundary=zzz"},
        content=b"--zzz\r\nno headers at all",
    )
    assert broken.status_code in (400, 422)
    no_file = httpx.post(f"{api.url}/v1/jobs", headers=headers, files={"params": (None, "{}")})
    assert no_file.status_code == 422 and error_code(no_file) == "missing_file"
    bad_json = httpx.post(
        f"{api.url}/v1/jobs", headers={**headers, "Content-Type": "application/json"}, content=b"{"
    )
    assert bad_json.status_code == 400 and error_code(bad_json) == "malformed_json"
    reference = httpx.post(f"{api.url}/v1/jobs", headers=headers, json={"input": "s3://videos/clip.mp4"})
    assert reference.status_code == 422 and error_code(reference) == "unsupported_reference"
    bad_key = httpx.post(f"{api.url}/v1/jobs", headers={**headers, "Idempotency-Key": "x" * 300}, json={})
    assert bad_key.status_code == 422 and error_code(bad_key) == "invalid_idempotency_key"
    assert_nothing_left(api, tenants[0])


def test_cancel_queued_job_removes_it_and_notifies(
    api: ServiceThreads, tenants: tuple[ApiTenant, ApiTenant], clip: Path
) -> None:
    acme = tenants[0]
    with WebhookReceiver(acme.secret) as receiver:
        job = submit(api, acme, clip, {"webhook_url": receiver.url}).json()
        canceled = httpx.post(job["urls"]["cancel"], headers=acme.headers)
        assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
        assert httpx.post(job["urls"]["cancel"], headers=acme.headers).json()["status"] == "canceled"
        events = receiver.wait_for(1)
    assert events[0].verified and events[0].body["type"] == "job.completed"
    assert events[0].body["data"]["status"] == "canceled" and events[0].body["data"]["id"] == job["id"]
    assert files_under(api.settings.data_dir / "objects") == []  # the input went with it
    assert httpx.get(f"{api.url}/v1/status", headers=acme.headers).json()["queue_depth"] == 0
    result = httpx.get(job["urls"]["result"], headers=acme.headers)
    assert result.status_code == 409 and error_code(result) == "no_result"


def test_files_of_active_jobs_cannot_be_deleted(
    api: ServiceThreads, tenants: tuple[ApiTenant, ApiTenant], clip: Path
) -> None:
    acme = tenants[0]
    job = submit(api, acme, clip).json()
    response = httpx.delete(job["urls"]["get"], headers=acme.headers)
    assert response.status_code == 409 and error_code(response) == "job_active"
    httpx.post(job["urls"]["cancel"], headers=acme.headers)
    assert httpx.delete(job["urls"]["get"], headers=acme.headers).status_code == 204
    assert httpx.get(job["urls"]["get"], headers=acme.headers).json()["status"] == "canceled"


def test_list_pages_and_filters(
    api: ServiceThreads, tenants: tuple[ApiTenant, ApiTenant], clip: Path
) -> None:
    acme = tenants[0]
    ids = [submit(api, acme, clip).json()["id"] for _ in range(5)]
    httpx.post(f"{api.url}/v1/jobs/{ids[1]}/cancel", headers=acme.headers)
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{api.url}/v1/jobs", headers=acme.headers, params=params).json()
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    canceled = httpx.get(f"{api.url}/v1/jobs", headers=acme.headers, params={"status": "canceled"}).json()
    assert [j["id"] for j in canceled["jobs"]] == [ids[1]]
    bad = httpx.get(f"{api.url}/v1/jobs", headers=acme.headers, params={"status": "done"})
    assert bad.status_code == 422 and error_code(bad) == "invalid_params"
    bad_cursor = httpx.get(f"{api.url}/v1/jobs", headers=acme.headers, params={"cursor": "zz"})
    assert bad_cursor.status_code == 422 and error_code(bad_cursor) == "invalid_cursor"


def test_health_readiness_and_metrics(api: ServiceThreads, tenants: tuple[ApiTenant, ApiTenant]) -> None:
    assert httpx.get(f"{api.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{api.url}/readyz").json() == {"status": "ready"}
    httpx.get(f"{api.url}/v1/jobs/nope", headers=tenants[0].headers)
    text = httpx.get(f"{api.url}/metrics").text
    assert 'vsr_http_requests_total{method="GET",route="/v1/jobs/{job_id}",status="404"} 1.0' in text
    assert "vsr_queue_depth 0.0" in text and "vsr_workers 0.0" in text
    assert "job_id=" not in text  # no per-job labels


def test_redis_down_answers_503_not_500(
    tmp_path: Path, tenants: tuple[ApiTenant, ApiTenant], clip: Path
) -> None:
    settings = api_settings(f"redis://127.0.0.1:{free_port()}/0", tmp_path, tenants)
    service = ServiceThreads(settings, port=free_port()).start()
    try:
        ready = httpx.get(f"{service.url}/readyz")
        assert ready.status_code == 503 and error_code(ready) == "redis_unavailable"
        response = submit(service, tenants[0], clip)
        assert response.status_code == 503 and error_code(response) == "redis_unavailable"
        assert response.headers["retry-after"] == "5"
        assert httpx.get(f"{service.url}/v1/jobs/x", headers=tenants[0].headers).status_code == 503
    finally:
        service.stop()
    assert files_under(tmp_path / "objects") == [] and files_under(tmp_path / "spool") == []


def test_per_tenant_queue_limit_answers_429(
    redis_url: str, tmp_path: Path, tenants: tuple[ApiTenant, ApiTenant], clip: Path
) -> None:
    settings = api_settings(redis_url, tmp_path, tenants).model_copy(
        update={"tenant_max_queued": 2, "tenant_max_active": 3}
    )
    service = ServiceThreads(settings, port=free_port()).start()
    try:
        acme, globex = tenants
        assert [submit(service, acme, clip).status_code for _ in range(2)] == [202, 202]
        limited = submit(service, acme, clip)
        assert limited.status_code == 429 and error_code(limited) == "too_many_jobs"
        assert limited.headers["retry-after"] == str(settings.tenant_retry_after_s)
        assert submit(service, globex, clip).status_code == 202  # limits are per tenant
        jobs = httpx.get(f"{service.url}/v1/jobs", headers=acme.headers).json()["jobs"]
        assert len(jobs) == 2
        httpx.post(jobs[0]["urls"]["cancel"], headers=acme.headers)
        assert submit(service, acme, clip).status_code == 202  # room again once one left the queue
    finally:
        service.stop()


def test_per_tenant_active_limit_answers_429(
    redis_url: str, tmp_path: Path, tenants: tuple[ApiTenant, ApiTenant], clip: Path
) -> None:
    """Queued + processing jobs count against `tenant_max_active`; a refused submission stores nothing."""
    settings = api_settings(redis_url, tmp_path, tenants).model_copy(
        update={"tenant_max_queued": 10, "tenant_max_active": 3}
    )
    service = ServiceThreads(settings, port=free_port()).start()
    try:
        acme, globex = tenants
        store, queue = service.services.store, service.services.queue
        accepted = [submit(service, acme, clip) for _ in range(3)]
        assert [r.status_code for r in accepted] == [202, 202, 202]
        ids = [r.json()["id"] for r in accepted]
        for job_id in ids[:2]:  # two jobs taken by a worker: the claim a worker makes first
            assert store.claim(job_id, "worker-a", lease_s=60).status == JobStatus.PROCESSING
        assert store.active_counts(acme.id) == (1, 2)  # under the queued limit, at the in-flight one
        objects = files_under(tmp_path / "objects")

        limited = submit(service, acme, clip, **{"Idempotency-Key": "over-the-limit"})
        assert limited.status_code == 429
        assert limited.json()["error"] == {
            "code": "too_many_jobs",
            "message": "3 jobs already in flight (limit 3)",
        }
        assert limited.headers["retry-after"] == str(settings.tenant_retry_after_s)
        # nothing stored for the refused submission: no object, no spool file, no job, no key, no RQ job
        assert files_under(tmp_path / "objects") == objects and len(objects) == 3
        assert files_under(tmp_path / "spool") == []
        listing = httpx.get(f"{service.url}/v1/jobs", headers=acme.headers).json()["jobs"]
        assert sorted(job["id"] for job in listing) == sorted(ids)
        assert store.idempotent_job(acme.id, "over-the-limit") is None
        assert store.active_counts(acme.id) == (1, 2) and queue.count == 3

        assert submit(service, globex, clip).status_code == 202  # limits are per tenant
        store.transition(ids[0], JobStatus.CANCELED, owner=("worker-a", 1))  # one processing job ends
        again = submit(service, acme, clip, **{"Idempotency-Key": "over-the-limit"})
        assert again.status_code == 202, again.text  # room again, and the key was never taken
        assert store.idempotent_job(acme.id, "over-the-limit") == again.json()["id"]
    finally:
        service.stop()


def test_queue_payloads_are_json_not_pickle(
    api: ServiceThreads, tenants: tuple[ApiTenant, ApiTenant], clip: Path
) -> None:
    job = submit(api, tenants[0], clip).json()
    record = api.services.store.get(job["id"])
    assert record is not None and record.rq_job_id is not None
    raw = api.services.redis.hget(f"rq:job:{record.rq_job_id}", "data")
    assert raw is not None
    payload = json.loads(zlib.decompress(raw))  # RQ compresses; JSON inside, never a pickle
    assert payload[0] == "worker.job_runner.process_job" and payload[2] == [job["id"]]
