"""`vsr worker`: a non-forking RQ worker that loads the model once and keeps it loaded.

Beside the job loop it serves Prometheus metrics and runs a webhook dispatcher and a reaper thread.
SimpleWorker, not the forking Worker: a CUDA context cannot cross a fork, and an engine must not be
reloaded per job. SIGTERM (or SIGINT) asks the current job to go back to the queue at its next chunk
(`VSR_SHUTDOWN=requeue`, the default) or to finish (`finish`); a second signal stops at once. An idle
worker exits within `STOP_CHECK_SECONDS` of the signal, wherever it lands. A Redis outage does not end the
process: the job loop is restarted once Redis answers again.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import uuid
from types import FrameType
from typing import Any

import redis
from prometheus_client import start_http_server
from rq import Queue, SimpleWorker
from rq.exceptions import StopRequested
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.timeouts import TimerDeathPenalty

from service.background import start_background
from service.connections import redis_client
from service.container import Services, build_services
from service.job_queue import make_queue
from service.settings import Settings
from worker.allocator import allocator_advice, malloc_library
from worker.runtime import WorkerRuntime, install_runtime

log = logging.getLogger(__name__)

STOP_CHECK_SECONDS = 5  # an idle worker waits for jobs in BLPOPs this long, then looks for a stop request


class VSRWorker(SimpleWorker):
    """Runs jobs in this process (the model stays loaded); tells the running job about a shutdown.

    RQ stops an idle worker by raising StopRequested from the signal handler, wherever the main thread
    is. Three gaps of RQ 3.0 with redis-py 8 are closed here: a signal between registering and RQ's
    handler install killed the process; a StopRequested swallowed by a broad `except` left it in a
    405 s BLPOP; and teardown joined the pubsub listener for up to its 60 s sleep.
    """

    runtime: WorkerRuntime | None = None

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        if self.runtime is not None:
            self.runtime.shutdown_requested.set()
        self._stop_requested = True  # seen at the next BLPOP slice even if StopRequested gets lost
        super().request_stop(signum, frame)

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        """Handle SIGTERM/SIGINT from before the worker registers, so no signal finds the default handler."""
        self._install_signal_handlers()
        with contextlib.suppress(StopRequested):  # the loop sees _stop_requested first and tears down
            super().bootstrap(*args, **kwargs)

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        """Wait for a job in BLPOPs of STOP_CHECK_SECONDS; None once a stop is requested."""
        if timeout is None or max_idle_time is not None:  # burst mode, or the caller's own idle limit
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        while not self._stop_requested:
            result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time=STOP_CHECK_SECONDS)
            if result is not None:
                return result
        return None

    def unsubscribe(self) -> None:
        """RQ unsubscribes, then stops the pubsub listener and joins it; unsubscribed, the listener first
        sleeps up to 60 s waiting for a subscription. Stopping it first lets the unsubscribe reply end it."""
        if self.pubsub_thread is not None:
            self.pubsub_thread.stop(timeout=0)  # clears its run flag; does not wait
        super().unsubscribe()


class ThreadWorker(VSRWorker):
    """A VSRWorker that runs in a background thread (embedded mode): no signal handlers, timer timeouts."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        pass

    def request_stop_quietly(self) -> None:
        """Stop after the current job (which re-queues itself at its next chunk)."""
        if self.runtime is not None:
            self.runtime.shutdown_requested.set()
        self._stop_requested = True


def worker_name() -> str:
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


def prepare_runtime(services: Services, name: str) -> WorkerRuntime:
    """Load the default model now, so the first job does not pay for it, and install the runtime."""
    malloc = malloc_library()
    advice = allocator_advice(services.settings.device, malloc)
    if advice:
        log.warning(advice)
    else:
        log.info("malloc: %s", malloc)
    runtime = WorkerRuntime(services, name)
    runtime.model(services.settings.default_model)
    install_runtime(runtime)
    return runtime


def make_worker(services: Services, runtime: WorkerRuntime, cls: type[VSRWorker] = VSRWorker) -> VSRWorker:
    connection = redis_client(services.settings, blocking=True)  # dequeue blocks longer than a request
    queue = make_queue(connection, services.settings)
    worker = cls([queue], connection=connection, serializer=JSONSerializer, name=runtime.name)
    worker.runtime = runtime
    return worker


def wait_for_redis(client: redis.Redis, stop: threading.Event) -> None:
    delay = 0.5
    while not stop.is_set():
        try:
            client.ping()
            return
        except redis.RedisError as exc:
            log.warning("redis unavailable (%s); retrying in %.1f s", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10)


def run_worker(settings: Settings, *, burst: bool = False) -> None:
    """Serve jobs until SIGTERM/SIGINT."""
    services = build_services(settings)
    runtime = prepare_runtime(services, worker_name())
    if settings.worker_metrics_port is not None:
        start_http_server(settings.worker_metrics_port, addr="0.0.0.0", registry=services.metrics.registry)
        log.info("worker metrics on :%d/metrics", settings.worker_metrics_port)
    stop = threading.Event()
    threads = start_background(services, stop)
    try:
        while not runtime.shutdown_requested.is_set():
            worker = make_worker(services, runtime)
            worker.work(burst=burst, logging_level="INFO", with_scheduler=False)
            if burst or runtime.shutdown_requested.is_set():
                break
            log.warning("the job loop ended (Redis lost?); restarting it when Redis answers")
            wait_for_redis(services.redis, runtime.shutdown_requested)
            runtime.name = worker_name()  # a fresh RQ worker registration
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
