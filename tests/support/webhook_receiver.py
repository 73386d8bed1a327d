"""A real webhook receiver on loopback for tests: verifies Standard Webhooks signatures and records requests.

It answers a scripted sequence of replies (status, optional delay and headers), then 200. It can also
serve HTTPS with a built-in self-signed certificate for ``localhost`` (test-only key, valid 2000-2100).
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from service.webhook_signing import WebhookVerificationError, verify
from tests.support.ports import free_port, wait_until

# Self-signed EC certificate for DNS:localhost (CA:TRUE so it can be its own trust anchor). Test only.
LOCALHOST_CERT_PEM = """-----BEGIN CERTIFICATE-----
MIIBqjCCAU+gAwIBAgIBATAKBggqhkjOPQQDAjAUMRIwEAYDVQQDDAlsb2NhbGhv
c3QwIBcNMDAwMTAxMDAwMDAwWhgPMjEwMDAxMDEwMDAwMDBaMBQxEjAQBgNVBAMM
CWxvY2FsaG9zdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABMhB4gxZTYAGDetp
QBbsILWeJu8c7+RLczNnoa5G1yJ/mgmFJsMIE+1ToOZFCQGdOsTd2f/cQVgmnm+8
qIhA5uCjgY8wgYwwFAYDVR0RBA0wC4IJbG9jYWxob3N0MA8GA1UdEwEB/wQFMAMB
Af8wHQYDVR0OBBYEFE5erYJbZetsj98qb+PCmir+abBaMB8GA1UdIwQYMBaAFE5e
rYJbZetsj98qb+PCmir+abBaMA4GA1UdDwEB/wQEAwIChDATBgNVHSUEDDAKBggr
BgEFBQcDATAKBggqhkjOPQQDAgNJADBGAiEAlF6N09vqHronN7Ta+KFmoW6ad5GD
KWU0bnJcHNgeoKYCIQCO5QSVtxDG91yy3e1vwT3DdJ+NO1oHjQWlj1Fkz1dVYQ==
-----END CERTIFICATE-----
"""
LOCALHOST_KEY_PEM = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgcwAV3rxWpWekmWJf
5VB/wAd1W3dMlkSRRBghQmMb0eChRANCAATIQeIMWU2ABg3raUAW7CC1nibvHO/k
S3MzZ6GuRtcif5oJhSbDCBPtU6DmRQkBnTrE3dn/3EFYJp5vvKiIQObg
-----END PRIVATE KEY-----
"""


def localhost_client_context() -> ssl.SSLContext:
    """A client TLS context that trusts only the built-in localhost certificate."""
    return ssl.create_default_context(cadata=LOCALHOST_CERT_PEM)


def _server_context(workdir: Path) -> ssl.SSLContext:
    cert, key = workdir / "localhost.crt", workdir / "localhost.key"
    cert.write_text(LOCALHOST_CERT_PEM)
    key.write_text(LOCALHOST_KEY_PEM)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


@dataclass(frozen=True)
class Reply:
    """One scripted answer: status code, delay before answering, extra headers."""

    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReceivedWebhook:
    """One request as the receiver saw it; `headers` have lower-case names."""

    path: str
    headers: dict[str, str]
    raw_body: bytes
    body: Any
    verified: bool
    error: str | None
    time: float
    status: int

    @property
    def msg_id(self) -> str:
        return self.headers.get("webhook-id", "")


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        reply = self.server.receiver._record(self.path, dict(self.headers.items()), raw)
        if reply.delay_s:
            time.sleep(reply.delay_s)
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("content-length", "0")
            self.end_headers()
        except OSError:  # the client gave up (timeout test)
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request access log."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: WebhookReceiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up (timeouts) are expected here; keep test output clean."""


class WebhookReceiver:
    """A threaded HTTP(S) server on 127.0.0.1 that verifies and records webhook requests."""

    def __init__(
        self,
        secrets: str | Sequence[str],
        replies: Iterable[int | Reply] = (),
        *,
        port: int | None = None,
        tls_dir: Path | None = None,
    ) -> None:
        """`tls_dir` (a writable folder for the key files) turns on HTTPS with the localhost certificate."""
        self.secrets = secrets
        self.port = port or free_port()
        self._tls_dir = tls_dir
        self._replies = [r if isinstance(r, Reply) else Reply(r) for r in replies]
        self._events: list[ReceivedWebhook] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Callback URL on 127.0.0.1 (use `url_for` for another host name)."""
        return self.url_for("127.0.0.1")

    def url_for(self, host: str, path: str = "/hook") -> str:
        scheme = "https" if self._tls_dir else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    @property
    def events(self) -> list[ReceivedWebhook]:
        with self._lock:
            return list(self._events)

    def script(self, *replies: int | Reply) -> None:
        """Append answers for the next requests."""
        with self._lock:
            self._replies.extend(r if isinstance(r, Reply) else Reply(r) for r in replies)

    def wait_for(self, n: int, timeout: float = 5.0) -> list[ReceivedWebhook]:
        """Wait until at least `n` requests arrived; return all recorded so far."""
        wait_until(lambda: len(self.events) >= n, timeout, f"{n} webhook request(s)", interval=0.01)
        return self.events

    def _record(self, path: str, headers: dict[str, str], raw: bytes) -> Reply:
        lowered = {k.lower(): v for k, v in headers.items()}
        try:
            verify(self.secrets, lowered, raw)
            verified, error = True, None
        except WebhookVerificationError as exc:
            verified, error = False, str(exc)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with self._lock:
            reply = self._replies.pop(0) if self._replies else Reply()
            self._events.append(
                ReceivedWebhook(path, lowered, raw, body, verified, error, time.time(), reply.status)
            )
        return reply

    def start(self) -> WebhookReceiver:
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.receiver = self
        if self._tls_dir is not None:
            server.socket = _server_context(self._tls_dir).wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
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

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
