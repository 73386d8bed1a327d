"""Receiving the service's webhooks (Standard Webhooks): verify, parse, deduplicate, or listen.

- `WebhookVerifier(secrets, tolerance_s)`: checks a request (constant-time HMAC comparison, several
  `v1,` signatures and several secrets for key rotation, timestamp tolerance both ways) and returns
  the parsed `WebhookEvent`. The checks are `service.webhook_signing.verify`'s.
- `SeenIds`: remembers `webhook-id`s, since a retried delivery repeats the id (deduplicate on it).
- `WebhookListener`: a small threaded HTTP receiver built on both, for scripts, tests and
  `VsrClient.wait_for_webhook`. See examples/webhook_receiver.py for a receiver to copy.

Only the standard library is used (no torch, no web framework).
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from service.webhook_signing import (
    DEFAULT_TOLERANCE_S,
    HEADER_ID,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    WebhookVerificationError,
    generate_secret,
    sign,
    signature_headers,
    verify,
)

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "HEADER_ID",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "SeenIds",
    "WebhookEvent",
    "WebhookListener",
    "WebhookVerificationError",
    "WebhookVerifier",
    "generate_secret",
    "sign",
    "signature_headers",
    "verify",
]

MAX_BODY_BYTES = 1024 * 1024
EVENT_TYPES = ("job.started", "job.progress", "job.completed")


@dataclass(frozen=True)
class WebhookEvent:
    """One verified delivery: its `webhook-id`, signed timestamp, and JSON payload."""

    id: str
    timestamp: int
    payload: Any
    raw: bytes

    @property
    def type(self) -> str | None:
        """`job.started`, `job.progress` or `job.completed` for this service's events."""
        value = self.payload.get("type") if isinstance(self.payload, dict) else None
        return value if isinstance(value, str) else None

    @property
    def data(self) -> dict[str, Any]:
        """The job, as `GET /v1/jobs/{id}` shows it (output URL: the API's result route)."""
        value = self.payload.get("data") if isinstance(self.payload, dict) else None
        return value if isinstance(value, dict) else {}

    @property
    def job_id(self) -> str | None:
        value = self.data.get("id")
        return value if isinstance(value, str) else None


class WebhookVerifier:
    """Verify requests signed with any of `secrets` (old and new during a key rotation)."""

    def __init__(self, secrets: str | Sequence[str], *, tolerance_s: float = DEFAULT_TOLERANCE_S) -> None:
        self.secrets = [secrets] if isinstance(secrets, str) else list(secrets)
        if not self.secrets:
            raise ValueError("no webhook secret given")
        for secret in self.secrets:
            sign(secret, "check", 0, b"")  # a malformed secret fails now (ValueError), not on delivery
        self.tolerance_s = tolerance_s

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: float | None = None) -> WebhookEvent:
        """The event, if one signature matches and the timestamp is within tolerance; else raise
        WebhookVerificationError. `body` must be the raw bytes received."""
        verify(self.secrets, headers, body, tolerance_s=self.tolerance_s, now=now)
        lowered = {name.lower(): value for name, value in headers.items()}
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise WebhookVerificationError("the body is not JSON") from exc
        return WebhookEvent(lowered[HEADER_ID], int(lowered[HEADER_TIMESTAMP]), payload, bytes(body))


class SeenIds:
    """Webhook ids seen in the last `ttl_s` seconds (at most `max_ids`), for deduplication.

    Standard Webhooks retries reuse the `webhook-id`: `add(id)` returns False for a repeat. Call
    `discard(id)` when handling failed, so that the sender's retry is processed."""

    def __init__(self, ttl_s: float = 24 * 3600.0, max_ids: int = 100_000) -> None:
        self.ttl_s, self.max_ids = ttl_s, max_ids
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, msg_id: str) -> bool:
        """Record `msg_id`; True if it is new (process it), False if seen before (skip it)."""
        now = time.monotonic()
        with self._lock:
            while self._seen and (
                len(self._seen) >= self.max_ids or next(iter(self._seen.values())) < now - self.ttl_s
            ):
                self._seen.popitem(last=False)
            if msg_id in self._seen:
                return False
            self._seen[msg_id] = now
            return True

    def discard(self, msg_id: str) -> None:
        with self._lock:
            self._seen.pop(msg_id, None)

    def __contains__(self, msg_id: object) -> bool:
        with self._lock:
            return msg_id in self._seen


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        listener = self.server.listener
        length = self.headers.get("content-length", "")
        if not length.isdigit():
            self._reply(411)
            return
        if int(length) > MAX_BODY_BYTES:
            self._reply(413)
            self.close_connection = True
            return
        raw = self.rfile.read(int(length))
        if self.path.split("?")[0] != listener.path:
            self._reply(404)
            return
        self._reply(listener.receive(dict(self.headers.items()), raw))

    def _reply(self, status: int) -> None:
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """No per-request access log."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    listener: WebhookListener


class WebhookListener:
    """A verifying webhook receiver on `host:port` (threads of this process) that keeps the events.

    Deliveries that fail verification get 401 and are counted in `rejected`; repeats of a
    `webhook-id` get 200 but are kept once. `on_event` (optional) runs for each new event; if it
    raises, the delivery gets 500 and the sender retries it. `public_url` is the URL to give the
    service when the listener is reachable under another name (a tunnel, a load balancer).
    """

    def __init__(
        self,
        secrets: str | Sequence[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/webhooks/vsr",
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        public_url: str | None = None,
        on_event: Callable[[WebhookEvent], None] | None = None,
    ) -> None:
        self.verifier = WebhookVerifier(secrets, tolerance_s=tolerance_s)
        self.host, self.port, self.path = host, port, path
        self.public_url, self.on_event = public_url, on_event
        self.seen = SeenIds()
        self.rejected = 0
        self._events: list[WebhookEvent] = []
        self._changed = threading.Condition()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The callback URL to submit jobs with (`webhook_url=listener.url`)."""
        return self.public_url or f"http://{self.host}:{self.port}{self.path}"

    @property
    def events(self) -> list[WebhookEvent]:
        with self._changed:
            return list(self._events)

    def receive(self, headers: Mapping[str, str], raw: bytes) -> int:
        """Handle one delivery; returns the HTTP status to answer."""
        try:
            event = self.verifier.verify(headers, raw)
        except WebhookVerificationError:
            with self._changed:
                self.rejected += 1
            return 401
        if not self.seen.add(event.id):
            return 200
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                self.seen.discard(event.id)
                return 500
        with self._changed:
            self._events.append(event)
            self._changed.notify_all()
        return 200

    def wait_for(
        self, match: Callable[[WebhookEvent], bool], timeout: float | None = None
    ) -> WebhookEvent | None:
        """The first event (received so far or within `timeout` s) for which `match` is true, or None."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self._events:
                    if match(event):
                        return event
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._changed.wait(left)

    def wait_for_job(
        self, job_id: str, types: Sequence[str] = ("job.completed",), timeout: float | None = None
    ) -> WebhookEvent | None:
        """The job's first event of one of `types` (default: completion), or None after `timeout`."""
        return self.wait_for(lambda e: e.job_id == job_id and e.type in types, timeout)

    def start(self) -> WebhookListener:
        server = _Server((self.host, self.port), _Handler)
        server.listener = self
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="webhook-listener", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> WebhookListener:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
