"""Health, readiness, metrics and the service status."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from service.api.deps import ServicesDep, TenantDep
from service.api.errors import error_response
from service.job_queue import live_workers, queue_depth
from service.storage import StorageError

router = APIRouter(tags=["system"])


class Health(BaseModel):
    status: str


class ServiceStatus(BaseModel):
    queue: str
    queue_depth: int
    workers: int
    models: list[str]
    default_model: str
    storage: str
    max_upload_bytes: int


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up (no dependency is checked)."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"description": "a dependency is down"}})
def readyz(services: ServicesDep) -> Response:
    """Redis and storage answer. Workers are not required: they may scale to zero."""
    try:
        services.redis.ping()
    except Exception as exc:
        return error_response(503, "redis_unavailable", f"redis: {exc}")
    try:
        services.storage.ping()
    except StorageError as exc:
        return error_response(503, "storage_unavailable", f"storage: {exc}")
    return Response(Health(status="ready").model_dump_json(), media_type="application/json")


@router.get("/metrics", response_class=Response)
def metrics(services: ServicesDep) -> Response:
    """Prometheus exposition format."""
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/status", response_model=ServiceStatus)
def service_status(services: ServicesDep, tenant: TenantDep) -> ServiceStatus:
    """Queue depth, live workers and what the service offers."""
    settings = services.settings
    return ServiceStatus(
        queue=settings.queue_name,
        queue_depth=queue_depth(services.queue),
        workers=live_workers(services.queue),
        models=settings.models,
        default_model=settings.default_model,
        storage=settings.storage_backend,
        max_upload_bytes=settings.max_upload_bytes,
    )
