"""The authoritative job record on a real Redis: legal transitions only, idempotency, listing pages."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import redis

from service.jobs import (
    LEGAL_TRANSITIONS,
    IllegalTransitionError,
    InputRef,
    JobParams,
    JobRecord,
    JobStatus,
    JobStore,
    decode_cursor,
    new_job_id,
    utcnow,
)


@pytest.fixture
def store(redis_url: str) -> JobStore:
    return JobStore(redis.Redis.from_url(redis_url), prefix="test")


def make_record(store: JobStore, tenant: str = "acme", offset_s: float = 0.0) -> JobRecord:
    now = utcnow() + timedelta(seconds=offset_s)
    record = JobRecord(
        id=new_job_id(),
        tenant=tenant,
        created_at=now,
        updated_at=now,
        params=JobParams(),
        input=InputRef(key="k"),
    )
    store.create(record)
    return record


@pytest.mark.parametrize("start", list(JobStatus))
@pytest.mark.parametrize("target", list(JobStatus))
def test_only_legal_transitions_are_applied(store: JobStore, start: JobStatus, target: JobStatus) -> None:
    record = make_record(store)
    path = {
        JobStatus.QUEUED: [],
        JobStatus.PROCESSING: [JobStatus.PROCESSING],
        JobStatus.SUCCEEDED: [JobStatus.PROCESSING, JobStatus.SUCCEEDED],
        JobStatus.FAILED: [JobStatus.FAILED],
        JobStatus.CANCELED: [JobStatus.CANCELED],
    }[start]
    for status in path:
        store.transition(record.id, status)
    if target == start:
        return
    if target in LEGAL_TRANSITIONS[start]:
        assert store.transition(record.id, target).status == target
    else:
        with pytest.raises(IllegalTransitionError):
            store.transition(record.id, target)
        assert store.get(record.id).status == start  # type: ignore[union-attr]


def test_terminal_transition_stamps_times(store: JobStore) -> None:
    record = make_record(store)
    started = store.transition(record.id, JobStatus.PROCESSING)
    assert started.started_at is not None and started.finished_at is None
    done = store.transition(record.id, JobStatus.SUCCEEDED)
    assert done.finished_at is not None and done.finished_at >= started.started_at


def test_concurrent_updates_are_not_lost(store: JobStore) -> None:
    record = make_record(store)

    def bump() -> None:
        for _ in range(25):
            store.update(record.id, lambda r: setattr(r, "attempts", r.attempts + 1))

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.get(record.id).attempts == 100  # type: ignore[union-attr]


def test_one_of_two_racing_cancel_and_start_wins(store: JobStore) -> None:
    record = make_record(store)
    store.transition(record.id, JobStatus.CANCELED)
    with pytest.raises(IllegalTransitionError):
        store.transition(record.id, JobStatus.PROCESSING)


def test_tenant_sees_only_its_records(store: JobStore) -> None:
    mine = make_record(store, "acme")
    assert store.get_for_tenant(mine.id, "acme") is not None
    assert store.get_for_tenant(mine.id, "other") is None


def test_idempotency_key_binds_once_per_tenant(store: JobStore) -> None:
    assert store.claim_idempotency_key("acme", "k1", "job-a", 60) == "job-a"
    assert store.claim_idempotency_key("acme", "k1", "job-b", 60) == "job-a"
    assert store.claim_idempotency_key("other", "k1", "job-c", 60) == "job-c"
    store.release_idempotency_key("acme", "k1", "job-b")  # not the owner: no effect
    assert store.idempotent_job("acme", "k1") == "job-a"
    store.release_idempotency_key("acme", "k1", "job-a")
    assert store.idempotent_job("acme", "k1") is None


def test_listing_pages_newest_first_with_status_filter(store: JobStore) -> None:
    records = [make_record(store, "acme", offset_s=i) for i in range(7)]
    make_record(store, "other")
    for record in records[::2]:
        store.transition(record.id, JobStatus.FAILED)
    seen, cursor = [], None
    while True:
        page, cursor = store.list_for_tenant("acme", limit=3, cursor=cursor)
        seen += [r.id for r in page]
        if cursor is None:
            break
    assert seen == [r.id for r in reversed(records)]
    failed, cursor = store.list_for_tenant("acme", status=JobStatus.FAILED, limit=10)
    assert [r.id for r in failed] == [r.id for r in reversed(records[::2])] and cursor is None


def test_listing_survives_identical_timestamps(store: JobStore) -> None:
    now = utcnow()
    ids = set()
    for _ in range(5):
        record = JobRecord(
            id=new_job_id(),
            tenant="acme",
            created_at=now,
            updated_at=now,
            params=JobParams(),
            input=InputRef(key="k"),
        )
        store.create(record)
        ids.add(record.id)
    seen, cursor = [], None
    while True:
        page, cursor = store.list_for_tenant("acme", limit=2, cursor=cursor)
        seen += [r.id for r in page]
        if cursor is None:
            break
    assert len(seen) == 5 and set(seen) == ids


def test_foreign_cursor_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid cursor"):
        decode_cursor("not-a-cursor!")
