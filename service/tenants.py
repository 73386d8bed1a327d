"""API keys -> tenants. Keys are random tokens; only their SHA-256 digests are configured and compared."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from service.settings import Settings, TenantConfig

KEY_PREFIX = "vsr_"


@dataclass(frozen=True)
class Tenant:
    id: str
    webhook_secret: str


def hash_api_key(key: str) -> str:
    """SHA-256 hex digest of an API key (keys are 256-bit random tokens, so no slow hash is needed)."""
    return hashlib.sha256(key.encode()).hexdigest()


def generate_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class TenantDirectory:
    """Looks tenants up by API key in constant time per configured digest."""

    def __init__(self, tenants: list[TenantConfig]) -> None:
        self._entries = [
            (digest, Tenant(t.id, t.webhook_secret.get_secret_value()))
            for t in tenants
            for digest in t.api_key_sha256
        ]
        self._by_id = {t.id: Tenant(t.id, t.webhook_secret.get_secret_value()) for t in tenants}

    @classmethod
    def from_settings(cls, settings: Settings) -> TenantDirectory:
        return cls(settings.tenants)

    def authenticate(self, key: str) -> Tenant | None:
        digest = hash_api_key(key)
        found = None
        for candidate, tenant in self._entries:  # compare with every entry: timing reveals nothing
            if hmac.compare_digest(candidate, digest):
                found = tenant
        return found

    def get(self, tenant_id: str) -> Tenant | None:
        return self._by_id.get(tenant_id)

    def __len__(self) -> int:
        return len(self._by_id)
