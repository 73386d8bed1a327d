"""/v1/jobs: submit, read, list, cancel, fetch the result, delete the files."""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from service.api.deps import BaseUrlDep, ServicesDep, TenantDep
from service.api.errors import ApiError, describe_validation
from service.api.sniff import sniff_container
from service.api.uploads import ReceivedUpload, receive_upload
from service.container import Services
from service.job_queue import cancel_queued, enqueue_job, new_rq_job_id
from service.jobs import IllegalTransitionError, InputRef, JobParams, JobRecord, JobStatus, new_job_id, utcnow
from service.tenants import Tenant
from service.url_safety import UnsafeURLError, check_callback_url
from service.views import JobView, job_view, output_filename

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/(?P<key>[^\x00-\x1f]{1,1024})$")
MAX_JSON_BYTES = 64 * 1024


class ReferenceSubmit(JobParams):
    """A job whose input already sits in an allow-listed bucket."""

    input: str = Field(description="s3://bucket/key of the input video", examples=["s3://videos/clip.mp4"])


def add_schemas(spec: dict[str, Any]) -> dict[str, Any]:
    """Define the schemas `openapi_extra` refers to (FastAPI only collects those of typed bodies)."""
    definition = ReferenceSubmit.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(definition.pop("$defs", {}))
    schemas["ReferenceSubmit"] = definition
    return spec


class JobList(BaseModel):
    jobs: list[JobView]
    next_cursor: str | None


SUBMIT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "params": {"type": "string", "description": "JSON of JobParams"},
                    },
                }
            },
            "application/json": {"schema": {"$ref": "#/components/schemas/ReferenceSubmit"}},
        },
    }
}


def _parse_params(raw: bytes | None, model: type[JobParams]) -> JobParams:
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise ApiError(400, "malformed_json", "the request body is not valid JSON") from exc
        raise ApiError(422, "invalid_params", describe_validation(exc.errors())) from exc


def _check_params(params: JobParams, services: Services) -> JobParams:
    settings = services.settings
    if params.model is None:
        params = params.model_copy(update={"model": settings.default_model})
    elif params.model not in settings.models:
        raise ApiError(422, "unknown_model", f"model must be one of {settings.models}, got {params.model!r}")
    if params.webhook_url is not None:
        try:
            check_callback_url(params.webhook_url, allow_private=settings.webhook_allow_private)
        except UnsafeURLError as exc:
            raise ApiError(422, "invalid_webhook_url", f"webhook_url refused: {exc}") from exc
    return params


def _check_tenant_limits(services: Services, tenant: Tenant) -> None:
    """429 when the tenant already has too many jobs waiting, or in flight (queued + processing)."""
    settings = services.settings
    queued, processing = services.store.active_counts(tenant.id)
    retry = {"Retry-After": str(settings.tenant_retry_after_s)}
    if queued >= settings.tenant_max_queued:
        raise ApiError(
            429, "too_many_jobs", f"{queued} jobs already queued (limit {settings.tenant_max_queued})", retry
        )
    if queued + processing >= settings.tenant_max_active:
        message = f"{queued + processing} jobs already in flight (limit {settings.tenant_max_active})"
        raise ApiError(429, "too_many_jobs", message, retry)


def _replay(services: Services, tenant: Tenant, job_id: str, base: str) -> Response | None:
    record = services.store.get_for_tenant(job_id, tenant.id)
    if record is None:
        return None
    view = job_view(record, base, services.storage)
    return Response(
        view.model_dump_json(),
        status_code=202,
        media_type="application/json",
        headers={"Idempotent-Replayed": "true", "Location": view.urls.get},
    )


async def _read_submission(
    request: Request, services: Services
) -> tuple[JobParams, ReceivedUpload | None, str | None]:
    """(params, spooled upload or None, s3:// reference or None)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        spool = services.settings.data_dir / "spool"
        upload = await receive_upload(request, spool, services.settings.max_upload_bytes)
        try:
            return _parse_params(upload.params, JobParams), upload, None
        except ApiError:
            upload.discard()
            raise
    if content_type == "application/json":
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > MAX_JSON_BYTES:
                raise ApiError(413, "params_too_large", f"JSON bodies are limited to {MAX_JSON_BYTES} bytes")
        submit = _parse_params(bytes(body), ReferenceSubmit)
        assert isinstance(submit, ReferenceSubmit)
        return JobParams(**submit.model_dump(exclude={"input"})), None, submit.input
    raise ApiError(
        415, "unsupported_media_type", "send multipart/form-data (file + params) or application/json (input)"
    )


def _store_upload(services: Services, tenant: Tenant, job_id: str, upload: ReceivedUpload) -> InputRef:
    assert upload.path is not None
    if upload.bytes == 0:
        raise ApiError(422, "empty_file", "the uploaded file is empty")
    ext = sniff_container(upload.path)
    if ext is None:
        raise ApiError(415, "not_a_video", "the uploaded file does not start like a video container")
    key = f"jobs/{tenant.id}/{job_id}/input.{ext}"
    services.storage.put_file(key, upload.path, content_type="application/octet-stream")
    filename = (upload.filename or "")[-255:] or None
    return InputRef(key=key, filename=filename, bytes=upload.bytes)


def _check_reference(services: Services, uri: str) -> InputRef:
    settings = services.settings
    match = S3_URI.match(uri)
    if match is None:
        raise ApiError(422, "invalid_input", "input must be s3://bucket/key")
    if settings.s3 is None:
        raise ApiError(422, "unsupported_reference", "this service has no S3 storage configured")
    bucket, key = match["bucket"], match["key"]
    if bucket not in settings.s3.input_buckets:  # never the service's own bucket: other tenants' files
        raise ApiError(403, "bucket_not_allowed", f"bucket {bucket!r} is not in the input allow-list")
    size = services.storage.size(key, bucket=bucket)
    if size is None:
        raise ApiError(422, "input_not_found", f"no object at {uri}")
    if size > settings.max_upload_bytes:
        raise ApiError(
            413, "upload_too_large", f"the input exceeds the {settings.max_upload_bytes}-byte limit"
        )
    return InputRef(bucket=bucket, key=key, filename=key.rsplit("/", 1)[-1][-255:], bytes=size)


@router.post("", status_code=202, response_model=JobView, openapi_extra=SUBMIT_BODY)
async def create_job(
    request: Request,
    services: ServicesDep,
    tenant: TenantDep,
    base: BaseUrlDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    """Submit a video: a multipart upload (`file`, `params`) or JSON with an `s3://` input."""
    if idempotency_key is not None:
        if not IDEMPOTENCY_KEY.match(idempotency_key):
            raise ApiError(
                422, "invalid_idempotency_key", "Idempotency-Key must be 1-255 printable ASCII chars"
            )
        replay = await run_in_threadpool(_replay_key, services, tenant, idempotency_key, base)
        if replay is not None:  # answered before the body is read: a retried upload is not sent again
            return replay
    # Refuse over-limit tenants before the body is read, so a rate-limited client is not made to upload.
    await run_in_threadpool(_check_tenant_limits, services, tenant)
    params, upload, reference = await _read_submission(request, services)
    try:  # blocking work (DNS checks of the webhook URL, storage, Redis) runs off the event loop
        return await run_in_threadpool(
            _create, services, tenant, base, params, upload, reference, idempotency_key
        )
    finally:
        if upload is not None:
            upload.discard()


def _replay_key(services: Services, tenant: Tenant, key: str, base: str) -> Response | None:
    job_id = services.store.idempotent_job(tenant.id, key)
    return None if job_id is None else _replay(services, tenant, job_id, base)


def _create(
    services: Services,
    tenant: Tenant,
    base: str,
    params: JobParams,
    upload: ReceivedUpload | None,
    reference: str | None,
    idempotency_key: str | None,
) -> Response:
    params = _check_params(params, services)
    _check_tenant_limits(services, tenant)
    job_id = new_job_id()
    if idempotency_key is not None:
        owner = services.store.claim_idempotency_key(
            tenant.id, idempotency_key, job_id, services.settings.idempotency_ttl_s
        )
        if owner != job_id:
            replay = _replay(services, tenant, owner, base)
            if replay is None:
                raise ApiError(
                    409, "idempotency_conflict", "a request with this Idempotency-Key is in progress"
                )
            return replay
    input_ref: InputRef | None = None
    try:
        input_ref = (
            _store_upload(services, tenant, job_id, upload)
            if upload
            else _check_reference(services, reference or "")
        )
        now = utcnow()
        record = JobRecord(
            id=job_id,
            tenant=tenant.id,
            created_at=now,
            updated_at=now,
            params=params,
            input=input_ref,
            rq_job_id=new_rq_job_id(job_id),
        )
        services.store.create(record)
        enqueue_job(services.queue, job_id, record.rq_job_id or "", services.settings)
    except BaseException:
        if idempotency_key is not None:
            services.store.release_idempotency_key(tenant.id, idempotency_key, job_id)
        if input_ref is not None and input_ref.bucket is None:
            services.janitor.delete(input_ref.key)
        services.store.delete(job_id)
        raise
    services.metrics.jobs.labels(status=JobStatus.QUEUED).inc()
    log.info("job %s queued for tenant %s", job_id, tenant.id)
    view = job_view(record, base, services.storage)
    return Response(
        view.model_dump_json(),
        status_code=202,
        media_type="application/json",
        headers={"Location": view.urls.get},
    )


def _owned(services: Services, tenant: Tenant, job_id: str) -> JobRecord:
    record = services.store.get_for_tenant(job_id, tenant.id)
    if record is None:
        raise ApiError(404, "job_not_found", f"no job {job_id[:64]!r}")
    return record


@router.get("", response_model=JobList)
def list_jobs(
    services: ServicesDep,
    tenant: TenantDep,
    base: BaseUrlDep,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> JobList:
    """The tenant's jobs, newest first; pass `next_cursor` back as `cursor` for the next page."""
    try:
        records, next_cursor = services.store.list_for_tenant(
            tenant.id, status=status, limit=limit, cursor=cursor
        )
    except ValueError as exc:
        raise ApiError(422, "invalid_cursor", str(exc)) from exc
    return JobList(jobs=[job_view(r, base, services.storage) for r in records], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobView)
def get_job(job_id: str, services: ServicesDep, tenant: TenantDep, base: BaseUrlDep) -> JobView:
    """Status, progress, per-stage timings and MACs, error or output (with a presigned URL)."""
    return job_view(_owned(services, tenant, job_id), base, services.storage)


@router.post("/{job_id}/cancel", response_model=JobView, responses={202: {"model": JobView}})
def cancel_job(job_id: str, services: ServicesDep, tenant: TenantDep, base: BaseUrlDep) -> Response:
    """Cancel a job: at once if queued; a running job stops at its next chunk (202)."""
    record = _owned(services, tenant, job_id)
    status_code = 200
    if record.status == JobStatus.QUEUED:
        try:
            record = services.store.transition(job_id, JobStatus.CANCELED)
            cancel_queued(services.queue, record.rq_job_id)
            if record.input.bucket is None:
                services.janitor.delete(record.input.key)
            services.metrics.jobs.labels(status=JobStatus.CANCELED).inc()
            services.notifier.notify(record, "completed")
        except IllegalTransitionError:  # a worker took it meanwhile: ask it to stop
            record = services.store.get(job_id) or record
    if record.status == JobStatus.PROCESSING:
        record = services.store.update(job_id, lambda r: setattr(r, "cancel_requested", True))
        status_code = 202 if record.status == JobStatus.PROCESSING else 200
    elif record.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        raise ApiError(409, "job_finished", f"job {job_id} already {record.status}")
    view = job_view(record, base, services.storage)
    return Response(view.model_dump_json(), status_code=status_code, media_type="application/json")


@router.get(
    "/{job_id}/result",
    status_code=307,
    responses={200: {"content": {"video/mp4": {}}}, 307: {"description": "redirect to a presigned URL"}},
)
def get_result(job_id: str, services: ServicesDep, tenant: TenantDep) -> Response:
    """The output video: a redirect to a presigned URL (S3) or the file itself (local storage)."""
    record = _owned(services, tenant, job_id)
    if record.status != JobStatus.SUCCEEDED or record.output is None:
        raise ApiError(
            409, "no_result", f"job {job_id} is {record.status}; only succeeded jobs have a result"
        )
    if record.files_deleted:
        raise ApiError(410, "result_deleted", f"the files of job {job_id} were deleted")
    filename = output_filename(record)
    url = services.storage.presigned_url(record.output.key, filename)
    if url is not None:
        return RedirectResponse(url, status_code=307)
    path = services.storage.local_path(record.output.key)
    if path is None:
        raise ApiError(410, "result_missing", f"the output of job {job_id} is no longer stored")
    media = "video/mp4" if record.params.container == "mp4" else "video/x-matroska"
    return FileResponse(path, media_type=media, filename=filename)


@router.delete("/{job_id}", status_code=204)
def delete_job_files(job_id: str, services: ServicesDep, tenant: TenantDep) -> Response:
    """Delete the job's stored input and output (the record stays, marked `files_deleted`)."""
    record = _owned(services, tenant, job_id)
    if not record.terminal:
        raise ApiError(409, "job_active", f"job {job_id} is {record.status}; cancel it first")
    if record.input.bucket is None:
        services.storage.delete(record.input.key)
    if record.output is not None:
        services.storage.delete(record.output.key)
    services.store.update(job_id, lambda r: setattr(r, "files_deleted", True))
    return Response(status_code=204)
