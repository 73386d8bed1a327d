"""Job events -> webhook outbox, for the events the job subscribed to."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from service.jobs import JobRecord
from service.tenants import TenantDirectory
from service.views import job_view
from service.webhooks import WebhookOutbox

EVENT_TYPES = {"start": "job.started", "progress": "job.progress", "completed": "job.completed"}


@dataclass
class JobNotifier:
    """Builds event payloads from job records and queues them; progress is throttled per job."""

    outbox: WebhookOutbox
    tenants: TenantDirectory
    base_url: str
    progress_interval_s: float = 1.0
    _last_progress: dict[str, float] = field(default_factory=dict)

    def notify(self, record: JobRecord, event: str) -> str | None:
        """Queue `event` for `record`'s webhook; return the message id, or None if not subscribed."""
        url = record.params.webhook_url
        tenant = self.tenants.get(record.tenant)
        if url is None or tenant is None or event not in record.params.webhook_events:
            return None
        if event == "progress":
            now = time.monotonic()
            if now - self._last_progress.get(record.id, -1e9) < self.progress_interval_s:
                return None
            self._last_progress[record.id] = now
        elif event == "completed":
            self._last_progress.pop(record.id, None)
        data = job_view(record, self.base_url, storage=None).model_dump(mode="json")
        return self.outbox.enqueue(
            tenant=record.tenant,
            job_id=record.id,
            url=url,
            secret=tenant.webhook_secret,
            event_type=EVENT_TYPES[event],
            data=data,
            terminal=event == "completed",
        )
