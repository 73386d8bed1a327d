"""What a worker process loads once and keeps: its services and its models."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from models.registry import resolve_model
from models.sr_model import VSRModel
from service.container import Services

log = logging.getLogger(__name__)


@dataclass
class WorkerRuntime:
    services: Services
    name: str
    shutdown_requested: threading.Event = field(default_factory=threading.Event)
    _models: dict[str, VSRModel] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def model(self, name: str) -> VSRModel:
        """The named model, loaded on first use and kept on the configured device."""
        with self._lock:
            if name not in self._models:
                settings = self.services.settings
                model_dir = settings.model_dir if name == settings.default_model else None
                loaded = resolve_model(model_dir, name)
                log.info("loaded model %s: %s", name, loaded.description)
                self._models[name] = loaded.model.to(settings.device).eval()
            return self._models[name]


_current: WorkerRuntime | None = None


def install_runtime(runtime: WorkerRuntime) -> None:
    """Make `runtime` the one RQ job functions of this process use."""
    global _current
    _current = runtime


def current_runtime() -> WorkerRuntime:
    if _current is None:
        raise RuntimeError("no worker runtime installed: start workers with `vsr worker`")
    return _current
