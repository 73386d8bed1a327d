"""The web console (static HTML/CSS/ES modules from service/console/, served at `/`) and the one API
route it adds: `GET /v1/jobs/{id}/input`, the job's uploaded input (the "before" of the console's
before/after comparison), like `/result`: the file itself (local storage) or a 307 to a presigned URL.
With `?redirect=false` it answers `{"url": ...}` instead, so a browser can put a presigned URL into a
<video> without the bucket allowing cross-origin reads."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel

from service.api.deps import BaseUrlDep, ServicesDep, TenantDep
from service.api.errors import ApiError
from service.jobs import JobStatus

router = APIRouter()
STATIC_DIR = Path(__file__).resolve().parents[1] / "console"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
INPUT_TYPES = {".mp4": "video/mp4", ".mov": "video/quicktime", ".mkv": "video/x-matroska"}
# The console needs nothing from elsewhere but videos (presigned storage URLs, or blob: copies).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob: http: https:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class InputLink(BaseModel):
    url: str


def _static(relative: str) -> Response:
    if "\x00" in relative:  # the filesystem would refuse it with a ValueError (a 500)
        raise ApiError(404, "not_found", "no such console file")
    parts = PurePosixPath(relative).parts
    path = STATIC_DIR.joinpath(*parts).resolve() if parts else STATIC_DIR / "index.html"
    media = MEDIA_TYPES.get(path.suffix)
    if ".." in parts or not path.is_relative_to(STATIC_DIR) or not path.is_file() or media is None:
        raise ApiError(404, "not_found", f"no console file {relative!r}")
    headers = dict(SECURITY_HEADERS)
    if path.suffix == ".html":
        headers["Content-Security-Policy"] = CSP
    return FileResponse(path, media_type=media, headers=headers)


@router.get("/", include_in_schema=False)
def console_index() -> Response:
    """The console's single page."""
    return _static("index.html")


@router.get("/console/{path:path}", include_in_schema=False)
def console_file(path: str) -> Response:
    return _static(path)


@router.get(
    "/v1/jobs/{job_id}/input",
    tags=["jobs"],
    status_code=307,
    responses={
        200: {"content": {"video/mp4": {}}, "model": InputLink},
        307: {"description": "redirect to a presigned URL"},
    },
)
def get_input(
    job_id: str, services: ServicesDep, tenant: TenantDep, base: BaseUrlDep, redirect: bool = True
) -> Response:
    """The job's uploaded input video: the file (local storage) or a 307 to a presigned URL (S3).
    `redirect=false` answers `{"url"}` instead. Inputs of failed or canceled jobs are not kept."""
    record = services.store.get_for_tenant(job_id, tenant.id)
    if record is None:
        raise ApiError(404, "job_not_found", f"no job {job_id}")
    if record.input.bucket is not None:
        raise ApiError(409, "input_external", f"the input is s3://{record.input.bucket}/{record.input.key}")
    if record.files_deleted or record.status in (JobStatus.FAILED, JobStatus.CANCELED):
        raise ApiError(410, "input_deleted", f"the input of job {job_id} is no longer stored")
    suffix = PurePosixPath(record.input.key).suffix
    filename = f"{job_id}_input{suffix}"
    url = services.storage.presigned_url(record.input.key, filename)
    if url is not None:
        return JSONResponse({"url": url}) if not redirect else RedirectResponse(url, status_code=307)
    if not redirect:
        return JSONResponse({"url": f"{base.rstrip('/')}/v1/jobs/{job_id}/input"})
    path = services.storage.local_path(record.input.key)
    if path is None:
        raise ApiError(410, "input_deleted", f"the input of job {job_id} is no longer stored")
    media = INPUT_TYPES.get(suffix, "application/octet-stream")
    return FileResponse(path, media_type=media, filename=filename)
