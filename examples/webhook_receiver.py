"""A receiver for the FastVSR service's webhooks, to copy and adapt.

It verifies each delivery (Standard Webhooks: HMAC-SHA256 over id.timestamp.body, compared in constant
time, timestamp within 5 minutes, any of several secrets during a key rotation), skips repeated
deliveries of the same `webhook-id` (retries reuse it), and hands each new event to `handle_event`.

    VSR_WEBHOOK_SECRET=whsec_... python examples/webhook_receiver.py --port 8080 --path /hooks/vsr

During a key rotation give both secrets, comma-separated. The tenant's secret is the `webhook_secret`
that `vsr keys` printed. Needs only `vsr.webhooks` (the fastvsr-service package, no torch) and the
standard library.

Answers: 204 for a new event, 200 for a repeat, 401 when verification fails, 500 when
`handle_event` raised (the service then retries the same event later). Reply within the service's
timeout (15 s): hand slow work to a queue. Behind HTTPS in production (a reverse proxy).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from vsr.webhooks import SeenIds, WebhookEvent, WebhookVerificationError, WebhookVerifier

MAX_BODY_BYTES = 1024 * 1024


def handle_event(event: WebhookEvent) -> None:
    """Your code goes here. `event.data` is the job as `GET /v1/jobs/{id}` shows it; on `job.completed`
    with status `succeeded`, fetch `event.data["output"]["url"]` with your API key."""
    status = event.data.get("status")
    print(json.dumps({"webhook_id": event.id, "type": event.type, "job": event.job_id, "status": status}))
    sys.stdout.flush()


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != self.server.hook_path:
            self.reply(404, "not found")
            return
        length = self.headers.get("content-length", "")
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            self.reply(413 if length.isdigit() else 411, "bad length")
            self.close_connection = True
            return
        body = self.rfile.read(int(length))  # the raw bytes: verify before parsing
        try:
            event = self.server.verifier.verify(dict(self.headers.items()), body)
        except WebhookVerificationError as exc:
            self.reply(401, f"rejected: {exc}")
            return
        if not self.server.seen.add(event.id):
            self.reply(200, "duplicate")
            return
        try:
            handle_event(event)
        except Exception as exc:
            self.server.seen.discard(event.id)  # let the service's retry through
            self.reply(500, f"handler failed: {type(exc).__name__}")
            return
        self.reply(204, "")

    def reply(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("content-type", "text/plain; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], verifier: WebhookVerifier, hook_path: str) -> None:
        super().__init__(address, Handler)
        self.verifier, self.hook_path, self.seen = verifier, hook_path, SeenIds()


def main() -> int:
    parser = argparse.ArgumentParser(description="Verify and print FastVSR webhooks.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: all)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--path", default="/hooks/vsr", help="the path of the webhook_url you submit")
    parser.add_argument("--tolerance", type=float, default=300, help="allowed clock skew, seconds")
    args = parser.parse_args()
    secrets = [s.strip() for s in os.environ.get("VSR_WEBHOOK_SECRET", "").split(",") if s.strip()]
    if not secrets:
        parser.error("set VSR_WEBHOOK_SECRET (comma-separated during a key rotation)")
    verifier = WebhookVerifier(secrets, tolerance_s=args.tolerance)
    server = Receiver((args.host, args.port), verifier, args.path)
    url = f"http://{args.host}:{server.server_address[1]}{args.path}"
    print(f"listening on {url}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
