"""Standard Webhooks v1 signing and verification, including the spec libraries' published test vector."""

from __future__ import annotations

import base64

import pytest

from service.webhook_signing import (
    WebhookVerificationError,
    generate_secret,
    sign,
    signature_headers,
    verify,
)

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
