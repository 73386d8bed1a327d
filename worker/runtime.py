"""What a worker process loads once and keeps: its services and its models."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from engines.base import EngineError
from engines.pipeline import EngineSet, load_engines
from models.registry import resolve_model
from service.container import Services

log = logging.getLogger(__name__)


@dataclass
class WorkerRuntime:
    services: Services
    name: str
    shutdown_requested: threading.Event = field(default_factory=threading.Event)
    active_job: str | None = None  # the job being processed right now, if any
    _models: dict[str, EngineSet] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def model(self, name: str) -> EngineSet:
        """The named model's engines (settings.engine picks the backend), loaded once on first use.

        Raises `EngineError` when they cannot load (e.g. a TensorRT plan that does not deserialize): the
        worker loads its default model before serving, so it refuses to start.
        """
        with self._lock:
            if name not in self._models:
                settings = self.services.settings
                model_dir = settings.model_dir if name == settings.default_model else None
                loaded = resolve_model(model_dir, name)
                try:
                    engines = load_engines(loaded.model, settings.engine, settings.device)
                except EngineError:
                    log.error("model %s: its engines cannot load; refusing to serve it", name)
                    raise
                log.info("loaded model %s: %s; engines: %s", name, loaded.description, engines.description)
                self._models[name] = engines
            return self._models[name]

    def drain(self, timeout_s: float) -> bool:
        """Ask the running job to go back to the queue at its next chunk; wait until none runs."""
        self.shutdown_requested.set()
        deadline = time.monotonic() + timeout_s
        while self.active_job is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.active_job is None


_current: WorkerRuntime | None = None


def install_runtime(runtime: WorkerRuntime) -> None:
    """Make `runtime` the one RQ job functions of this process use."""
    global _current
    _current = runtime


def current_runtime() -> WorkerRuntime:
    if _current is None:
        raise RuntimeError("no worker runtime installed: start workers with `vsr worker`")
    return _current
