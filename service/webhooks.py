"""Persisted webhook outbox in Redis and its dispatcher (Standard Webhooks delivery).

Every event is stored once, with its JSON body serialized at enqueue time, so all attempts send the
same bytes under the same ``webhook-id`` (the receiver's idempotency key). Terminal events are
retried along ``retry_schedule_s`` (entry i = delay before attempt i+1, with +-jitter); other events
are best-effort (one attempt). Deliveries of one job go out in enqueue order: only the oldest
unfinished message of a job is schedulable. Any number of dispatchers, in any number of processes,
may share one Redis: a message is claimed atomically (Lua) before each attempt.

Redis layout (``p`` = prefix):

- ``p:wh:msg:<id>`` HASH: tenant, job_id, job_key, url, secret, type, body, terminal, max_attempts,
  attempts, state (pending/delivered/dead/dropped), next_at, created_at, finished_at, last_error,
  last_status, claim (token of the in-flight attempt). Finished messages expire after ``retention_s``.
- ``p:wh:due`` ZSET: message id -> time of its next attempt; holds only the head of each job's queue.
  While an attempt is in flight the score is the claim's lease deadline, so a message claimed by a
  dispatcher that died is retried once the lease runs out (at-least-once delivery).
- ``p:wh:job:<tenant>:<job_id>`` LIST: unfinished message ids of one job, in enqueue order.
- ``p:wh:disabled:<tenant>`` SET: callback URLs that answered 410 Gone. Messages to them are dropped
  without a request, and `enqueue` stores them as "dropped" without queueing them.
- ``p:wh:dead`` ZSET: dead message id -> time it died (trimmed to ``retention_s``), for inspection.

Responses: 2xx delivered; 410 disables the URL and drops the message; anything else (3xx included,
redirects are never followed), timeouts and connection errors are failures, retried no sooner than
``Retry-After``. The URL is re-checked against SSRF rules before each attempt and the request goes to
the checked IP address (Host header and TLS SNI keep the name); an unsafe URL kills the message.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import redis

from service.url_safety import IPAddress, Resolver, UnsafeURLError, resolve_callback_url
from service.webhook_signing import sign, signature_headers

logger = logging.getLogger(__name__)

# Standard Webhooks: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (each after the previous
# failure): 8 attempts over about 27.6 h.
DEFAULT_RETRY_SCHEDULE_S: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
DEFAULT_RETRY_JITTER = 0.1
MAX_BODY_BYTES = 64 * 1024
MAX_RETRY_AFTER_S = 86400.0
USER_AGENT = "fastvsr-service-webhooks/1"

STATE_PENDING = "pending"
STATE_DELIVERED = "delivered"
STATE_DEAD = "dead"
STATE_DROPPED = "dropped"

# KEYS: msg, job list, due, disabled. ARGV: id, url, next_at, retention_ms, field/value pairs...
_ENQUEUE_LUA = """
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
if redis.call('SISMEMBER', KEYS[4], ARGV[2]) == 1 then
  redis.call('HSET', KEYS[1], 'state', 'dropped', 'last_error', 'endpoint disabled (410 Gone earlier)')
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return 'dropped'
end
redis.call('RPUSH', KEYS[2], ARGV[1])
if redis.call('LINDEX', KEYS[2], 0) == ARGV[1] then
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
end
return 'pending'
"""

# KEYS: due, msg. ARGV: id, now, lease_until, token. Returns the message hash, or nil if not ours.
_CLAIM_LUA = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return false end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return false
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[2], 'claim', ARGV[4])
redis.call('HINCRBY', KEYS[2], 'attempts', 1)
return redis.call('HGETALL', KEYS[2])
"""

# KEYS: msg, due, dead. ARGV: id, token, state, next_at, now, retention_ms, msg key prefix,
# field/value pairs... Returns 0 if the claim was lost (lease expired and taken over), else 1.
_FINISH_LUA = """
if redis.call('HGET', KEYS[1], 'claim') ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], 'claim')
if #ARGV > 7 then redis.call('HSET', KEYS[1], unpack(ARGV, 8)) end
redis.call('HSET', KEYS[1], 'state', ARGV[3])
if ARGV[3] == 'pending' then
  redis.call('HSET', KEYS[1], 'next_at', ARGV[4])
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
  return 1
end
local now = tonumber(ARGV[5])
redis.call('HSET', KEYS[1], 'finished_at', ARGV[5])
redis.call('HDEL', KEYS[1], 'next_at')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
if ARGV[3] == 'dead' then
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[6]) / 1000)
end
local job = redis.call('HGET', KEYS[1], 'job_key')
redis.call('LREM', job, 1, ARGV[1])
local head = redis.call('LINDEX', job, 0)
if head then
  local due_at = tonumber(redis.call('HGET', ARGV[7] .. head, 'next_at') or now)
  redis.call('ZADD', KEYS[2], math.max(due_at, now), head)
end
return 1
"""


@dataclass(frozen=True)
class _Outcome:
    """The result of one delivery attempt."""

    status: int | None = None
    error: str = ""
    retry_after_s: float | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def _pairs(fields: Mapping[str, object]) -> list[str]:
    """Flatten a mapping into the field/value argument list HSET takes."""
    return [str(item) for key, value in fields.items() for item in (key, value)]


def _iso_utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _retry_after_s(value: str | None, now: float) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or HTTP date), capped; None if absent."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER_S)


class WebhookOutbox:
    """Redis-backed webhook outbox: `enqueue` stores events, `dispatch_due`/`run_forever` deliver them."""

    def __init__(
        self,
        redis: redis.Redis,
        *,
        prefix: str = "vsr",
        retry_schedule_s: Sequence[float] = DEFAULT_RETRY_SCHEDULE_S,
        jitter: float = DEFAULT_RETRY_JITTER,
        rng: random.Random | None = None,
        timeout_s: float = 15.0,
        allow_private: bool = False,
        clock: Callable[[], float] = time.time,
        retention_s: float = 7 * 86400,
        resolver: Resolver | None = None,
        verify: ssl.SSLContext | bool = True,
        proxy: str | None = None,
    ) -> None:
        """`resolver` replaces socket.getaddrinfo; `verify` is httpx's TLS verification; with `proxy`
        (e.g. an egress proxy such as smokescreen) requests go through it by host name, unpinned.
        `jitter` is the fraction each retry delay is spread by (uniformly within +-jitter); `rng` draws
        it (default: a private `random.Random`)."""
        if not retry_schedule_s or any(delay < 0 for delay in retry_schedule_s):
            raise ValueError("retry_schedule_s must be a non-empty sequence of non-negative delays")
        if not 0 <= jitter < 1:
            raise ValueError("jitter must be a fraction in [0, 1)")
        self._redis = redis
        self._prefix = f"{prefix}:wh"
        self._schedule = tuple(float(delay) for delay in retry_schedule_s)
        self._jitter = jitter
        self._rng = rng or random.Random()
        self._allow_private = allow_private
        self._clock = clock
        self._retention_ms = int(retention_s * 1000)
        self._lease_s = 4 * timeout_s + 30  # longer than any attempt: connect + write + read + pool
        self._resolver = resolver
        self._pinned = proxy is None
        self._http = httpx.Client(
            timeout=timeout_s,
            follow_redirects=False,
            trust_env=False,
            verify=verify,
            proxy=proxy,
            headers={"user-agent": USER_AGENT},
        )
        self._enqueue_script = redis.register_script(_ENQUEUE_LUA)
        self._claim_script = redis.register_script(_CLAIM_LUA)
        self._finish_script = redis.register_script(_FINISH_LUA)

    # -- keys ---------------------------------------------------------------------------------

    def _msg_key(self, msg_id: str) -> str:
        return f"{self._prefix}:msg:{msg_id}"

    def _job_key(self, tenant: str, job_id: str) -> str:
        return f"{self._prefix}:job:{tenant}:{job_id}"

    def _disabled_key(self, tenant: str) -> str:
        return f"{self._prefix}:disabled:{tenant}"

    @property
    def _due_key(self) -> str:
        return f"{self._prefix}:due"

    @property
    def _dead_key(self) -> str:
        return f"{self._prefix}:dead"

    # -- producer side ------------------------------------------------------------------------

    def enqueue(
        self,
        *,
        tenant: str,
        job_id: str,
        url: str,
        secret: str,
        event_type: str,
        data: dict[str, Any],
        terminal: bool,
    ) -> str:
        """Store one event for delivery and return its message id (``msg_<hex>``).

        If the tenant's URL was disabled by a 410, the message is stored as "dropped" and never sent.
        """
        if not event_type:
            raise ValueError("event_type is required")
        sign(secret, "msg_check", 0, b"")  # ValueError now rather than at every attempt
        now = self._clock()
        body = json.dumps(
            {"type": event_type, "timestamp": _iso_utc(now), "data": data},
            separators=(",", ":"),
            allow_nan=False,
        )
        if len(body) > MAX_BODY_BYTES:
            raise ValueError(
                f"webhook body is {len(body)} bytes; send links, not payloads (max {MAX_BODY_BYTES})"
            )
        msg_id = f"msg_{uuid.uuid4().hex}"
        job_key = self._job_key(tenant, job_id)
        next_at = now + self._schedule[0]
        fields = {
            "id": msg_id,
            "tenant": tenant,
            "job_id": job_id,
            "job_key": job_key,
            "url": url,
            "secret": secret,
            "type": event_type,
            "body": body,
            "terminal": int(terminal),
            "max_attempts": len(self._schedule) if terminal else 1,
            "attempts": 0,
            "state": STATE_PENDING,
            "next_at": repr(next_at),
            "created_at": repr(now),
        }
        keys = [self._msg_key(msg_id), job_key, self._due_key, self._disabled_key(tenant)]
        args = [msg_id, url, repr(next_at), self._retention_ms, *_pairs(fields)]
        state = _text(self._enqueue_script(keys=keys, args=args))
        logger.debug("webhook %s (%s, job %s) enqueued: %s", msg_id, event_type, job_id, state)
        return msg_id

    def is_disabled(self, tenant: str, url: str) -> bool:
        """Whether `url` answered 410 Gone for this tenant (its messages are dropped)."""
        return bool(self._redis.sismember(self._disabled_key(tenant), url))

    def enable_url(self, tenant: str, url: str) -> None:
        """Undo a 410 disable: later messages to `url` are delivered again."""
        self._redis.srem(self._disabled_key(tenant), url)

    def status(self, msg_id: str) -> dict[str, Any]:
        """State of one message (pending/delivered/dead/dropped) with attempts and last error/status.

        Raises KeyError for an unknown (or expired) message id.
        """
        raw = {_text(k): _text(v) for k, v in self._redis.hgetall(self._msg_key(msg_id)).items()}
        if not raw:
            raise KeyError(msg_id)
        return {
            "id": msg_id,
            "state": raw["state"],
            "type": raw["type"],
            "tenant": raw["tenant"],
            "job_id": raw["job_id"],
            "url": raw["url"],
            "terminal": raw["terminal"] == "1",
            "attempts": int(raw["attempts"]),
            "max_attempts": int(raw["max_attempts"]),
            "last_status": int(raw["last_status"]) if raw.get("last_status") else None,
            "last_error": raw.get("last_error") or None,
            "next_attempt_at": float(raw["next_at"]) if raw["state"] == STATE_PENDING else None,
            "created_at": float(raw["created_at"]),
            "finished_at": float(raw["finished_at"]) if raw.get("finished_at") else None,
        }

    # -- dispatcher side ----------------------------------------------------------------------

    def dispatch_due(self, max_messages: int = 100) -> int:
        """Handle every message due now, each at most once, in per-job order; return how many.

        A handled message was claimed by this dispatcher and either sent or finished without a request
        (URL disabled by 410, or unsafe). Messages of one job that become due during the call (their
        predecessor finished) are handled in the same call.
        """
        seen: set[str] = set()
        attempted = 0
        while attempted < max_messages:
            ids = self._redis.zrangebyscore(
                self._due_key, "-inf", repr(self._clock()), start=0, num=max_messages + len(seen)
            )
            fresh = [msg_id for msg_id in map(_text, ids) if msg_id not in seen]
            if not fresh:
                break
            for msg_id in fresh[: max_messages - attempted]:
                seen.add(msg_id)
                attempted += self._claim_and_attempt(msg_id)
        return attempted

    def run_forever(self, stop: threading.Event, poll_interval_s: float = 0.2) -> None:
        """Dispatch until `stop` is set; errors are logged, never raised."""
        while not stop.is_set():
            try:
                attempted = self.dispatch_due()
            except Exception:
                logger.exception("webhook dispatch failed; retrying")
                stop.wait(max(poll_interval_s, 1.0))
                continue
            if attempted == 0:
                stop.wait(poll_interval_s)

    def close(self) -> None:
        """Close the HTTP client (the Redis client belongs to the caller)."""
        self._http.close()

    def __enter__(self) -> WebhookOutbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _claim(self, msg_id: str) -> tuple[dict[str, str], str] | None:
        """Atomically take `msg_id` if it is still due; return its fields and the claim token."""
        now = self._clock()
        token = uuid.uuid4().hex
        keys = [self._due_key, self._msg_key(msg_id)]
        flat = self._claim_script(keys=keys, args=[msg_id, repr(now), repr(now + self._lease_s), token])
        if not flat:
            return None
        fields = [_text(item) for item in flat]
        return dict(zip(fields[::2], fields[1::2], strict=True)), token

    def _claim_and_attempt(self, msg_id: str) -> int:
        """Claim and handle one message; 1 if this dispatcher got it, 0 if it was not (or no longer) due."""
        claimed = self._claim(msg_id)
        if claimed is None:
            return 0
        msg, token = claimed
        if int(msg["attempts"]) > int(msg["max_attempts"]):  # a dispatcher died holding the last attempt
            self._finish(msg, token, STATE_DEAD, error="attempt lost (dispatcher stopped mid-delivery)")
        elif self.is_disabled(msg["tenant"], msg["url"]):
            self._finish(msg, token, STATE_DROPPED, error="endpoint disabled (410 Gone earlier)")
        else:
            self._attempt(msg, token)
        return 1

    def _attempt(self, msg: dict[str, str], token: str) -> None:
        try:
            addresses = resolve_callback_url(
                msg["url"], allow_private=self._allow_private, **self._resolver_kwargs()
            )
        except UnsafeURLError as exc:
            if exc.code == "unresolvable_host":  # DNS trouble may pass: retry like a failed request
                self._record(msg, token, _Outcome(error=f"{exc.code}: {exc.message}"))
            else:
                self._finish(msg, token, STATE_DEAD, error=f"unsafe callback URL: {exc.code}: {exc.message}")
            return
        self._record(msg, token, self._post(msg, addresses[0]))

    def _resolver_kwargs(self) -> dict[str, Resolver]:
        return {} if self._resolver is None else {"resolver": self._resolver}

    def _post(self, msg: dict[str, str], address: IPAddress) -> _Outcome:
        """One signed POST, to the checked `address` unless a proxy is used; the response is not read."""
        body = msg["body"].encode()
        headers = {"content-type": "application/json"}
        headers |= signature_headers(msg["secret"], msg["id"], int(self._clock()), body)
        url = httpx.URL(msg["url"])
        extensions: dict[str, Any] = {}
        if self._pinned:
            headers["host"] = url.netloc.decode("ascii")
            if url.scheme == "https":
                extensions["sni_hostname"] = url.raw_host.decode("ascii")
            url = url.copy_with(host=str(address))
        try:
            request = self._http.build_request(
                "POST", url, content=body, headers=headers, extensions=extensions
            )
            response = self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            return _Outcome(error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        except Exception as exc:  # a bad URL or header must not jam the outbox
            logger.exception("webhook %s: unexpected error while sending", msg["id"])
            return _Outcome(error=f"{type(exc).__name__}: {exc}")
        try:
            retry_after = _retry_after_s(response.headers.get("retry-after"), self._clock())
            return _Outcome(status=response.status_code, retry_after_s=retry_after)
        finally:
            response.close()

    def _record(self, msg: dict[str, str], token: str, outcome: _Outcome) -> None:
        """Store the outcome of an attempt: delivered, dropped (410), rescheduled or dead."""
        if outcome.delivered:
            self._finish(msg, token, STATE_DELIVERED, status=outcome.status)
        elif outcome.status == 410:
            self._redis.sadd(self._disabled_key(msg["tenant"]), msg["url"])
            logger.warning("webhook URL disabled by 410 Gone (tenant %s): %s", msg["tenant"], msg["url"])
            self._finish(
                msg, token, STATE_DROPPED, status=410, error="endpoint answered 410 Gone; URL disabled"
            )
        else:
            error = outcome.error or f"HTTP {outcome.status}"
            if outcome.status is not None and 300 <= outcome.status < 400:
                error += " (redirects are not followed)"
            attempts = int(msg["attempts"])
            if attempts < int(msg["max_attempts"]):
                delay = self._backoff(attempts, outcome.retry_after_s)
                self._finish(
                    msg,
                    token,
                    STATE_PENDING,
                    status=outcome.status,
                    error=error,
                    next_at=self._clock() + delay,
                )
            else:
                self._finish(msg, token, STATE_DEAD, status=outcome.status, error=error)

    @property
    def retry_schedule_s(self) -> tuple[float, ...]:
        """Delay before each attempt of a terminal event (entry 0: the first attempt), unjittered."""
        return self._schedule

    @property
    def jitter(self) -> float:
        return self._jitter

    def _backoff(self, attempts: int, retry_after_s: float | None) -> float:
        """Delay before attempt `attempts + 1`: the jittered schedule entry, or Retry-After if longer."""
        delay = self._schedule[attempts] * (1 + self._rng.uniform(-self._jitter, self._jitter))
        return max(delay, retry_after_s or 0.0)

    def _finish(
        self,
        msg: dict[str, str],
        token: str,
        state: str,
        *,
        status: int | None = None,
        error: str = "",
        next_at: float = 0.0,
    ) -> None:
        """Release the claim with a new state; a finished message lets its job's next message go."""
        now = self._clock()
        fields = {"last_status": "" if status is None else status, "last_error": error}
        keys = [self._msg_key(msg["id"]), self._due_key, self._dead_key]
        args = [msg["id"], token, state, repr(next_at), repr(now), self._retention_ms, self._msg_key("")]
        if not self._finish_script(keys=keys, args=[*args, *_pairs(fields)]):
            logger.warning("webhook %s: claim expired before the outcome was stored", msg["id"])
            return
        log = logger.warning if state in (STATE_DEAD, STATE_DROPPED) else logger.debug
        log("webhook %s (%s) attempt %s: %s %s", msg["id"], msg["type"], msg["attempts"], state, error)
