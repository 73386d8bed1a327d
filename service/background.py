"""The background duties every API and worker process shares: webhook delivery and the job reaper."""

from __future__ import annotations

import threading

from service.container import Services
from service.reaper import JobReaper


def start_background(services: Services, stop: threading.Event) -> list[threading.Thread]:
    """Start the webhook dispatcher and the reaper as daemon threads; they end when `stop` is set."""
    threads = [
        threading.Thread(target=services.outbox.run_forever, args=(stop,), name="webhooks", daemon=True),
        threading.Thread(target=JobReaper(services).run_forever, args=(stop,), name="reaper", daemon=True),
    ]
    for thread in threads:
        thread.start()
    return threads
