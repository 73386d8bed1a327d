"""Standard Webhooks v1 signatures (symmetric HMAC-SHA256 scheme).

The signed content is ``f"{msg_id}.{timestamp}."`` followed by the raw body bytes; the signature header
holds space-separated ``v1,<base64 HMAC>`` entries so that keys can be rotated. Secrets are
``"whsec_" + base64(key)``; the prefix is optional when verifying. Spec:
https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _secrets
import time
from collections.abc import Mapping, Sequence

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_S = 300

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"


class WebhookVerificationError(Exception):
    """A webhook request failed verification (missing header, stale timestamp, bad signature)."""


def generate_secret() -> str:
    """A fresh signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(32)).decode("ascii")


def _secret_key(secret: str) -> bytes:
    """The HMAC key inside a ``whsec_`` secret; ValueError if it is not valid base64 or empty."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("webhook secret is not valid base64") from exc
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def _mac(key: bytes, msg_id: str, timestamp: int | str, body: bytes) -> bytes:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one message."""
    mac = _mac(_secret_key(secret), msg_id, int(timestamp), body)
    return f"{SIGNATURE_VERSION},{base64.b64encode(mac).decode('ascii')}"


def signature_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for one delivery attempt."""
    return {
        HEADER_ID: msg_id,
        HEADER_TIMESTAMP: str(int(timestamp)),
        HEADER_SIGNATURE: sign(secret, msg_id, timestamp, body),
    }


def _header(headers: Mapping[str, str], name: str) -> str:
    """A header value looked up case-insensitively; raises if absent or empty."""
    for key, value in headers.items():
        if key.lower() == name and value:
            return value
    raise WebhookVerificationError(f"missing {name} header")


def _check_timestamp(raw: str, tolerance_s: float, now: float) -> None:
    if not (raw.isascii() and raw.isdigit()):
        raise WebhookVerificationError("invalid webhook-timestamp header")
    timestamp = int(raw)
    if timestamp < now - tolerance_s:
        raise WebhookVerificationError("message timestamp too old")
    if timestamp > now + tolerance_s:
        raise WebhookVerificationError("message timestamp too new")


def _v1_signatures(header: str) -> list[bytes]:
    """The decoded ``v1`` entries of a signature header; other versions and junk are ignored."""
    found = []
    for entry in header.split():
        version, sep, encoded = entry.partition(",")
        if not sep or version != SIGNATURE_VERSION:
            continue
        try:
            found.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    return found


def verify(
    secrets: str | Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> None:
    """Check a received webhook; raise WebhookVerificationError unless one v1 signature matches one secret.

    `body` must be the raw request bytes, not re-serialized JSON.
    """
    keys = [_secret_key(s) for s in ([secrets] if isinstance(secrets, str) else secrets)]
    if not keys:
        raise ValueError("no webhook secret given")
    msg_id = _header(headers, HEADER_ID)
    timestamp = _header(headers, HEADER_TIMESTAMP)
    _check_timestamp(timestamp, tolerance_s, time.time() if now is None else now)
    candidates = _v1_signatures(_header(headers, HEADER_SIGNATURE))
    for key in keys:
        expected = _mac(key, msg_id, timestamp, body)
        # Compare against every entry (no early exit) so timing does not reveal which one matched.
        matches = [hmac.compare_digest(expected, candidate) for candidate in candidates]
        if any(matches):
            return
    raise WebhookVerificationError("no matching signature found")
