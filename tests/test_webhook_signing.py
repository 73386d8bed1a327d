"""Standard Webhooks v1 signing and verification, including the spec libraries' published test vector;
the receiver helpers of vsr.webhooks and the example receiver (examples/webhook_receiver.py)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from service.webhook_signing import (
    WebhookVerificationError,
    generate_secret,
    sign,
    signature_headers,
    verify,
)
from tests.support.ports import free_port
from tests.support.processes import REPO
from vsr.webhooks import SeenIds, WebhookEvent, WebhookListener, WebhookVerifier

# The vector of standard-webhooks/standard-webhooks libraries/python/tests/test_webhooks.py
# (test_sign_function), also used by the svix libraries.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
# Same suite (test_invalid_signature_raises_error): the vector with its last base64 digit changed.
VECTOR_BAD_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="
# Same suite (test_multi_sig_payload_is_valid): entries that do not match, one of another version.
OTHER_ENTRIES = (
    "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
    "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
)


def vector_headers(signature: str = VECTOR_SIGNATURE) -> dict[str, str]:
    return {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": signature,
    }


def test_sign_matches_published_vector() -> None:
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE


def test_secret_prefix_is_optional() -> None:
    bare = VECTOR_SECRET.removeprefix("whsec_")
    assert sign(bare, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE
    verify(bare, vector_headers(), VECTOR_BODY, now=VECTOR_TIMESTAMP)


def test_verify_accepts_published_vector() -> None:
    verify(VECTOR_SECRET, vector_headers(), VECTOR_BODY, now=VECTOR_TIMESTAMP)


def test_verify_rejects_published_bad_signature() -> None:
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify(VECTOR_SECRET, vector_headers(VECTOR_BAD_SIGNATURE), VECTOR_BODY, now=VECTOR_TIMESTAMP)


def test_signature_headers() -> None:
    headers = signature_headers(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY)
    assert headers == vector_headers()


def test_generate_secret_is_32_random_bytes() -> None:
    first, second = generate_secret(), generate_secret()
    assert first.startswith("whsec_") and first != second
    assert len(base64.b64decode(first.removeprefix("whsec_"), validate=True)) == 32


def test_round_trip_with_generated_secret() -> None:
    secret, body = generate_secret(), b'{"type":"job.completed","data":{}}'
    headers = signature_headers(secret, "msg_1", 1_700_000_000, body)
    verify(secret, headers, body, now=1_700_000_000)
    with pytest.raises(WebhookVerificationError):
        verify(generate_secret(), headers, body, now=1_700_000_000)


def test_header_names_are_case_insensitive() -> None:
    headers = {name.upper(): value for name, value in vector_headers().items()}
    verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_TIMESTAMP)
    title = {
        "Webhook-Id": VECTOR_ID,
        "Webhook-Timestamp": "1614265330",
        "Webhook-Signature": VECTOR_SIGNATURE,
    }
    verify(VECTOR_SECRET, title, VECTOR_BODY, now=VECTOR_TIMESTAMP)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_fails(missing: str) -> None:
    headers = vector_headers()
    del headers[missing]
    with pytest.raises(WebhookVerificationError, match=f"missing {missing}"):
        verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_TIMESTAMP)


@pytest.mark.parametrize("bad", ["hello", "", "1614265330.5", "-1614265330", " 1614265330", "1_614_265_330"])
def test_invalid_timestamp_fails(bad: str) -> None:
    headers = vector_headers() | {"webhook-timestamp": bad}
    with pytest.raises(WebhookVerificationError):
        verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_TIMESTAMP)


@pytest.mark.parametrize(("offset", "ok"), [(-300, True), (300, True), (-301, False), (301, False)])
def test_timestamp_tolerance_both_directions(offset: int, ok: bool) -> None:
    now = VECTOR_TIMESTAMP - offset  # the message is `offset` seconds away from now
    if ok:
        verify(VECTOR_SECRET, vector_headers(), VECTOR_BODY, now=now)
    else:
        with pytest.raises(WebhookVerificationError, match=r"too (old|new)"):
            verify(VECTOR_SECRET, vector_headers(), VECTOR_BODY, now=now)


def test_custom_tolerance() -> None:
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(VECTOR_SECRET, vector_headers(), VECTOR_BODY, now=VECTOR_TIMESTAMP + 11, tolerance_s=10)


def test_body_tampering_fails() -> None:
    with pytest.raises(WebhookVerificationError):
        verify(VECTOR_SECRET, vector_headers(), b'{"test": 2432232315}', now=VECTOR_TIMESTAMP)


def test_id_and_timestamp_are_signed() -> None:
    for change in ({"webhook-id": "msg_other"}, {"webhook-timestamp": str(VECTOR_TIMESTAMP + 1)}):
        with pytest.raises(WebhookVerificationError):
            verify(VECTOR_SECRET, vector_headers() | change, VECTOR_BODY, now=VECTOR_TIMESTAMP)


def test_several_signatures_in_header() -> None:
    header = " ".join([*OTHER_ENTRIES, VECTOR_SIGNATURE, OTHER_ENTRIES[0]])
    verify(VECTOR_SECRET, vector_headers(header), VECTOR_BODY, now=VECTOR_TIMESTAMP)


def test_non_v1_and_malformed_entries_are_ignored() -> None:
    digest = VECTOR_SIGNATURE.removeprefix("v1,")
    header = f"v1a,{digest} v2,{digest} junk v1,!!notbase64!! ,"
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify(VECTOR_SECRET, vector_headers(header), VECTOR_BODY, now=VECTOR_TIMESTAMP)


def test_key_rotation_with_several_secrets() -> None:
    old, new = VECTOR_SECRET, generate_secret()
    signed_with_new = vector_headers(sign(new, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY))
    verify([old, new], signed_with_new, VECTOR_BODY, now=VECTOR_TIMESTAMP)
    verify([new, old], vector_headers(), VECTOR_BODY, now=VECTOR_TIMESTAMP)
    with pytest.raises(WebhookVerificationError):
        verify([generate_secret()], signed_with_new, VECTOR_BODY, now=VECTOR_TIMESTAMP)


def test_sender_signing_with_two_keys_during_rotation() -> None:
    old, new = generate_secret(), generate_secret()
    both = " ".join(sign(s, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) for s in (old, new))
    verify(old, vector_headers(both), VECTOR_BODY, now=VECTOR_TIMESTAMP)
    verify(new, vector_headers(both), VECTOR_BODY, now=VECTOR_TIMESTAMP)


@pytest.mark.parametrize("secret", ["whsec_", "whsec_not base64!", "whsec_abc"])
def test_bad_secret_is_a_value_error(secret: str) -> None:
    with pytest.raises(ValueError, match="secret"):
        sign(secret, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY)


def test_no_secrets_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="no webhook secret"):
        verify([], vector_headers(), VECTOR_BODY, now=VECTOR_TIMESTAMP)


def test_default_now_is_current_time() -> None:
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(VECTOR_SECRET, vector_headers(), VECTOR_BODY)  # the vector is from 2021


# -- the receiver's helpers (vsr.webhooks) and the example receiver ---------------------------------

VECTOR_PAYLOAD = {"test": 2432232314}


def fresh(secret: str, body: bytes, msg_id: str = "msg_1", offset: int = 0) -> dict[str, str]:
    """Headers for `body` signed with `secret` now (+ `offset` seconds)."""
    return signature_headers(secret, msg_id, int(time.time()) + offset, body)


def test_verifier_returns_the_published_vectors_payload() -> None:
    event = WebhookVerifier(VECTOR_SECRET).verify(vector_headers(), VECTOR_BODY, now=VECTOR_TIMESTAMP)
    assert (event.id, event.timestamp, event.payload, event.raw) == (
        VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_PAYLOAD, VECTOR_BODY,
    )  # fmt: skip
    assert event.type is None and event.job_id is None and event.data == {}


@pytest.mark.parametrize(
    ("case", "change", "offset", "ok"),
    [  # the scenarios of the spec libraries' suites (python, go), run through the helper
        ("valid", {}, 0, True),
        ("missing id", {"webhook-id": None}, 0, False),
        ("missing timestamp", {"webhook-timestamp": None}, 0, False),
        ("missing signature", {"webhook-signature": None}, 0, False),
        ("invalid timestamp", {"webhook-timestamp": "hello"}, 0, False),
        ("invalid signature", {"webhook-signature": VECTOR_BAD_SIGNATURE}, 0, False),
        ("other invalid signature", {"webhook-signature": OTHER_ENTRIES[0]}, 0, False),
        ("old timestamp", {}, -301, False),
        ("new timestamp", {}, 301, False),
        (
            "multi sig",
            {"webhook-signature": " ".join([*OTHER_ENTRIES, VECTOR_SIGNATURE, OTHER_ENTRIES[0]])},
            0,
            True,
        ),
    ],
)
def test_verifier_on_the_spec_scenarios(
    case: str, change: dict[str, str | None], offset: int, ok: bool
) -> None:
    headers = {k: v for k, v in (vector_headers() | change).items() if v is not None}
    verifier = WebhookVerifier(VECTOR_SECRET)
    now = VECTOR_TIMESTAMP - offset  # the message is `offset` seconds away from now
    if ok:
        assert verifier.verify(headers, VECTOR_BODY, now=now).payload == VECTOR_PAYLOAD, case
    else:
        with pytest.raises(WebhookVerificationError):
            verifier.verify(headers, VECTOR_BODY, now=now)


def test_verifier_with_and_without_prefix_and_key_rotation() -> None:
    bare = VECTOR_SECRET.removeprefix("whsec_")
    for secrets in (VECTOR_SECRET, bare, [generate_secret(), VECTOR_SECRET], (bare,)):
        verifier = WebhookVerifier(secrets)
        assert verifier.verify(vector_headers(), VECTOR_BODY, now=VECTOR_TIMESTAMP).id == VECTOR_ID
    with pytest.raises(WebhookVerificationError):
        WebhookVerifier([generate_secret()]).verify(vector_headers(), VECTOR_BODY, now=VECTOR_TIMESTAMP)


def test_verifier_tolerance_and_bad_input() -> None:
    tight = WebhookVerifier(VECTOR_SECRET, tolerance_s=10)
    with pytest.raises(WebhookVerificationError, match="too old"):
        tight.verify(vector_headers(), VECTOR_BODY, now=VECTOR_TIMESTAMP + 11)
    secret, body = generate_secret(), b"not json"
    with pytest.raises(WebhookVerificationError, match="not JSON"):
        WebhookVerifier(secret).verify(fresh(secret, body), body)  # signed, but not an event
    with pytest.raises(ValueError, match="secret"):
        WebhookVerifier("whsec_not base64!")  # refused when configured, not at the first delivery
    with pytest.raises(ValueError, match="no webhook secret"):
        WebhookVerifier([])


def test_seen_ids_deduplicate_forget_and_expire() -> None:
    seen = SeenIds(ttl_s=0.2, max_ids=3)
    assert seen.add("a") and not seen.add("a") and "a" in seen
    seen.discard("a")
    assert seen.add("a")
    for name in ("b", "c", "d"):  # the oldest goes beyond max_ids
        assert seen.add(name)
    assert "a" not in seen and "d" in seen
    time.sleep(0.25)
    assert seen.add("d")  # expired


def job_event(job_id: str, kind: str = "job.completed") -> bytes:
    return json.dumps({"type": kind, "timestamp": "2026-01-01T00:00:00Z", "data": {"id": job_id}}).encode()


def test_listener_verifies_dedupes_and_waits() -> None:
    secret = generate_secret()
    failures = iter([True])  # on_event fails once: that delivery gets 500 and its retry is processed

    def on_event(event: WebhookEvent) -> None:
        if event.id == "msg_flaky" and next(failures, False):
            raise RuntimeError("database down")

    with WebhookListener(secret, on_event=on_event) as hooks:
        body = job_event("job-1")

        def post(headers: dict[str, str], path: str = hooks.path, content: bytes = body) -> int:
            url = f"http://127.0.0.1:{hooks.port}{path}"
            return httpx.post(url, content=content, headers=headers).status_code

        assert post(fresh(secret, body, "msg_a")) == 200
        assert post(fresh(secret, body, "msg_a")) == 200  # a retry of the same delivery
        assert post(fresh(generate_secret(), body, "msg_b")) == 401
        assert post(fresh(secret, body, "msg_c", offset=-600)) == 401
        assert post(fresh(secret, body, "msg_d"), path="/other") == 404
        assert post(fresh(secret, body, "msg_flaky")) == 500
        assert post(fresh(secret, body, "msg_flaky")) == 200
        assert [e.id for e in hooks.events] == ["msg_a", "msg_flaky"] and hooks.rejected == 2
        assert hooks.wait_for_job("job-1", timeout=0).id == "msg_a"  # type: ignore[union-attr]
        assert hooks.wait_for_job("job-2", timeout=0.1) is None
        other = job_event("job-2")
        later = threading.Timer(0.1, lambda: post(fresh(secret, other, "msg_e"), content=other))
        later.start()
        assert hooks.wait_for_job("job-2", timeout=5) is not None
        later.join()


def test_example_receiver_verifies_and_dedupes(tmp_path: Path) -> None:
    old, new = generate_secret(), generate_secret()
    port = free_port()
    receiver = subprocess.Popen(
        [sys.executable, str(REPO / "examples" / "webhook_receiver.py"), "--port", str(port)],
        cwd=REPO,
        env={**os.environ, "VSR_WEBHOOK_SECRET": f"{old},{new}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/hooks/vsr"
    try:
        assert receiver.stderr is not None and receiver.stderr.readline().strip() == f"listening on {url}"
        body = job_event("job-9")
        answers = [
            httpx.post(url, content=body, headers=fresh(new, body, "msg_1")),  # the rotated-in key
            httpx.post(url, content=body, headers=fresh(new, body, "msg_1")),  # a retry: skipped
            httpx.post(url, content=body, headers=fresh(old, body, "msg_2")),  # the old key, still valid
            httpx.post(url, content=body, headers=fresh(generate_secret(), body, "msg_3")),
            httpx.post(url, content=body + b" ", headers=fresh(new, body, "msg_4")),  # tampered body
        ]
        assert [a.status_code for a in answers] == [204, 200, 204, 401, 401]
        assert answers[1].text == "duplicate" and answers[3].text.startswith("rejected: ")
    finally:
        receiver.terminate()
        out, _ = receiver.communicate(timeout=10)
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines == [
        {"webhook_id": "msg_1", "type": "job.completed", "job": "job-9", "status": None},
        {"webhook_id": "msg_2", "type": "job.completed", "job": "job-9", "status": None},
    ]
