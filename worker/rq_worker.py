"""`vsr worker`: a non-forking RQ worker that loads the model once and keeps it loaded.

It also serves its own Prometheus metrics and runs a webhook dispatcher thread. SimpleWorker, not the
forking Worker: a CUDA context cannot cross a fork, and an engine must not be reloaded per job.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid

from prometheus_client import start_http_server
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from rq.timeouts import TimerDeathPenalty

from service.container import Services, build_services
from service.settings import Settings
from worker.runtime import WorkerRuntime, install_runtime

log = logging.getLogger(__name__)


class VSRWorker(SimpleWorker):
    """Runs jobs in this process (model stays loaded)."""


class ThreadWorker(VSRWorker):
    """A VSRWorker that runs in a background thread (embedded mode): no signal handlers, timer timeouts."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        pass


def worker_name() -> str:
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


def prepare_runtime(services: Services, name: str) -> WorkerRuntime:
    """Load the default model now, so the first job does not pay for it, and install the runtime."""
    runtime = WorkerRuntime(services, name)
    runtime.model(services.settings.default_model)
    install_runtime(runtime)
    return runtime


def make_worker(services: Services, name: str, cls: type[VSRWorker] = VSRWorker) -> VSRWorker:
    return cls([services.queue], connection=services.redis, serializer=JSONSerializer, name=name)


def start_dispatcher(services: Services, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(
        target=services.outbox.run_forever, args=(stop,), name="webhook-dispatcher", daemon=True
    )
    thread.start()
    return thread


def run_worker(settings: Settings, *, burst: bool = False) -> None:
    """Serve jobs until SIGTERM/SIGINT (warm shutdown: the current job finishes first)."""
    services = build_services(settings)
    name = worker_name()
    prepare_runtime(services, name)
    if settings.worker_metrics_port is not None:
        start_http_server(settings.worker_metrics_port, addr="0.0.0.0", registry=services.metrics.registry)
        log.info("worker metrics on :%d/metrics", settings.worker_metrics_port)
    stop = threading.Event()
    dispatcher = start_dispatcher(services, stop)
    try:
        make_worker(services, name).work(burst=burst, logging_level="INFO", with_scheduler=False)
    finally:
        stop.set()
        dispatcher.join(5)
