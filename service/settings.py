"""Service settings: environment variables prefixed `VSR_` (nested with `__`), built by `load_settings`.

With no `VSR_REDIS_URL` and no `VSR_S3__BUCKET`, everything runs embedded: an in-process Redis
substitute and local-directory storage (the `make demo` path).
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from engines.settings import EngineSettings
from service.webhooks import DEFAULT_RETRY_JITTER, DEFAULT_RETRY_SCHEDULE_S
from worker.stages import IO_NICENESS

GIB = 1024**3
TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class TenantConfig(BaseModel):
    """One tenant: the SHA-256 hex digests of its API keys (several, for rotation) and its webhook secret."""

    id: str
    api_key_sha256: list[str] = Field(min_length=1)
    webhook_secret: SecretStr

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not TENANT_ID.match(value):
            raise ValueError("tenant id must be 1-63 chars of a-z, 0-9, '_' or '-', starting alphanumeric")
        return value

    @field_validator("api_key_sha256")
    @classmethod
    def _valid_digests(cls, value: list[str]) -> list[str]:
        for digest in value:
            if not SHA256_HEX.match(digest):
                raise ValueError("api_key_sha256 entries must be 64 lowercase hex digits (sha256 of the key)")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _valid_secret(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        try:
            key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except ValueError:
            key = b""
        if not secret.startswith("whsec_") or len(key) < 24:
            raise ValueError("webhook_secret must be 'whsec_' + base64 of at least 24 bytes")
        return value


class S3Settings(BaseModel):
    """An S3-compatible server. Presigned URLs are minted for `public_endpoint_url` (the Host is signed)."""

    bucket: str
    endpoint_url: str | None = None
    public_endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    input_buckets: list[str] = Field(default_factory=list, description="buckets s3:// inputs may come from")
    presign_expiry_s: int = Field(3600, ge=1, le=604800)
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(60.0, gt=0)
    max_attempts: int = Field(5, ge=1)


class Settings(BaseSettings):
    """Everything the API and the worker need; see the README for each variable."""

    model_config = SettingsConfigDict(env_prefix="VSR_", env_nested_delimiter="__", extra="ignore")

    redis_url: str | None = Field(None, description="None: in-process Redis substitute (embedded mode)")
    key_prefix: str = "vsr"
    queue_name: str = "vsr"
    s3: S3Settings | None = None
    data_dir: Path = Field(Path("vsr-data"), description="local storage and upload spool directory")
    public_base_url: str | None = Field(None, description="base of the URLs in responses; default: request's")

    tenants: list[TenantConfig] = Field(default_factory=list)
    tenants_file: Path | None = Field(None, description="JSON list of tenants (e.g. a mounted secret)")

    max_upload_bytes: int = Field(2 * GIB, ge=1)
    tenant_max_queued: int = Field(500, ge=1, description="per-tenant queued jobs before 429")
    tenant_max_active: int = Field(1000, ge=1, description="per-tenant queued + processing jobs before 429")
    tenant_retry_after_s: int = Field(30, ge=1)
    idempotency_ttl_s: int = Field(86400, ge=1)
    job_timeout_s: int = Field(3600, ge=1)
    job_record_ttl_s: int = Field(30 * 86400, ge=60)
    max_input_pixels: int = Field(1920 * 1088, ge=1, description="largest input frame (width x height)")
    max_input_frames: int = Field(108_000, ge=1, description="longest input (frames; 1 h at 30 fps)")
    models: list[str] = Field(default_factory=lambda: ["fastvsr-tiny"], min_length=1)
    model_dir: Path | None = Field(None, description="load the default model from this directory instead")

    lease_s: float = Field(30.0, gt=0, description="a worker's hold on a job; renewed every lease_s / 3")
    max_attempts: int = Field(3, ge=1, description="worker losses a job survives before failing worker_lost")
    reaper_interval_s: float = Field(5.0, gt=0, description="how often abandoned jobs are looked for")
    requeue_grace_s: float = Field(
        30.0, ge=0, description="age before a queued job missing from RQ is re-queued"
    )
    storage_retry_budget_s: float = Field(120.0, ge=0, description="how long transfers are retried")
    redis_retry_budget_s: float = Field(60.0, ge=0, description="how long a worker waits out a Redis outage")
    shutdown: Literal["requeue", "finish"] = Field(
        "requeue", description="on SIGTERM: requeue the job at the next chunk, or finish it first"
    )

    device: str = "cpu"
    engine: EngineSettings = Field(default_factory=EngineSettings)
    chunk_frames: int = Field(8, ge=1)
    memory_budget_mb: int | None = Field(
        4096, ge=1, description="activation memory of one chunk; larger frames run as tiles (None: off)"
    )
    io_niceness: int = Field(
        IO_NICENESS, ge=0, le=19, description="how much lower decode/encode threads' CPU priority is"
    )
    temporal_blend: float = Field(
        0.4,  # worker.temporal_stabilizer.DEFAULT_TEMPORAL_BLEND (not imported: the API image has no cv2)
        ge=0,
        lt=1,
        description="flow-guided temporal stabilizer: share of the warped previous frame (0: off)",
    )
    motion_threads: int | None = Field(
        None, ge=1, description="threads estimating the stabilizer's motion (None: 1 on CPU, <= 8 on GPU)"
    )
    progress_interval_s: float = Field(1.0, ge=0, description="job record / webhook progress throttle")
    worker_metrics_port: int | None = Field(9101, description="worker's /metrics port; None: off")

    webhook_allow_private: bool = Field(False, description="allow loopback/private callback addresses")
    webhook_retry_schedule_s: list[float] = Field(
        default_factory=lambda: list(DEFAULT_RETRY_SCHEDULE_S),
        min_length=1,
        description="Standard Webhooks' schedule: delay before each attempt of a terminal event",
    )
    webhook_retry_jitter: float = Field(
        DEFAULT_RETRY_JITTER, ge=0, lt=1, description="retry delays spread uniformly by +-this fraction"
    )
    webhook_timeout_s: float = Field(15.0, gt=0)

    @field_validator("webhook_retry_schedule_s")
    @classmethod
    def _non_negative_delays(cls, value: list[float]) -> list[float]:
        if any(delay < 0 for delay in value):
            raise ValueError("webhook_retry_schedule_s delays must be >= 0")
        return value

    @property
    def embedded(self) -> bool:
        return self.redis_url is None

    @property
    def default_model(self) -> str:
        return self.models[0]

    @model_validator(mode="after")
    def _load_tenants_file(self) -> Settings:
        if self.tenants_file is not None:
            try:
                entries: Any = json.loads(self.tenants_file.read_text())
            except (OSError, ValueError) as exc:
                raise ValueError(f"cannot read tenants_file {self.tenants_file}: {exc}") from exc
            self.tenants = [*self.tenants, *(TenantConfig.model_validate(e) for e in entries)]
        ids = [t.id for t in self.tenants]
        if len(ids) != len(set(ids)):
            raise ValueError(f"duplicate tenant ids in {ids}")
        return self

    @property
    def storage_backend(self) -> Literal["s3", "local"]:
        return "s3" if self.s3 is not None else "local"


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment (tests pass keyword overrides). Never called at import."""
    return Settings(**overrides)
