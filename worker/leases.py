"""Keeping hold of a job while working on it: a lease renewed from a background thread, and retries
with backoff for the storage and Redis calls a job cannot do without."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from service.jobs import JobStore, Owner
from service.storage import StorageError

log = logging.getLogger(__name__)
T = TypeVar("T")


class Heartbeat:
    """Renews `owner`'s lease on a job every lease_s / 3; `lost` is set once the lease is gone
    (expired during a stall or a Redis outage, or the job was reaped), and the worker must stop."""

    def __init__(self, store: JobStore, job_id: str, owner: Owner, lease_s: float) -> None:
        self.store, self.job_id, self.owner, self.lease_s = store, job_id, owner, lease_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.lease_s)

    def _run(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                if not self.store.renew_lease(self.job_id, self.owner, self.lease_s):
                    log.warning("job %s: lease lost by %s", self.job_id, self.owner)
                    self.lost.set()
                    return
            except redis.RedisError as exc:  # keep trying: the lease may still be alive when Redis returns
                log.warning("job %s: cannot renew lease: %s", self.job_id, exc)


def with_backoff(
    action: Callable[[], T],
    *,
    retry_on: Callable[[BaseException], bool],
    budget_s: float,
    what: str,
    base_s: float = 0.5,
    cap_s: float = 15.0,
) -> T:
    """Run `action`, retrying errors `retry_on` accepts with jittered exponential backoff for up to
    `budget_s` seconds; then the last error propagates."""
    deadline = time.monotonic() + budget_s
    delay = base_s
    while True:
        try:
            return action()
        except Exception as exc:
            remaining = deadline - time.monotonic()
            if not retry_on(exc) or remaining <= 0:
                raise
            pause = min(delay * random.uniform(0.5, 1.5), cap_s, remaining)
            log.warning("%s failed (%s); retrying in %.1f s", what, exc, pause)
            time.sleep(pause)
            delay *= 2


def storage_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, StorageError) and exc.code == "storage_unavailable"


def redis_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, redis.ConnectionError | redis.TimeoutError)
