"""Everything the API and the worker share, built once per process from settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from rq import Queue

from service.connections import redis_client
from service.janitor import StorageJanitor
from service.job_queue import make_queue
from service.jobs import JobStore
from service.metrics import ServiceMetrics
from service.notify import JobNotifier
from service.settings import Settings
from service.storage import Storage, make_storage
from service.tenants import TenantDirectory
from service.webhooks import WebhookOutbox


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis
    store: JobStore
    queue: Queue
    storage: Storage
    tenants: TenantDirectory
    metrics: ServiceMetrics
    outbox: WebhookOutbox
    notifier: JobNotifier
    janitor: StorageJanitor
    embedded_worker: Any = None  # the in-process worker of embedded mode (set by `vsr serve`)


def build_services(settings: Settings, metrics: ServiceMetrics | None = None) -> Services:
    client = redis_client(settings)
    storage = make_storage(settings)
    tenants = TenantDirectory.from_settings(settings)
    outbox = WebhookOutbox(
        client,
        prefix=settings.key_prefix,
        retry_schedule_s=settings.webhook_retry_schedule_s,
        jitter=settings.webhook_retry_jitter,
        timeout_s=settings.webhook_timeout_s,
        allow_private=settings.webhook_allow_private,
    )
    notifier = JobNotifier(
        outbox,
        tenants,
        base_url=settings.public_base_url or "",
        progress_interval_s=settings.progress_interval_s,
    )
    return Services(
        settings=settings,
        redis=client,
        store=JobStore(client, prefix=settings.key_prefix, record_ttl_s=settings.job_record_ttl_s),
        queue=make_queue(client, settings),
        storage=storage,
        tenants=tenants,
        metrics=metrics or ServiceMetrics(),
        outbox=outbox,
        notifier=notifier,
        janitor=StorageJanitor(storage, client, settings.key_prefix),
    )
