"""An idle worker stops promptly and cleanly, wherever the stop request lands (real Redis, real process)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import redis
from rq.serializers import JSONSerializer
from rq.worker import WorkerStatus

from service.job_queue import make_queue
from service.settings import Settings
from tests.support.processes import VsrProcess
from worker.rq_worker import STOP_CHECK_SECONDS, ThreadWorker, VSRWorker


def idle_worker(redis_url: str, cls: type[VSRWorker] = VSRWorker) -> VSRWorker:
    connection = redis.Redis.from_url(redis_url)
    queue = make_queue(connection, Settings(redis_url=redis_url))
    return cls([queue], connection=connection, serializer=JSONSerializer, name=f"shutdown-{time.time_ns()}")


def test_unsubscribing_does_not_wait_for_the_pubsub_listener_sleep(redis_url: str) -> None:
    """RQ's pubsub listener, once unsubscribed, sleeps up to 60 s for a subscription, and teardown joined
    it. The listener wins that race when another thread holds the GIL, as a worker's own threads do."""
    worker = idle_worker(redis_url)
    spinning = threading.Event()
    spinning.set()

    def spin() -> None:
        while spinning.is_set():
            sum(range(1000))

    threading.Thread(target=spin, daemon=True).start()
    try:
        for _ in range(8):
            worker.subscribe()
            listener = worker.pubsub_thread
            assert listener is not None
            time.sleep(0.2)  # the listener is parked reading its connection
            teardown = threading.Thread(target=worker.unsubscribe, daemon=True)
            teardown.start()
            teardown.join(5)
            assert not teardown.is_alive() and not listener.is_alive()
    finally:
        spinning.clear()


def test_an_idle_worker_sees_a_stop_request_that_raised_nothing(redis_url: str) -> None:
    """A stop flag alone (a StopRequested lost in a broad `except`, or the embedded worker's quiet stop)
    ends the wait for jobs at the next BLPOP slice instead of after RQ's 405 s."""
    worker = idle_worker(redis_url, ThreadWorker)
    assert isinstance(worker, ThreadWorker)
    loop = threading.Thread(target=worker.work, kwargs={"logging_level": "WARNING"}, daemon=True)
    loop.start()
    deadline = time.monotonic() + 30
    while worker.get_state() != WorkerStatus.IDLE and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # inside its BLPOP
    worker.request_stop_quietly()
    loop.join(STOP_CHECK_SECONDS + 10)
    assert not loop.is_alive()
    assert not redis.Redis.from_url(redis_url).smembers("rq:workers")  # it unregistered on the way out


def test_sigterm_right_after_registration_stops_the_worker_cleanly(redis_url: str, tmp_path: Path) -> None:
    """`vsr worker` signalled as soon as it registers and once settled: each exits 0 promptly (the
    preStop drain waits for that) and leaves no registration behind."""
    client = redis.Redis.from_url(redis_url)
    env = {"VSR_REDIS_URL": redis_url, "VSR_DATA_DIR": str(tmp_path / "data")}
    for settle_s in (0.0, 1.0):
        worker = VsrProcess(["worker"], env, tmp_path / f"worker-{settle_s}.log").start()
        try:
            deadline = time.monotonic() + 120
            while not client.smembers("rq:workers"):
                assert worker.alive() and time.monotonic() < deadline, worker.tail()
                time.sleep(0.01)
            time.sleep(settle_s)
            assert worker.stop(signal.SIGTERM, timeout=STOP_CHECK_SECONDS + 15) == 0, worker.tail()
        finally:
            worker.stop(signal.SIGKILL)
        assert not client.smembers("rq:workers"), worker.tail()
