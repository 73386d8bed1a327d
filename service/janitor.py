"""Deletes stored objects now, or later if storage is down: what could not be deleted is remembered in
Redis and retried by the reaper, so no temporary object outlives an outage."""

from __future__ import annotations

import logging

import redis

from service.storage import Storage, StorageError

log = logging.getLogger(__name__)


class StorageJanitor:
    def __init__(self, storage: Storage, client: redis.Redis, prefix: str = "vsr") -> None:
        self.storage, self.redis = storage, client
        self.pending = f"{prefix}:gc"

    def delete(self, key: str) -> None:
        """Delete one object (a key) or everything under a prefix (ending in '/')."""
        try:
            self._delete(key)
        except StorageError as exc:
            log.warning("cannot delete %s now (%s); will retry", key, exc)
            self.redis.sadd(self.pending, key)

    def _delete(self, key: str) -> None:
        if key.endswith("/"):
            self.storage.delete_prefix(key)
        else:
            self.storage.delete(key)

    def collect(self) -> int:
        """Retry pending deletions; return how many succeeded."""
        done = 0
        for raw in self.redis.smembers(self.pending):
            key = raw.decode()
            try:
                self._delete(key)
            except StorageError:
                continue
            self.redis.srem(self.pending, key)
            done += 1
        return done
