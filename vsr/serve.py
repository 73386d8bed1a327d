"""`vsr serve`: the API, plus (embedded mode: no Redis URL) one in-process worker on the same
in-process Redis substitute and local storage. `ServiceThreads` runs the same in the background."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
import uvicorn

from service.api.app import create_app
from service.container import Services, build_services
from service.settings import Settings, TenantConfig
from service.tenants import generate_api_key, hash_api_key
from service.webhook_signing import generate_secret

if TYPE_CHECKING:
    from worker.rq_worker import ThreadWorker

log = logging.getLogger(__name__)
LOCAL_TENANT = "local"


def with_local_tenant(settings: Settings) -> tuple[Settings, str | None]:
    """With no tenants configured, add a `local` tenant with a fresh API key (returned, else None)."""
    if settings.tenants:
        return settings, None
    key = generate_api_key()
    tenant = TenantConfig(
        id=LOCAL_TENANT, api_key_sha256=[hash_api_key(key)], webhook_secret=generate_secret()
    )
    return settings.model_copy(update={"tenants": [tenant]}), key


def save_api_key(settings: Settings, key: str) -> None:
    path = settings.data_dir / "api-key"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(key + "\n")
    path.chmod(0o600)


def start_embedded_worker(services: Services) -> ThreadWorker:
    """One worker thread in this process (embedded mode only: the API alone never imports torch)."""
    from worker.rq_worker import ThreadWorker, make_worker, prepare_runtime, worker_name

    runtime = prepare_runtime(services, worker_name())
    worker = make_worker(services, runtime, ThreadWorker)
    assert isinstance(worker, ThreadWorker)
    services.embedded_worker = worker
    thread = threading.Thread(
        target=worker.work, kwargs={"logging_level": "WARNING"}, name="embedded-worker", daemon=True
    )
    thread.start()
    return worker


@dataclass
class ServiceThreads:
    """The whole service in background threads of this process (the demo and tests use it)."""

    settings: Settings
    host: str = "127.0.0.1"
    port: int = 8000
    services: Services = field(init=False)
    _server: uvicorn.Server = field(init=False)
    _thread: threading.Thread = field(init=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServiceThreads:
        self.services = build_services(self.settings)
        if self.settings.embedded:
            start_embedded_worker(self.services)
        config = uvicorn.Config(
            create_app(self.services), host=self.host, port=self.port, log_level="warning"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise TimeoutError(f"the API did not come up on {self.url}")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        drain_embedded_worker(self.services)


def drain_embedded_worker(services: Services, timeout_s: float = 60) -> None:
    """Let the embedded worker put its running job back in the queue before the process exits (a
    thread killed inside torch at interpreter exit can abort the process)."""
    worker = getattr(services, "embedded_worker", None)
    if worker is not None and worker.runtime is not None:
        worker.request_stop_quietly()
        if not worker.runtime.drain(timeout_s):
            log.warning("the embedded worker did not stop its job within %.0f s", timeout_s)


def serve(settings: Settings, host: str, port: int) -> None:
    """Run until interrupted."""
    if not settings.embedded and not settings.tenants:
        raise SystemExit("vsr: error: bad_settings: configure tenants (VSR_TENANTS or VSR_TENANTS_FILE)")
    settings, key = with_local_tenant(settings)
    if key is not None:
        save_api_key(settings, key)
        print(f"no tenants configured: tenant '{LOCAL_TENANT}' gets API key {key}", file=sys.stderr)
        print(f"(saved to {settings.data_dir / 'api-key'})", file=sys.stderr)
    services = build_services(settings)
    if settings.embedded:
        start_embedded_worker(services)
        print("embedded mode: in-process Redis substitute, local storage, one worker", file=sys.stderr)
    # uvicorn re-raises the SIGTERM/SIGINT it handled once it has shut down; a no-op handler of ours
    # receives it instead of the default one (which would kill the process before the worker drains).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: None)
    try:
        uvicorn.run(create_app(services), host=host, port=port, log_level="info")
    finally:
        drain_embedded_worker(services)
