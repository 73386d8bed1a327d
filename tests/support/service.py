"""Tenants with fresh API keys, and a few checks the service tests share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from service.settings import TenantConfig
from service.tenants import generate_api_key, hash_api_key
from service.webhook_signing import generate_secret


@dataclass(frozen=True)
class ApiTenant:
    config: TenantConfig
    key: str

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def secret(self) -> str:
        return self.config.webhook_secret.get_secret_value()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def make_tenant(tenant_id: str) -> ApiTenant:
    key = generate_api_key()
    config = TenantConfig(id=tenant_id, api_key_sha256=[hash_api_key(key)], webhook_secret=generate_secret())
    return ApiTenant(config, key)


def files_under(root: Path) -> list[Path]:
    """Every regular file below `root` (nothing if it does not exist)."""
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
