"""Real faults on real servers: a SIGKILLed worker, a poison-pill job, a Redis restart (AOF), a storage
outage, an unreachable webhook receiver, and a graceful shutdown. Timings are compressed through
settings (leases of seconds, not minutes); the mechanisms are the production ones."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.media import make_test_clip
from tests.support.ports import free_port, wait_until
from tests.support.redis_server import RedisServer
from tests.support.s3_server import S3Server
from tests.support.stack import ServiceStack
from tests.support.webhook_receiver import Reply, WebhookReceiver

# Leases of seconds, renewed every lease_s / 3 (1.3 s): a heartbeat thread starved for over 2.6 s on a
# loaded 2-core machine would still keep its lease.
FAST_REAPING = {"lease_s": 4.0, "reaper_interval_s": 0.3, "requeue_grace_s": 2}
# A killed worker's lease runs out at most lease_s after its last renewal (made before the kill), and the
# reaper's next scan finds it; the margin covers that scan, the re-queue and this test's polling.
DETECTION_MARGIN_S = 2.0


def detection_bound_s(settings: dict[str, float]) -> float:
    """Longest time from SIGKILL to re-queue the lease mechanism allows under `settings`."""
    return settings["lease_s"] + settings["reaper_interval_s"] + DETECTION_MARGIN_S


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Long enough (several seconds of model time on 2 cores) to be interrupted mid-way."""
    return make_test_clip(tmp_path_factory.mktemp("clips") / "long.mp4", frames=32, width=96, height=64)


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_test_clip(tmp_path_factory.mktemp("clips") / "short.mp4", frames=8, width=64, height=48)


@pytest.fixture
def make_stack(redis_server: RedisServer, tmp_path: Path) -> Iterator[Any]:
    stacks: list[ServiceStack] = []

    def make(
        db: int, s3: S3Server | None = None, redis_url: str | None = None, **overrides: Any
    ) -> ServiceStack:
        url = redis_url or redis_server.url.replace("/0", f"/{db}")
        stack = ServiceStack(url, tmp_path / f"stack{len(stacks)}", s3, overrides=overrides)
        stacks.append(stack)
        return stack.start()

    yield make
    for stack in stacks:
        stack.stop()


def wait_processing(stack: ServiceStack, job: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    """Wait until the job's model has produced at least one frame."""
    wait_until(lambda: stack.get(job)["progress"]["frames_done"] > 0, timeout, "the first frames")
    return stack.get(job)


def test_sigkilled_worker_job_is_retried_and_published_once(
    make_stack: Any, s3_server: S3Server, long_clip: Path
) -> None:
    stack = make_stack(10, s3_server, **FAST_REAPING)
    job = stack.submit(long_clip)
    assert wait_processing(stack, job)["attempts"] == 1
    stack.worker.stop(signal.SIGKILL)
    killed = time.monotonic()
    bound = detection_bound_s(FAST_REAPING)
    wait_until(lambda: stack.get(job)["status"] == "queued", bound + 10, "the abandoned job to be re-queued")
    detected = time.monotonic() - killed
    assert detected < bound, f"detected after {detected:.1f} s (bound {bound:.1f} s)"
    requeued = stack.get(job)["progress"]
    assert (requeued["frames_done"], requeued["fps"], requeued["eta_s"]) == (0, None, None)  # measured afresh
    stack.add_worker()
    final = stack.wait(job)
    assert final["status"] == "succeeded" and final["attempts"] == 2, final
    assert stack.stored_keys(f"jobs/acme/{job['id']}/") == [
        f"jobs/acme/{job['id']}/input.mp4",
        f"jobs/acme/{job['id']}/output.mp4",
    ]
    wait_until(lambda: stack.stored_keys("tmp/") == [], 10, "no staged objects")


def test_a_job_that_keeps_killing_workers_fails_with_a_code(make_stack: Any, long_clip: Path) -> None:
    stack = make_stack(11, max_attempts=2, **FAST_REAPING)
    job = stack.submit(long_clip)
    for attempt in (1, 2):
        assert wait_processing(stack, job)["attempts"] == attempt
        stack.worker_processes[-1].stop(signal.SIGKILL)
        if attempt == 1:
            wait_until(
                lambda: stack.get(job)["status"] == "queued", detection_bound_s(FAST_REAPING) + 10, "re-queue"
            )
            stack.add_worker()
    final = stack.wait(job, timeout=30)
    assert final["status"] == "failed" and final["error"]["code"] == "worker_lost", final
    assert "2 attempts" in final["error"]["message"]
    assert stack.stored_keys(f"jobs/acme/{job['id']}/") == [] and stack.stored_keys("tmp/") == []


def test_graceful_shutdown_requeues_and_another_worker_finishes(make_stack: Any, long_clip: Path) -> None:
    stack = make_stack(12, **FAST_REAPING)
    job = stack.submit(long_clip)
    wait_processing(stack, job)
    assert stack.worker.stop(signal.SIGTERM, timeout=30) == 0  # left at the next chunk, cleanly
    requeued = stack.get(job)
    assert requeued["status"] == "queued"  # back in the queue at once, not after a lease expiry
    assert (requeued["progress"]["frames_done"], requeued["progress"]["fps"]) == (0, None)
    assert requeued["progress"]["eta_s"] is None
    stack.add_worker()
    final = stack.wait(job)
    assert final["status"] == "succeeded" and final["attempts"] == 1, final  # the requeue cost nothing


def test_redis_restart_with_aof_loses_no_job(make_stack: Any, tmp_path: Path, short_clip: Path) -> None:
    redis = RedisServer(port=free_port(), workdir=tmp_path / "redis-aof").start(appendonly=True)
    try:
        stack = make_stack(0, redis_url=redis.url, lease_s=20, reaper_interval_s=0.5)
        jobs = [stack.submit(short_clip) for _ in range(4)]
        wait_until(lambda: stack.get(jobs[0])["status"] != "queued", 30, "the first job to start")
        redis.stop()  # SIGTERM: Redis fsyncs its AOF and exits, like a rolling restart
        down = httpx.get(jobs[0]["urls"]["get"], headers=stack.acme.headers)
        assert down.status_code == 503 and down.json()["error"]["code"] == "redis_unavailable"
        refused = stack.post_file(short_clip)
        assert refused.status_code == 503 and "Traceback" not in refused.text
        assert httpx.get(f"{stack.api_url}/readyz").status_code == 503
        time.sleep(2)
        redis.start(appendonly=True)
        finals = [stack.wait(job, timeout=120) for job in jobs]
        assert [f["status"] for f in finals] == ["succeeded"] * 4, finals
        listed = httpx.get(f"{stack.api_url}/v1/jobs", headers=stack.acme.headers).json()["jobs"]
        assert sorted(j["id"] for j in listed) == sorted(j["id"] for j in jobs)
        assert all(p.alive() for p in stack.worker_processes)
    finally:
        redis.stop()


def test_storage_outage_is_ridden_out_within_the_retry_budget(
    make_stack: Any, s3_server: S3Server, short_clip: Path
) -> None:
    stack = make_stack(13, s3_server, storage_retry_budget_s=60)
    job = stack.submit(short_clip)
    wait_until(lambda: stack.get(job)["status"] == "processing", 30, "processing")
    s3_server.stop_rgw()
    try:
        ready = httpx.get(f"{stack.api_url}/readyz")
        assert ready.status_code == 503 and ready.json()["error"]["code"] == "storage_unavailable"
        time.sleep(30)  # the S3 server stays down for 30 s
        assert stack.get(job)["status"] == "processing"  # still retrying, not failed
    finally:
        s3_server.start_rgw()
    final = stack.wait(job, timeout=90)
    assert final["status"] == "succeeded", final
    assert f"jobs/acme/{job['id']}/output.mp4" in stack.stored_keys(f"jobs/acme/{job['id']}/")
    assert stack.stored_keys("tmp/") == []


def test_storage_outage_past_the_budget_fails_cleanly(
    make_stack: Any, s3_server: S3Server, long_clip: Path
) -> None:
    stack = make_stack(14, s3_server, storage_retry_budget_s=2, reaper_interval_s=0.3)
    job = stack.submit(long_clip)
    wait_processing(stack, job)
    s3_server.stop_rgw()
    try:
        final = stack.wait(job, timeout=90)
    finally:
        s3_server.start_rgw()
    assert final["status"] == "failed" and final["error"]["code"] == "storage_unavailable", final
    # What could not be deleted during the outage is deleted by the reaper once storage is back.
    wait_until(lambda: stack.stored_keys(f"jobs/acme/{job['id']}/") == [], 20, "the input to be deleted")
    assert stack.stored_keys("tmp/") == []


def test_webhooks_retry_with_the_same_id_and_survive_restarts(make_stack: Any, short_clip: Path) -> None:
    stack = make_stack(15, webhook_retry_schedule_s=[0, 0.5, 0.5, 1, 1, 2, 2, 2, 2, 2])
    with WebhookReceiver(stack.acme.secret, [503, Reply(503), 200]) as receiver:
        job = stack.submit(short_clip, {"webhook_url": receiver.url, "webhook_events": ["completed"]})
        assert stack.wait(job)["status"] == "succeeded"  # a failing receiver never fails the job
        events = receiver.wait_for(3, timeout=15)
    assert [e.status for e in events] == [503, 503, 200]
    assert len({e.msg_id for e in events}) == 1 and len({e.raw_body for e in events}) == 1
    assert all(e.verified for e in events)

    down = WebhookReceiver(stack.acme.secret)  # not started yet: connections are refused
    job = stack.submit(short_clip, {"webhook_url": down.url, "webhook_events": ["completed"]})
    assert stack.wait(job)["status"] == "succeeded"
    for process in [*stack.worker_processes, stack.api]:  # every dispatcher goes away
        process.stop()
    with down:
        stack.api.start()  # a fresh process finds the pending delivery in Redis
        event = down.wait_for(1, timeout=20)[0]
    assert event.verified and event.body["data"]["id"] == job["id"]
