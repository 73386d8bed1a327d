"""The webhook outbox against a real redis-server and a real HTTP(S) receiver on loopback."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.container import build_services
from service.settings import load_settings
from service.webhook_signing import generate_secret
from service.webhooks import DEFAULT_RETRY_SCHEDULE_S, WebhookOutbox
from tests.support.fake_resolver import FakeResolver
from tests.support.ports import free_port
from tests.support.webhook_receiver import Reply, WebhookReceiver, localhost_client_context

SECRET = generate_secret()
FAST_SCHEDULE = (0, 0.2, 0.4)
# https://www.standardwebhooks.com/ (retry schedule): immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h
STANDARD_WEBHOOKS_SCHEDULE_S = (0, 5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)

MakeOutbox = Callable[..., WebhookOutbox]


class ShiftedClock:
    """Wall-clock time plus an adjustable shift (kept well inside the 300 s signature tolerance)."""

    def __init__(self) -> None:
        self.shift = 0.0

    def __call__(self) -> float:
        return time.time() + self.shift


@pytest.fixture
def make_outbox(redis_url: str) -> Iterator[MakeOutbox]:
    """Outboxes on the test Redis, each with its own client; defaults suit a loopback receiver."""
    created: list[tuple[WebhookOutbox, redis.Redis]] = []

    def make(**kwargs: Any) -> WebhookOutbox:
        client = redis.Redis.from_url(redis_url)
        options = {"retry_schedule_s": FAST_SCHEDULE, "allow_private": True, "timeout_s": 2.0} | kwargs
        outbox = WebhookOutbox(client, **options)
        created.append((outbox, client))
        return outbox

    yield make
    for outbox, client in created:
        outbox.close()
        client.close()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as server:
        yield server


def enqueue(
    outbox: WebhookOutbox,
    url: str,
    event_type: str = "job.completed",
    *,
    job_id: str = "job-1",
    tenant: str = "acme",
    terminal: bool | None = None,
    data: dict[str, Any] | None = None,
) -> str:
    return outbox.enqueue(
        tenant=tenant,
        job_id=job_id,
        url=url,
        secret=SECRET,
        event_type=event_type,
        data={"job_id": job_id} if data is None else data,
        terminal=event_type == "job.completed" if terminal is None else terminal,
    )


def drive(outbox: WebhookOutbox, until: Callable[[], bool], timeout: float = 5.0) -> None:
    """Call dispatch_due until `until()` holds."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "condition not reached while dispatching"
        outbox.dispatch_due()
        time.sleep(0.01)


def state_is(outbox: WebhookOutbox, msg_id: str, state: str) -> Callable[[], bool]:
    return lambda: outbox.status(msg_id)["state"] == state


@contextmanager
def dispatching(*outboxes: WebhookOutbox) -> Iterator[None]:
    """Run one `run_forever` thread per outbox for the duration of the block."""
    stop = threading.Event()
    threads = [
        threading.Thread(target=outbox.run_forever, args=(stop,), kwargs={"poll_interval_s": 0.005})
        for outbox in outboxes
    ]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)


def test_signed_delivery_verifies(make_outbox: MakeOutbox, receiver: WebhookReceiver) -> None:
    outbox = make_outbox()
    msg_id = enqueue(outbox, receiver.url, data={"job_id": "job-1", "output_url": "https://s3/x.mp4"})
    assert msg_id.startswith("msg_") and len(msg_id) == 36
    assert outbox.dispatch_due() == 1

    [event] = receiver.events
    assert event.verified, event.error
    assert event.msg_id == msg_id
    assert event.headers["content-type"] == "application/json"
    assert event.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert event.body["type"] == "job.completed"
    assert event.body["data"] == {"job_id": "job-1", "output_url": "https://s3/x.mp4"}
    assert event.body["timestamp"].endswith("Z")
    assert abs(datetime.fromisoformat(event.body["timestamp"]).timestamp() - time.time()) < 10
    status = outbox.status(msg_id)
    assert status["state"] == "delivered"
    assert (status["attempts"], status["last_status"], status["last_error"]) == (1, 200, None)
    assert outbox.dispatch_due() == 0


def test_events_of_one_job_keep_enqueue_order(make_outbox: MakeOutbox, receiver: WebhookReceiver) -> None:
    outbox = make_outbox()
    sequence = ["job.started", "job.progress", "job.progress", "job.completed"]
    for event_type in sequence:
        for job_id in ("job-a", "job-b"):
            enqueue(outbox, receiver.url, event_type, job_id=job_id)
    assert outbox.dispatch_due() == 8

    events = receiver.wait_for(8)
    assert all(e.verified for e in events)
    for job_id in ("job-a", "job-b"):
        assert [e.body["type"] for e in events if e.body["data"]["job_id"] == job_id] == sequence


def test_pending_message_holds_back_later_messages_of_its_job(
    make_outbox: MakeOutbox, receiver: WebhookReceiver
) -> None:
    outbox = make_outbox(retry_schedule_s=(0, 0.3), jitter=0)
    receiver.script(503)
    first = enqueue(outbox, receiver.url, "job.completed", job_id="job-a")
    later = enqueue(outbox, receiver.url, "job.cleanup", job_id="job-a", terminal=False)
    other = enqueue(outbox, receiver.url, "job.started", job_id="job-b")

    assert outbox.dispatch_due() == 2  # `first` fails, `other` goes, `later` waits for `first`
    assert outbox.status(later)["attempts"] == 0
    assert outbox.status(other)["state"] == "delivered"
    drive(outbox, state_is(outbox, later, "delivered"))
    assert [e.msg_id for e in receiver.events] == [first, other, first, later]


def test_terminal_event_retried_with_same_id_and_body(
    make_outbox: MakeOutbox, receiver: WebhookReceiver
) -> None:
    outbox = make_outbox(retry_schedule_s=FAST_SCHEDULE, jitter=0.1)
    receiver.script(503, Reply(500), 200)
    msg_id = enqueue(outbox, receiver.url)
    with dispatching(outbox):
        events = receiver.wait_for(3)
        time.sleep(0.1)

    assert len(receiver.events) == 3
    assert {e.msg_id for e in events} == {msg_id}
    assert len({e.raw_body for e in events}) == 1
    assert all(e.verified for e in events)
    assert events[1].time - events[0].time >= 0.2 * 0.9 - 0.02
    assert events[2].time - events[1].time >= 0.4 * 0.9 - 0.02
    status = outbox.status(msg_id)
    assert (status["state"], status["attempts"], status["last_status"]) == ("delivered", 3, 200)


def test_best_effort_event_is_not_retried(make_outbox: MakeOutbox, receiver: WebhookReceiver) -> None:
    outbox = make_outbox(retry_schedule_s=(0, 0.05))
    receiver.script(503)
    msg_id = enqueue(outbox, receiver.url, "job.progress", data={"progress": 0.5})
    assert outbox.dispatch_due() == 1
    status = outbox.status(msg_id)
    assert (status["state"], status["attempts"], status["max_attempts"]) == ("dead", 1, 1)
    assert (status["last_status"], status["last_error"]) == (503, "HTTP 503")
    time.sleep(0.1)
    assert outbox.dispatch_due() == 0
    assert len(receiver.events) == 1


def test_gives_up_after_schedule_and_marks_dead(
    redis_url: str, make_outbox: MakeOutbox, receiver: WebhookReceiver
) -> None:
    outbox = make_outbox(retry_schedule_s=(0, 0.05, 0.05))
    receiver.script(500, 500, 500)
    msg_id = enqueue(outbox, receiver.url, job_id="job-x")
    after = enqueue(outbox, receiver.url, "job.cleanup", job_id="job-x", terminal=False)
    drive(outbox, state_is(outbox, after, "delivered"))

    status = outbox.status(msg_id)
    assert (status["state"], status["attempts"], status["last_status"]) == ("dead", 3, 500)
    assert status["last_error"] == "HTTP 500" and status["finished_at"] is not None
    assert [e.msg_id for e in receiver.events] == [msg_id] * 3 + [after]
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.zscore("vsr:wh:dead", msg_id) is not None
        assert client.ttl(f"vsr:wh:msg:{msg_id}") > 0  # kept for inspection, then expires
    finally:
        client.close()


def test_410_disables_the_url(make_outbox: MakeOutbox, receiver: WebhookReceiver) -> None:
    outbox = make_outbox()
    receiver.script(410)
    gone = enqueue(outbox, receiver.url, job_id="job-a")
    queued_behind = enqueue(outbox, receiver.url, "job.cleanup", job_id="job-a", terminal=False)
    assert outbox.dispatch_due() == 2

    assert outbox.status(gone)["state"] == "dropped"
    assert outbox.status(gone)["last_status"] == 410
    assert outbox.status(queued_behind)["state"] == "dropped"  # never sent
    assert outbox.is_disabled("acme", receiver.url)
    later = enqueue(outbox, receiver.url, job_id="job-b")
    assert outbox.status(later)["state"] == "dropped"
    assert outbox.dispatch_due() == 0

    other_tenant = enqueue(outbox, receiver.url, job_id="job-c", tenant="globex")
    outbox.enable_url("acme", receiver.url)
    again = enqueue(outbox, receiver.url, job_id="job-d")
    assert outbox.dispatch_due() == 2
    assert outbox.status(other_tenant)["state"] == outbox.status(again)["state"] == "delivered"
    assert [e.msg_id for e in receiver.events] == [gone, other_tenant, again]


def test_redirect_is_a_failure_and_not_followed(make_outbox: MakeOutbox, receiver: WebhookReceiver) -> None:
    outbox = make_outbox()
    receiver.script(Reply(307, headers={"location": receiver.url_for("127.0.0.1", "/moved")}))
    msg_id = enqueue(outbox, receiver.url, "job.started")
    assert outbox.dispatch_due() == 1
    status = outbox.status(msg_id)
    assert (status["state"], status["last_status"]) == ("dead", 307)
    assert "redirect" in status["last_error"]
    time.sleep(0.05)
    assert [e.path for e in receiver.events] == ["/hook"]


def test_receiver_down_then_up(make_outbox: MakeOutbox) -> None:
    outbox = make_outbox(retry_schedule_s=(0, 0.2, 0.2))
    receiver = WebhookReceiver(SECRET, port=free_port())
    msg_id = enqueue(outbox, receiver.url)
    assert outbox.dispatch_due() == 1
    status = outbox.status(msg_id)
    assert (status["state"], status["last_status"]) == ("pending", None)
    assert "ConnectError" in status["last_error"]

    with receiver:
        drive(outbox, state_is(outbox, msg_id, "delivered"))
        assert [e.msg_id for e in receiver.events] == [msg_id]
        assert receiver.events[0].verified
    assert outbox.status(msg_id)["attempts"] == 2


def test_slow_receiver_times_out_and_is_retried(make_outbox: MakeOutbox, receiver: WebhookReceiver) -> None:
    outbox = make_outbox(timeout_s=0.2, retry_schedule_s=(0, 0.05))
    receiver.script(Reply(200, delay_s=0.6))
    msg_id = enqueue(outbox, receiver.url)
    assert outbox.dispatch_due() == 1
    assert "Timeout" in outbox.status(msg_id)["last_error"]
    drive(outbox, state_is(outbox, msg_id, "delivered"))
    assert [e.msg_id for e in receiver.events] == [msg_id, msg_id]


def test_retry_after_longer_than_schedule_is_honoured(
    make_outbox: MakeOutbox, receiver: WebhookReceiver
) -> None:
    clock = ShiftedClock()
    outbox = make_outbox(retry_schedule_s=(0, 0.05), clock=clock)
    receiver.script(Reply(429, headers={"retry-after": "30"}))
    msg_id = enqueue(outbox, receiver.url)
    assert outbox.dispatch_due() == 1
    status = outbox.status(msg_id)
    assert (status["state"], status["last_status"]) == ("pending", 429)
    assert status["next_attempt_at"] - clock() > 29
    time.sleep(0.1)
    assert outbox.dispatch_due() == 0
    clock.shift = 31
    assert outbox.dispatch_due() == 1
    assert outbox.status(msg_id)["state"] == "delivered"


def test_new_outbox_after_restart_delivers_pending(
    make_outbox: MakeOutbox, receiver: WebhookReceiver
) -> None:
    before = make_outbox(retry_schedule_s=(0, 0.1, 0.1))
    receiver.script(503)
    msg_id = enqueue(before, receiver.url)
    assert before.dispatch_due() == 1
    before.close()  # the process "dies"; the message stays in Redis

    after = make_outbox(retry_schedule_s=(0, 0.1, 0.1))
    drive(after, state_is(after, msg_id, "delivered"))
    first, second = receiver.events
    assert first.msg_id == second.msg_id == msg_id
    assert first.raw_body == second.raw_body and second.verified


def test_claim_of_a_dispatcher_that_died_expires(make_outbox: MakeOutbox, receiver: WebhookReceiver) -> None:
    crashed = make_outbox(timeout_s=2.0)
    msg_id = enqueue(crashed, receiver.url)
    assert crashed._claim(msg_id) is not None  # claimed; then the process dies before sending
    clock = ShiftedClock()
    survivor = make_outbox(clock=clock)
    assert survivor.dispatch_due() == 0  # still leased to the dead dispatcher
    clock.shift = 4 * 2.0 + 30 + 1  # past the lease (4 x timeout + 30 s)
    assert survivor.dispatch_due() == 1
    status = survivor.status(msg_id)
    assert (status["state"], status["attempts"]) == ("delivered", 2)
    assert [e.msg_id for e in receiver.events] == [msg_id]


def test_unsafe_url_is_refused_without_a_request(make_outbox: MakeOutbox, receiver: WebhookReceiver) -> None:
    outbox = make_outbox(allow_private=False)
    msg_id = enqueue(outbox, receiver.url)
    assert outbox.dispatch_due() == 1
    status = outbox.status(msg_id)
    assert (status["state"], status["last_status"]) == ("dead", None)
    assert "private_address" in status["last_error"]
    time.sleep(0.05)
    assert receiver.events == []


def test_dns_that_turns_private_kills_the_message(make_outbox: MakeOutbox, receiver: WebhookReceiver) -> None:
    dns = FakeResolver({})
    outbox = make_outbox(allow_private=False, resolver=dns, retry_schedule_s=(0, 0.05, 0.05))
    msg_id = enqueue(outbox, receiver.url_for("hooks.example.test"))
    assert outbox.dispatch_due() == 1
    assert outbox.status(msg_id)["state"] == "pending"  # DNS failure: retried
    assert "unresolvable_host" in outbox.status(msg_id)["last_error"]
    dns.answers["hooks.example.test"] = ["93.184.216.34", "10.0.0.7"]
    drive(outbox, lambda: outbox.status(msg_id)["state"] != "pending")
    assert outbox.status(msg_id)["state"] == "dead"
    assert "10.0.0.7" in outbox.status(msg_id)["last_error"]
    assert receiver.events == []


def test_request_goes_to_the_checked_address(make_outbox: MakeOutbox, receiver: WebhookReceiver) -> None:
    """The host name is resolved once, by the guard; the connection uses that address."""
    dns = FakeResolver({})
    outbox = make_outbox(resolver=dns, retry_schedule_s=(0, 0.05))
    msg_id = enqueue(outbox, receiver.url_for("hooks.example.test"))
    assert outbox.dispatch_due() == 1  # unresolvable: retried later
    dns.answers["hooks.example.test"] = ["127.0.0.1"]
    drive(outbox, state_is(outbox, msg_id, "delivered"))
    [event] = receiver.events
    assert event.headers["host"] == f"hooks.example.test:{receiver.port}"
    assert event.verified


def test_https_delivery_to_pinned_address_checks_the_certificate_name(
    make_outbox: MakeOutbox, tmp_path: Path
) -> None:
    dns = FakeResolver({"localhost": ["127.0.0.1"]})
    outbox = make_outbox(resolver=dns, verify=localhost_client_context())
    with WebhookReceiver(SECRET, tls_dir=tmp_path) as receiver:
        msg_id = enqueue(outbox, receiver.url_for("localhost"))
        assert outbox.dispatch_due() == 1
        assert outbox.status(msg_id)["state"] == "delivered", outbox.status(msg_id)["last_error"]
        [event] = receiver.events
        assert event.verified and event.headers["host"] == f"localhost:{receiver.port}"

        bad_name = enqueue(outbox, receiver.url, job_id="job-2")  # https://127.0.0.1: cert is for localhost
        assert outbox.dispatch_due() == 1
        assert "ConnectError" in outbox.status(bad_name)["last_error"]
        assert len(receiver.events) == 1


def test_two_dispatchers_never_send_a_message_twice(
    make_outbox: MakeOutbox, receiver: WebhookReceiver
) -> None:
    first, second = make_outbox(), make_outbox()
    receiver.script(*[Reply(200, delay_s=0.005)] * 80)
    ids = []
    for n in range(20):
        for event_type in ("job.started", "job.completed"):
            ids.append(enqueue(first, receiver.url, event_type, job_id=f"job-{n}"))
    with dispatching(first, second):
        receiver.wait_for(len(ids), timeout=10)
        time.sleep(0.2)  # room for a duplicate to show up

    events = receiver.events
    assert Counter(e.msg_id for e in events) == Counter(ids)
    assert all(e.verified for e in events)
    for n in range(20):
        job_types = [e.body["type"] for e in events if e.body["data"]["job_id"] == f"job-{n}"]
        assert job_types == ["job.started", "job.completed"]
    assert all(first.status(msg_id)["attempts"] == 1 for msg_id in ids)


def test_concurrent_dispatch_due_claims_each_message_once(
    make_outbox: MakeOutbox, receiver: WebhookReceiver
) -> None:
    outboxes = [make_outbox() for _ in range(4)]
    ids = [enqueue(outboxes[0], receiver.url, job_id=f"job-{n}") for n in range(30)]
    barrier = threading.Barrier(len(outboxes))
    counts: list[int] = []

    def run(outbox: WebhookOutbox) -> None:
        barrier.wait()
        counts.append(outbox.dispatch_due())

    threads = [threading.Thread(target=run, args=(outbox,)) for outbox in outboxes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sum(counts) == len(ids)
    assert sorted(e.msg_id for e in receiver.events) == sorted(ids)


def test_payload_is_serialized_once_at_enqueue(make_outbox: MakeOutbox, receiver: WebhookReceiver) -> None:
    outbox = make_outbox()
    data = {"job_id": "job-1", "progress": 1.0}
    msg_id = enqueue(outbox, receiver.url, data=data)
    data["progress"] = 0.0  # later changes to the caller's dict do not leak into the message
    outbox.dispatch_due()
    [event] = receiver.events
    assert json.loads(event.raw_body)["data"] == {"job_id": "job-1", "progress": 1.0}
    assert event.msg_id == msg_id


def test_enqueue_rejects_bad_input(make_outbox: MakeOutbox) -> None:
    outbox = make_outbox()
    with pytest.raises(ValueError, match="secret"):
        outbox.enqueue(
            tenant="t", job_id="j", url="https://x", secret="whsec_", event_type="e", data={}, terminal=True
        )
    with pytest.raises(ValueError, match="links"):
        enqueue(outbox, "https://hooks.example.com/", data={"blob": "x" * 70_000})
    with pytest.raises(ValueError):
        enqueue(outbox, "https://hooks.example.com/", data={"bad": float("nan")})
    with pytest.raises(KeyError):
        outbox.status("msg_unknown")


def test_run_forever_survives_errors(redis_url: str, receiver: WebhookReceiver) -> None:
    client = redis.Redis.from_url(redis_url)
    no_retry = Retry(NoBackoff(), 0)
    broken = redis.Redis(port=free_port(), socket_connect_timeout=0.2, retry=no_retry)  # nothing listens
    outboxes = [WebhookOutbox(client, allow_private=True), WebhookOutbox(broken)]
    try:
        msg_id = enqueue(outboxes[0], receiver.url)
        with dispatching(*outboxes):
            receiver.wait_for(1)
            time.sleep(0.1)
        assert outboxes[0].status(msg_id)["state"] == "delivered"
    finally:
        for outbox in outboxes:
            outbox.close()
        client.close()
        broken.close()


def test_default_schedule_is_standard_webhooks(redis_url: str, tmp_path: Path) -> None:
    assert DEFAULT_RETRY_SCHEDULE_S == STANDARD_WEBHOOKS_SCHEDULE_S
    settings = load_settings(redis_url=redis_url, data_dir=tmp_path)
    assert settings.webhook_retry_schedule_s == list(STANDARD_WEBHOOKS_SCHEDULE_S)
    assert settings.webhook_retry_jitter == 0.1
    services = build_services(settings)  # the outbox the API and the workers use
    try:
        assert services.outbox.retry_schedule_s == STANDARD_WEBHOOKS_SCHEDULE_S
        assert services.outbox.jitter == 0.1
        msg_id = enqueue(services.outbox, "https://hooks.example.com/")
        assert services.outbox.status(msg_id)["max_attempts"] == len(STANDARD_WEBHOOKS_SCHEDULE_S)
    finally:
        services.outbox.close()
        services.redis.close()


def test_jitter_fraction_comes_from_settings(redis_url: str, tmp_path: Path) -> None:
    settings = load_settings(redis_url=redis_url, data_dir=tmp_path, webhook_retry_jitter=0.25)
    services = build_services(settings)
    try:
        assert services.outbox.jitter == 0.25
    finally:
        services.outbox.close()
        services.redis.close()


@pytest.mark.parametrize("jitter", [0.1, 0.3])
def test_backoff_is_jittered_within_the_fraction(redis_url: str, jitter: float) -> None:
    client = redis.Redis.from_url(redis_url)
    outbox = WebhookOutbox(client, jitter=jitter, rng=random.Random(1234))
    try:
        for attempts, planned in enumerate(STANDARD_WEBHOOKS_SCHEDULE_S[1:], start=1):
            delays = [outbox._backoff(attempts, None) for _ in range(500)]
            assert all(planned * (1 - jitter) <= d <= planned * (1 + jitter) for d in delays), planned
            assert len(set(delays)) > 400  # jittered, not one fixed delay
            # spread over the whole band, on both sides of the planned delay
            assert min(delays) < planned * (1 - 0.8 * jitter) and max(delays) > planned * (1 + 0.8 * jitter)
        assert outbox._backoff(1, 60.0) == 60.0  # a longer Retry-After wins over the jittered 5 s
    finally:
        outbox.close()
        client.close()


def test_no_jitter_gives_the_exact_schedule(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    outbox = WebhookOutbox(client, jitter=0)
    try:
        for attempts, planned in enumerate(STANDARD_WEBHOOKS_SCHEDULE_S[1:], start=1):
            assert {outbox._backoff(attempts, None) for _ in range(20)} == {planned}
    finally:
        outbox.close()
        client.close()


def test_failed_deliveries_are_rescheduled_with_jitter(
    make_outbox: MakeOutbox, receiver: WebhookReceiver
) -> None:
    """The delays actually stored after failed attempts spread over planned +-10 %."""
    now = time.time()
    outbox = make_outbox(retry_schedule_s=(0, 100.0), jitter=0.1, clock=lambda: now)
    receiver.script(*[503] * 40)
    ids = [enqueue(outbox, receiver.url, job_id=f"job-{i}") for i in range(40)]
    assert outbox.dispatch_due() == 40
    delays = [outbox.status(msg_id)["next_attempt_at"] - now for msg_id in ids]
    assert all(90.0 - 1e-6 <= d <= 110.0 + 1e-6 for d in delays), delays
    assert max(delays) - min(delays) > 10.0, delays  # 40 uniform draws span over half the band
