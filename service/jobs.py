"""The authoritative job record, kept in Redis apart from RQ's own bookkeeping.

Every status change goes through `JobStore.transition`, an optimistic (WATCH/MULTI) read-check-write that
allows only the legal moves below, so a record can never go back from a terminal status.
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

import redis
from pydantic import BaseModel, ConfigDict, Field

from worker.encode_options import PRESETS


class JobStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})
LEGAL_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.PROCESSING, JobStatus.CANCELED, JobStatus.FAILED}),
    # processing -> queued: a retry after a lost worker (requeued by the reliability layer)
    JobStatus.PROCESSING: frozenset(
        {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.QUEUED}
    ),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELED: frozenset(),
}
WebhookEvent = Literal["start", "progress", "completed"]


class JobParams(BaseModel):
    """What the client asks for. Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    scale: Literal[4] = 4
    model: str | None = Field(None, description="model name; default: the service's default model")
    codec: Literal["h264", "h265"] = "h264"
    crf: int = Field(18, ge=0, le=51, strict=True)
    preset: Literal[PRESETS] = "medium"  # type: ignore[valid-type]
    container: Literal["mp4", "mkv"] = "mp4"
    webhook_url: str | None = Field(None, max_length=2048)
    webhook_events: list[WebhookEvent] = Field(
        default_factory=lambda: ["start", "progress", "completed"], max_length=3
    )


class InputRef(BaseModel):
    bucket: str | None = None  # None: the service's own storage
    key: str
    filename: str | None = None
    bytes: int | None = None


class Progress(BaseModel):
    """Frames done of the current attempt, the expected total, and that attempt's speed."""

    frames_done: int = 0
    frames_total: int | None = None
    fps: float | None = Field(
        None,
        description="frames per second of this attempt: its average since the upscale started "
        "(the whole run's average once succeeded); null before the first frame",
    )
    eta_s: float | None = Field(
        None,
        description="seconds to finish at that rate: (frames_total - frames_done) / fps; "
        "null while either is unknown, 0 once succeeded",
    )

    def restart(self) -> None:
        """A new attempt starts from frame 0 (the expected total stays)."""
        self.frames_done, self.fps, self.eta_s = 0, None, None


class JobError(BaseModel):
    code: str
    message: str


class JobOutput(BaseModel):
    key: str
    width: int
    height: int
    frames: int
    fps: float
    bytes: int


class JobRecord(BaseModel):
    id: str
    tenant: str
    status: JobStatus = JobStatus.QUEUED
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    params: JobParams
    input: InputRef
    progress: Progress = Field(default_factory=Progress)
    timings: dict[str, float] = Field(default_factory=dict, description="seconds per stage")
    macs: dict[str, int] = Field(default_factory=dict, description="multiply-accumulates per component")
    error: JobError | None = None
    output: JobOutput | None = None
    cancel_requested: bool = False
    attempts: int = 0  # claims by a worker; a graceful requeue (shutdown) gives its attempt back
    worker: str | None = None
    rq_job_id: str | None = None  # the RQ job that currently carries this job
    files_deleted: bool = False

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


class IllegalTransitionError(Exception):
    """The record's current status does not allow the requested one."""

    def __init__(self, job_id: str, current: JobStatus, wanted: JobStatus) -> None:
        super().__init__(f"job {job_id}: {current} -> {wanted} is not allowed")
        self.current, self.wanted = current, wanted


class JobNotFoundError(KeyError):
    pass


class OwnershipLostError(Exception):
    """The job is no longer this worker's attempt (it was reaped and requeued, or finished elsewhere)."""


Owner = tuple[str, int]  # (worker name, attempt number): who may write a processing job's record
ACTIVE = (JobStatus.QUEUED, JobStatus.PROCESSING)
# Renew a lease only if it still holds our token (a reaped attempt must not revive its lease).
RENEW_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    return uuid.uuid4().hex


class JobStore:
    """Job records (one JSON value per job), per-tenant listings and idempotency keys."""

    def __init__(self, client: redis.Redis, *, prefix: str = "vsr", record_ttl_s: int = 30 * 86400) -> None:
        self.redis = client
        self.prefix = prefix
        self.record_ttl_s = record_ttl_s

    def _key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def _tenant_index(self, tenant: str) -> str:
        return f"{self.prefix}:tenant:{tenant}:jobs"

    def _idempotency_key(self, tenant: str, key: str) -> str:
        return f"{self.prefix}:idem:{tenant}:{key}"

    def _status_set(self, status: JobStatus, tenant: str | None = None) -> str:
        """Ids of active jobs by status: all tenants, or one tenant's."""
        scope = "" if tenant is None else f"tenant:{tenant}:"
        return f"{self.prefix}:{scope}status:{status}"

    def lease_key(self, job_id: str) -> str:
        return f"{self.prefix}:lease:{job_id}"

    def _index_status(self, pipe: Any, record: JobRecord, before: JobStatus | None) -> None:
        if before == record.status:
            return
        if before in ACTIVE:
            pipe.srem(self._status_set(before), record.id)
            pipe.srem(self._status_set(before, record.tenant), record.id)
        if record.status in ACTIVE:
            pipe.sadd(self._status_set(record.status), record.id)
            pipe.sadd(self._status_set(record.status, record.tenant), record.id)

    def create(self, record: JobRecord) -> None:
        with self.redis.pipeline() as pipe:
            pipe.set(self._key(record.id), record.model_dump_json(), ex=self.record_ttl_s, nx=True)
            pipe.zadd(self._tenant_index(record.tenant), {record.id: record.created_at.timestamp()})
            expired = record.created_at.timestamp() - self.record_ttl_s
            pipe.zremrangebyscore(self._tenant_index(record.tenant), "-inf", expired)
            self._index_status(pipe, record, None)
            created = pipe.execute()[0]
        if not created:
            raise ValueError(f"job {record.id} already exists")

    def ids_with_status(self, status: JobStatus) -> list[str]:
        """Ids of all queued or processing jobs (the reaper walks these)."""
        return sorted(m.decode() for m in self.redis.smembers(self._status_set(status)))

    def active_counts(self, tenant: str) -> tuple[int, int]:
        """(queued, processing) jobs of `tenant`."""
        with self.redis.pipeline() as pipe:
            pipe.scard(self._status_set(JobStatus.QUEUED, tenant))
            pipe.scard(self._status_set(JobStatus.PROCESSING, tenant))
            queued, processing = pipe.execute()
        return int(queued), int(processing)

    def claim(self, job_id: str, worker: str, lease_s: float) -> JobRecord:
        """queued -> processing for `worker` (attempt + 1), with its lease set in the same transaction."""

        def change(record: JobRecord) -> None:
            record.status = JobStatus.PROCESSING
            record.attempts += 1
            record.worker = worker
            if record.started_at is None:
                record.started_at = utcnow()

        def set_lease(pipe: Any, record: JobRecord) -> None:
            pipe.set(self.lease_key(job_id), lease_token((worker, record.attempts)), px=int(lease_s * 1000))

        return self.update(job_id, change, also=set_lease)

    def renew_lease(self, job_id: str, owner: Owner, lease_s: float) -> bool:
        """Extend the lease if `owner` still holds it; False if it was lost (expired or reaped)."""
        renewed = self.redis.eval(
            RENEW_LEASE, 1, self.lease_key(job_id), lease_token(owner), int(lease_s * 1000)
        )
        return bool(renewed)

    def lease_holder(self, job_id: str) -> str | None:
        raw = self.redis.get(self.lease_key(job_id))
        return None if raw is None else raw.decode()

    def get(self, job_id: str) -> JobRecord | None:
        raw = self.redis.get(self._key(job_id))
        return None if raw is None else JobRecord.model_validate_json(raw)

    def get_for_tenant(self, job_id: str, tenant: str) -> JobRecord | None:
        """The record only if it belongs to `tenant` (another tenant's id looks like a missing one)."""
        record = self.get(job_id)
        return record if record is not None and record.tenant == tenant else None

    def update(
        self,
        job_id: str,
        change: Callable[[JobRecord], None],
        *,
        owner: Owner | None = None,
        also: Callable[[Any, JobRecord], None] | None = None,
    ) -> JobRecord:
        """Apply `change` to the current record atomically (retried if another writer got there first).

        With `owner`, the write happens only while the job is still that worker's attempt (else
        OwnershipLostError); `also` adds commands on the changed record to the same transaction.
        """
        key = self._key(job_id)
        while True:
            with self.redis.pipeline() as pipe:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        raise JobNotFoundError(job_id)
                    record = JobRecord.model_validate_json(raw)
                    if owner is not None and (
                        record.status != JobStatus.PROCESSING or (record.worker, record.attempts) != owner
                    ):
                        raise OwnershipLostError(
                            f"job {job_id} is no longer attempt {owner[1]} of {owner[0]}"
                        )
                    before = record.status
                    change(record)
                    if record.status != before and record.status not in LEGAL_TRANSITIONS[before]:
                        raise IllegalTransitionError(job_id, before, record.status)
                    record.updated_at = utcnow()
                    pipe.multi()
                    pipe.set(key, record.model_dump_json(), keepttl=True)
                    self._index_status(pipe, record, before)
                    if record.status != JobStatus.PROCESSING and before == JobStatus.PROCESSING:
                        pipe.delete(self.lease_key(job_id))
                    if also is not None:
                        also(pipe, record)
                    pipe.execute()
                    return record
                except redis.WatchError:
                    continue

    def transition(
        self, job_id: str, status: JobStatus, *, owner: Owner | None = None, **fields: Any
    ) -> JobRecord:
        """Move to `status` (raises IllegalTransitionError) and set `fields` in the same atomic write."""

        def change(record: JobRecord) -> None:
            record.status = status
            for name, value in fields.items():
                setattr(record, name, value)
            if status == JobStatus.PROCESSING and record.started_at is None:
                record.started_at = utcnow()
            if status in TERMINAL:
                record.finished_at = utcnow()

        return self.update(job_id, change, owner=owner)

    def claim_idempotency_key(self, tenant: str, key: str, job_id: str, ttl_s: int) -> str:
        """Bind `key` to `job_id` unless already bound; return the job id the key belongs to."""
        name = self._idempotency_key(tenant, key)
        if self.redis.set(name, job_id, nx=True, ex=ttl_s):
            return job_id
        existing = self.redis.get(name)
        return (
            existing.decode()
            if existing is not None
            else self.claim_idempotency_key(tenant, key, job_id, ttl_s)
        )

    def idempotent_job(self, tenant: str, key: str) -> str | None:
        """The job id an Idempotency-Key is bound to, if any."""
        existing = self.redis.get(self._idempotency_key(tenant, key))
        return existing.decode() if existing is not None else None

    def delete(self, job_id: str) -> None:
        """Forget a record (only for a submission that failed before it was queued)."""
        record = self.get(job_id)
        if record is not None:
            with self.redis.pipeline() as pipe:
                pipe.zrem(self._tenant_index(record.tenant), job_id)
                for status in ACTIVE:
                    pipe.srem(self._status_set(status), job_id)
                    pipe.srem(self._status_set(status, record.tenant), job_id)
                pipe.execute()
        self.redis.delete(self._key(job_id))

    def release_idempotency_key(self, tenant: str, key: str, job_id: str) -> None:
        """Unbind `key` if it still points at `job_id` (the job could not be created)."""
        name = self._idempotency_key(tenant, key)
        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(name)
                if pipe.get(name) == job_id.encode():
                    pipe.multi()
                    pipe.delete(name)
                    pipe.execute()
            except redis.WatchError:
                pass

    def list_for_tenant(
        self, tenant: str, *, status: JobStatus | None = None, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[JobRecord], str | None]:
        """Newest first; `cursor` is the opaque value returned by the previous page."""
        records: list[JobRecord] = []
        for record in self._iter_tenant(tenant, decode_cursor(cursor)):
            if status is None or record.status == status:
                records.append(record)
                if len(records) > limit:
                    break
        if len(records) > limit:
            last = records[limit - 1]
            return records[:limit], encode_cursor(last.created_at.timestamp(), last.id)
        return records, None

    def _iter_tenant(self, tenant: str, after: tuple[float, str] | None) -> Iterator[JobRecord]:
        index = self._tenant_index(tenant)
        max_score: float | str = "+inf" if after is None else after[0]
        seen_at_max, page = 0, 100  # entries already read whose score equals max_score
        while True:
            entries = self.redis.zrevrangebyscore(
                index, max_score, "-inf", start=seen_at_max, num=page, withscores=True
            )
            for member, score in entries:
                job_id = member.decode()
                if after is not None and (score, job_id) >= after:
                    continue  # at or before the cursor (ties broken by id, descending)
                record = self.get(job_id)
                if record is not None:  # None: the record expired
                    yield record
            if len(entries) < page:
                return
            last = entries[-1][1]
            at_last = sum(1 for _, score in entries if score == last)
            seen_at_max = seen_at_max + at_last if last == max_score else at_last
            max_score = last


def lease_token(owner: Owner) -> str:
    return f"{owner[0]}#{owner[1]}"


def encode_cursor(score: float, job_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([score, job_id]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[float, str] | None:
    """Raise ValueError for a cursor this service did not issue."""
    if cursor is None:
        return None
    try:
        score, job_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        value = float(score)
    except (ValueError, TypeError) as exc:
        raise ValueError("invalid cursor") from exc
    if not math.isfinite(value) or not isinstance(job_id, str):
        raise ValueError("invalid cursor")
    return value, job_id
