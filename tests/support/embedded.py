"""Running the embedded service (`ServiceThreads`: API + worker thread) in the test process.

Two things to respect while `ServiceThreads.stop()` stops only the API:
- every embedded service in a process shares one Redis substitute: give each its own key prefix and
  queue (`isolated`), so a stopped service's worker thread never takes another one's jobs;
- the process must not exit while a worker thread is inside a job (torch aborts the interpreter's
  exit: "terminate called without an active exception", status 134): `drain` before stopping.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from tests.support.ports import free_port
from vsr.client import VsrClient


def isolated(name: str) -> dict[str, str]:
    """Settings overrides: a key prefix and queue name of this service's own."""
    unique = f"{name}{free_port()}"
    return {"key_prefix": unique, "queue_name": unique}


def drain(url: str, api_keys: Iterable[str], timeout: float = 120.0) -> None:
    """Wait until no job of these tenants is queued or processing."""
    deadline = time.monotonic() + timeout
    for key in api_keys:
        with VsrClient(url, key) as client:
            for job in [j for j in client.list() if not j.terminal]:
                client.wait(job.id, timeout=max(1.0, deadline - time.monotonic()), max_interval_s=0.5)
