"""Hostile input against the running service (real redis-server, `vsr serve`, `vsr worker`, local storage).

Every case ends in a precise 4xx with its `error.code`, or in a job that ends `failed` with its code;
never a 5xx (checked in the API's own request metrics around each test), never a dead worker, and
nothing of a refused or failed job left in storage, in the upload spool or in the workers' scratch space.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.media import make_test_clip
from tests.support import hostile_media as hm
from tests.support.processes import VsrProcess
from tests.support.redis_server import RedisServer
from tests.support.service import files_under
from tests.support.stack import ServiceStack
from tests.support.webhook_receiver import Reply, WebhookReceiver

MAX_UPLOAD = 512 * 1024
MAX_PIXELS = 256 * 256
MAX_FRAMES = 24
LIMITS = {"max_upload_bytes": MAX_UPLOAD, "max_input_pixels": MAX_PIXELS, "max_input_frames": MAX_FRAMES}
SERVER_ERROR = re.compile(r'^vsr_http_requests_total\{[^}]*status="5\d\d"\} (\S+)$', re.MULTILINE)
ACCESS_LOG_5XX = re.compile(r'HTTP/1\.[01]" 5\d\d ')


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceStack]:
    """One API and one worker, private webhook addresses refused, small input limits."""
    root = tmp_path_factory.mktemp("hostile-stack")
    overrides = {**LIMITS, "webhook_allow_private": False}
    service = ServiceStack(redis_server.url.replace("/0", "/7"), root, overrides=overrides)
    try:
        yield service.start()
    finally:
        service.stop()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid 8-frame 32x32 clip with audio, the raw material of the damaged files."""
    return make_test_clip(
        tmp_path_factory.mktemp("hostile-clips") / "clip.mp4", frames=8, width=32, height=32
    )


def server_errors(stack: ServiceStack) -> tuple[float, int]:
    """5xx answers so far: as the API's metrics count them, and as uvicorn's access log shows them (an
    exception that escapes the app never reaches the metrics middleware's counter)."""
    text = httpx.get(f"{stack.api_url}/metrics", timeout=10).text
    logged = stack.api.log.read_text(errors="replace") if stack.api.log.exists() else ""
    return sum(float(count) for count in SERVER_ERROR.findall(text)), len(ACCESS_LOG_5XX.findall(logged))


@pytest.fixture(autouse=True)
def no_server_error_no_dead_process(stack: ServiceStack) -> Iterator[None]:
    """Around every test: no new 5xx from the API, and the API and the worker still running."""
    before = server_errors(stack)
    yield
    assert server_errors(stack) == before, f"the API answered 5xx:\n{log_excerpt(stack.api)}"
    assert stack.api.alive(), log_excerpt(stack.api)
    dead = [log_excerpt(p) for p in stack.worker_processes if not p.alive()]
    assert not dead, "\n".join(dead)


def log_excerpt(process: VsrProcess, lines: int = 30) -> str:
    """The last warnings, errors, tracebacks and 5xx access-log lines of a process (each cut to 300 chars)."""
    text = process.log.read_text(errors="replace") if process.log.exists() else ""
    marks = ("WARNING", "ERROR", "Traceback", "Error", '" 5')
    picked = [line[:300] for line in text.splitlines() if any(m in line for m in marks)]
    return "\n".join(picked[-lines:])


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    """`response` is `status` with the service's error shape and `code`."""
    assert response.status_code == status, (response.status_code, response.text)
    error = response.json()["error"]
    assert error["code"] == code and error["message"], error


def job_ids(stack: ServiceStack) -> set[str]:
    """Every job id acme has (all pages)."""
    ids: set[str] = set()
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 100} | ({"cursor": cursor} if cursor else {})
        page = httpx.get(f"{stack.api_url}/v1/jobs", params=params, headers=stack.acme.headers, timeout=30)
        assert page.status_code == 200, page.text
        ids |= {job["id"] for job in page.json()["jobs"]}
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return ids


def leftovers(stack: ServiceStack, job_id: str | None = None) -> list[str]:
    """Stored objects of `job_id`, staged objects, spooled uploads and worker scratch files."""
    data = stack.root / "shared-data"
    found = stack.stored_keys(f"jobs/acme/{job_id}/") if job_id else []
    found += stack.stored_keys("tmp/")
    return found + [str(p) for p in files_under(data / "spool") + files_under(data / "work")]


@dataclass(frozen=True)
class Refused:
    """The API answers `status` with `code` and creates no job."""

    status: int
    code: str


@dataclass(frozen=True)
class Fails:
    """The API accepts the file (202); the job ends `failed` with `code`."""

    code: str


Expected = Refused | Fails


def check_upload(stack: ServiceStack, path: Path, expected: Expected, filename: str | None = None) -> None:
    """Upload `path` and check the outcome, the worker and that nothing is left behind."""
    before = job_ids(stack)
    with path.open("rb") as handle:
        response = httpx.post(
            f"{stack.api_url}/v1/jobs",
            headers=stack.acme.headers,
            files={"file": (filename or path.name, handle, "video/mp4")},
            data={"params": "{}"},
            timeout=60,
        )
    if isinstance(expected, Refused):
        assert_error(response, expected.status, expected.code)
        assert job_ids(stack) == before
        assert leftovers(stack) == []
        return
    assert response.status_code == 202, response.text
    job = response.json()
    final = stack.wait(job, timeout=120)
    assert final["status"] == "failed", final
    assert final["error"]["code"] == expected.code, (final["error"], log_excerpt(stack.worker))
    assert final["output"] is None
    assert leftovers(stack, job["id"]) == []


# --- files ------------------------------------------------------------------------------------------

FileMaker = Callable[[Path, Path], Path]  # (valid clip, folder) -> hostile file
FILE_CASES: dict[str, tuple[FileMaker, Expected]] = {
    "text-as-mp4": (lambda c, d: hm.text_file(d / "notes.mp4"), Refused(415, "not_a_video")),
    "json-as-mkv": (lambda c, d: hm.json_file(d / "data.mkv"), Refused(415, "not_a_video")),
    "png-as-mp4": (lambda c, d: hm.png_file(d / "image.mp4"), Refused(415, "not_a_video")),
    "pdf-as-mp4": (lambda c, d: hm.pdf_file(d / "doc.mp4"), Refused(415, "not_a_video")),
    "random-bytes-as-mp4": (lambda c, d: hm.random_bytes(d / "noise.mp4"), Refused(415, "not_a_video")),
    "zero-length": (lambda c, d: hm.zero_length(d / "empty.mp4"), Refused(422, "empty_file")),
    "first-6-bytes": (lambda c, d: hm.truncated(c, d / "head6.mp4", 6), Refused(415, "not_a_video")),
    "ftyp-then-noise": (lambda c, d: hm.fake_ftyp(d / "ftyp.mp4"), Fails("invalid_video")),
    "ts-sync-bytes-then-noise": (
        lambda c, d: hm.fake_transport_stream(d / "sync.mp4"),
        Fails("invalid_video"),
    ),
    "first-100-bytes": (lambda c, d: hm.truncated(c, d / "head100.mp4", 100), Fails("invalid_video")),
    "first-half": (
        lambda c, d: hm.truncated(c, d / "half.mp4", c.stat().st_size // 2),
        Fails("invalid_video"),
    ),
    "faststart-cut-in-mdat": (
        lambda c, d: hm.truncated(
            s := hm.faststart_clip(d / "fs.mp4", frames=8, width=32, height=32),
            d / "fs-cut.mp4",
            s.stat().st_size * 2 // 3,
        ),
        Fails("invalid_video"),
    ),
    "random-sample-data": (lambda c, d: hm.corrupt_samples(c, d / "garbage.mp4"), Fails("invalid_video")),
    "zeroed-sample-data": (
        lambda c, d: hm.corrupt_samples(c, d / "zeros.mp4", fill=0),
        Fails("invalid_video"),
    ),
    "moov-renamed": (
        lambda c, d: hm.renamed_box(c, d / "nomoov.mp4", b"moov", b"xxxx"),
        Fails("invalid_video"),
    ),
    "sample-table-overwritten": (lambda c, d: hm.damaged_moov(c, d / "stbl.mp4"), Fails("unsupported_codec")),
    "unknown-fourcc": (lambda c, d: hm.unknown_video_codec(c, d / "zzzz.mp4"), Fails("unsupported_codec")),
    "unknown-mkv-codec-id": (
        lambda c, d: hm.unknown_mkv_codec(hm.mkv_clip(d / "ok.mkv", 4), d / "codec.mkv"),
        Fails("unsupported_codec"),
    ),
    "audio-only-mp4": (lambda c, d: hm.audio_only(d / "tone.mp4"), Fails("invalid_video")),
    "audio-only-mkv": (lambda c, d: hm.audio_only(d / "tone.mkv"), Fails("invalid_video")),
    "video-track-without-frames": (
        lambda c, d: hm.empty_video_track(d / "nothing.mp4"),
        Fails("invalid_video"),
    ),
    "one-320x320-frame": (lambda c, d: hm.bomb_clip(d / "big.mp4", 320, 320), Fails("input_too_large")),
    "one-4096x4096-frame-bomb": (
        lambda c, d: hm.bomb_clip(d / "bomb.mp4", 4096, 4096),
        Fails("input_too_large"),
    ),
    "header-says-16x16-frames-are-320x320": (
        lambda c, d: hm.lying_dimensions(hm.bomb_clip(d / "b.mp4", 320, 320), d / "liar.mp4", 16, 16),
        Fails("input_too_large"),
    ),
    "3000-tiny-frames": (lambda c, d: hm.many_frames(d / "long.mp4", 3000), Fails("input_too_long")),
    "200-frames-header-claims-0.1s": (
        lambda c, d: hm.lying_mkv_duration(hm.mkv_clip(d / "l.mkv", 200), d / "short-liar.mkv", 0.1),
        Fails("input_too_long"),
    ),
    "4-frames-header-claims-115-days": (
        lambda c, d: hm.lying_mkv_duration(hm.mkv_clip(d / "s.mkv", 4), d / "long-liar.mkv", 1e7),
        Fails("input_too_long"),
    ),
    "frame-size-changes-mid-stream": (
        lambda c, d: hm.size_change_stream(d / "resize.ts", [(32, 32, 12), (48, 48, 4)]),
        Fails("invalid_video"),
    ),
    "small-frames-then-320x320": (
        lambda c, d: hm.size_change_stream(d / "grow.ts", [(32, 32, 12), (320, 320, 4)]),
        Fails("invalid_video"),
    ),
}


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_hostile_file(stack: ServiceStack, clip: Path, tmp_path: Path, case: str) -> None:
    make, expected = FILE_CASES[case]
    check_upload(stack, make(clip, tmp_path), expected)


def test_header_that_claims_a_larger_size_is_ignored(stack: ServiceStack, clip: Path, tmp_path: Path) -> None:
    """The coded frame size decides, not the container's claim (so this one succeeds, at the real size)."""
    liar = hm.lying_dimensions(clip, tmp_path / "claims-4000.mp4", 4000, 4000)
    final = stack.wait(stack.submit(liar), timeout=120)
    assert final["status"] == "succeeded", final
    assert (final["output"]["width"], final["output"]["height"]) == (128, 128)


# --- request bodies -----------------------------------------------------------------------------------


def post(stack: ServiceStack, content: bytes, content_type: str | None, **headers: str) -> httpx.Response:
    extra = {"Content-Type": content_type} if content_type else {}
    return httpx.post(
        f"{stack.api_url}/v1/jobs",
        headers={**stack.acme.headers, **extra, **headers},
        content=content,
        timeout=30,
    )


BOUNDARY = "hostile-boundary-7MA4YWxkTrZu0gW"


def multipart(*parts: tuple[str, bytes]) -> bytes:
    """A multipart body from (raw part headers, data) pairs."""
    body = b"".join(f"--{BOUNDARY}\r\n{h}\r\n\r\n".encode() + data + b"\r\n" for h, data in parts)
    return body + f"--{BOUNDARY}--\r\n".encode()


def file_part(data: bytes, filename: str = "clip.mp4") -> tuple[str, bytes]:
    return f'Content-Disposition: form-data; name="file"; filename="{filename}"', data


def params_part(params: bytes) -> tuple[str, bytes]:
    return 'Content-Disposition: form-data; name="params"', params


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
PARAM_CASES: dict[str, tuple[bytes, int, str]] = {
    "crf-out-of-range": (b'{"crf": 99}', 422, "invalid_params"),
    "crf-negative": (b'{"crf": -1}', 422, "invalid_params"),
    "crf-as-string": (b'{"crf": "18"}', 422, "invalid_params"),
    "crf-as-float": (b'{"crf": 18.5}', 422, "invalid_params"),
    "codec-unknown": (b'{"codec": "vp9"}', 422, "invalid_params"),
    "scale-2": (b'{"scale": 2}', 422, "invalid_params"),
    "container-avi": (b'{"container": "avi"}', 422, "invalid_params"),
    "preset-unknown": (b'{"preset": "ludicrous"}', 422, "invalid_params"),
    "unknown-field": (b'{"crf": 18, "shell": "rm -rf /"}', 422, "invalid_params"),
    "webhook-event-unknown": (b'{"webhook_events": ["deleted"]}', 422, "invalid_params"),
    "webhook-url-over-2048": (
        json.dumps({"webhook_url": "https://a.example/" + "x" * 2100}).encode(),
        422,
        "invalid_params",
    ),
    "params-is-a-list": (b"[]", 422, "invalid_params"),
    "params-is-a-string": (b'"crf=18"', 422, "invalid_params"),
    "model-unknown": (b'{"model": "../../models/evil"}', 422, "unknown_model"),
    "truncated-json": (b'{"crf": 18', 400, "malformed_json"),
    "not-json": (b"crf=18&codec=h264", 400, "malformed_json"),
    "invalid-utf8": (b'{"codec": "\xff\xfe"}', 400, "malformed_json"),
    "params-over-64-KiB": (b'{"x": "' + b"a" * 70_000 + b'"}', 413, "params_too_large"),
}


@pytest.mark.parametrize("case", sorted(PARAM_CASES))
def test_invalid_params(stack: ServiceStack, clip: Path, case: str) -> None:
    params, status, code = PARAM_CASES[case]
    before = job_ids(stack)
    response = post(stack, multipart(file_part(clip.read_bytes()), params_part(params)), MULTIPART)
    assert_error(response, status, code)
    assert job_ids(stack) == before and leftovers(stack) == []


BODY_CASES: dict[str, tuple[Callable[[bytes], bytes], str | None, int, str]] = {
    "json-body-truncated": (
        lambda c: b'{"input": "s3://media/clip.mp4"',
        "application/json",
        400,
        "malformed_json",
    ),
    "json-body-not-s3": (
        lambda c: b'{"input": "http://169.254.169.254/x"}',
        "application/json",
        422,
        "invalid_input",
    ),
    "json-body-s3-without-s3-storage": (
        lambda c: b'{"input": "s3://media/clip.mp4"}',
        "application/json",
        422,
        "unsupported_reference",
    ),
    "json-body-over-64-KiB": (
        lambda c: b'{"input": "' + b"a" * 70_000 + b'"}',
        "application/json",
        413,
        "params_too_large",
    ),
    "text-plain": (lambda c: c, "text/plain", 415, "unsupported_media_type"),
    "urlencoded-form": (
        lambda c: b"file=clip.mp4",
        "application/x-www-form-urlencoded",
        415,
        "unsupported_media_type",
    ),
    "no-content-type": (lambda c: c, None, 415, "unsupported_media_type"),
    "video-mp4-body": (lambda c: c, "video/mp4", 415, "unsupported_media_type"),
    "multipart-without-boundary": (
        lambda c: multipart(file_part(c)),
        "multipart/form-data",
        400,
        "malformed_multipart",
    ),
    "multipart-wrong-boundary": (
        lambda c: multipart(file_part(c)),
        "multipart/form-data; boundary=other",
        400,
        "malformed_multipart",
    ),
    "multipart-garbage": (lambda c: b"\x00\xff" * 500, MULTIPART, 400, "malformed_multipart"),
    "missing-file-part": (lambda c: multipart(params_part(b"{}")), MULTIPART, 422, "missing_file"),
    "two-file-parts": (lambda c: multipart(file_part(c), file_part(c)), MULTIPART, 422, "invalid_params"),
    "unexpected-field": (
        lambda c: multipart(file_part(c), ('Content-Disposition: form-data; name="input"', b"/etc/passwd")),
        MULTIPART,
        422,
        "invalid_params",
    ),
    "part-without-disposition": (
        lambda c: multipart(("Content-Type: video/mp4", c)),
        MULTIPART,
        400,
        "malformed_multipart",
    ),
    "file-part-empty": (lambda c: multipart(file_part(b"")), MULTIPART, 422, "empty_file"),
}


@pytest.mark.parametrize("case", sorted(BODY_CASES))
def test_malformed_request(stack: ServiceStack, clip: Path, case: str) -> None:
    make_body, content_type, status, code = BODY_CASES[case]
    before = job_ids(stack)
    assert_error(post(stack, make_body(clip.read_bytes()), content_type), status, code)
    assert job_ids(stack) == before and leftovers(stack) == []


def test_oversized_upload_declared(stack: ServiceStack, tmp_path: Path) -> None:
    """A Content-Length over the limit is refused before the body is read."""
    big = hm.fake_ftyp(tmp_path / "big.mp4", size=MAX_UPLOAD + 200 * 1024)
    check_upload(stack, big, Refused(413, "upload_too_large"))


def test_oversized_upload_streamed(stack: ServiceStack, tmp_path: Path) -> None:
    """A chunked upload (no Content-Length) is cut off at the first byte over the limit."""
    data = hm.fake_ftyp(tmp_path / "big.mp4", size=MAX_UPLOAD + 1).read_bytes()
    body = multipart(file_part(data), params_part(b"{}"))
    before = job_ids(stack)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    response = httpx.post(
        f"{stack.api_url}/v1/jobs",
        headers={**stack.acme.headers, "Content-Type": MULTIPART},
        content=chunks(),
        timeout=30,
    )
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "upload_too_large")
    assert job_ids(stack) == before and leftovers(stack) == []


@pytest.mark.parametrize(
    "key",
    ["has space", "x" * 256, "tab\there", "", "quote\"and'semicolon;"],
    ids=["space", "256-chars", "tab", "empty", "quotes"],
)
def test_bad_idempotency_key(stack: ServiceStack, clip: Path, key: str) -> None:
    before = job_ids(stack)
    response = post(stack, multipart(file_part(clip.read_bytes())), MULTIPART, **{"Idempotency-Key": key})
    if key == "quote\"and'semicolon;":  # printable ASCII: a valid key
        assert response.status_code == 202, response.text
        assert stack.wait(response.json())["status"] == "succeeded"
        return
    assert_error(response, 422, "invalid_idempotency_key")
    assert job_ids(stack) == before and leftovers(stack) == []


def test_non_ascii_idempotency_key(stack: ServiceStack, clip: Path) -> None:
    before = job_ids(stack)
    response = httpx.post(
        f"{stack.api_url}/v1/jobs",
        headers=[
            (b"Authorization", stack.acme.headers["Authorization"].encode()),
            (b"Idempotency-Key", "clé".encode()),
        ],
        files={"file": ("clip.mp4", clip.read_bytes(), "video/mp4")},
        timeout=30,
    )
    assert_error(response, 422, "invalid_idempotency_key")
    assert job_ids(stack) == before


# --- file names ---------------------------------------------------------------------------------------

NAMES = {
    "dot-dot-slash": "../../etc/passwd.mp4",
    "absolute": "/etc/hostile-absolute.mp4",
    "backslashes": "..\\..\\windows\\hostile-win.mp4",
    "nul-byte": "hostile\x00nul.mp4",
    "1000-chars": "hostile" + "n" * 993 + ".mp4",
    "shell-and-quotes": "hostile$(id)`id`;'.mp4",
    "unicode-rtl": "hostile-\u202egpm.exe",
}


@pytest.mark.parametrize("case", sorted(NAMES))
def test_file_name_never_reaches_storage(stack: ServiceStack, clip: Path, case: str) -> None:
    """Any file name is accepted or refused, but it never names a stored object or a file on disk."""
    name = NAMES[case].replace('"', "%22")
    response = post(stack, multipart(file_part(clip.read_bytes(), name), params_part(b"{}")), MULTIPART)
    assert response.status_code == 202, response.text
    job = response.json()
    assert stack.wait(job)["status"] == "succeeded"
    prefix = f"jobs/acme/{job['id']}/"
    assert stack.stored_keys(prefix) == [f"{prefix}input.mp4", f"{prefix}output.mp4"]
    on_disk = [str(p.relative_to(stack.root)) for p in files_under(stack.root)]
    assert not [p for p in on_disk if "hostile" in p or "passwd" in p], on_disk
    result = httpx.get(job["urls"]["result"], headers=stack.acme.headers, timeout=30)
    assert result.status_code == 200 and result.content[4:8] == b"ftyp"
    assert result.headers["content-disposition"] == f'attachment; filename="{job["id"]}_x4.mp4"'
    source = httpx.get(f"{job['urls']['get']}/input", headers=stack.acme.headers, timeout=30)
    assert source.status_code == 200 and source.content == clip.read_bytes()
    assert source.headers["content-disposition"] == f'attachment; filename="{job["id"]}_input.mp4"'


# --- paths, ids, listing ------------------------------------------------------------------------------


def raw_request(stack: ServiceStack, target: bytes, method: bytes = b"GET") -> tuple[int, bytes]:
    """Send a request line exactly as given (no client-side normalisation); (status, body)."""
    auth = stack.acme.headers["Authorization"].encode()
    request = method + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + auth
    with socket.create_connection(("127.0.0.1", stack.api_port), timeout=10) as sock:
        sock.sendall(request + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


ID_TRICKS: dict[str, tuple[bytes, str]] = {  # id -> code: no job by that id, or no route at all
    "encoded-dot-dot": (b"..%2F..%2Fetc%2Fpasswd", "not_found"),  # %2F is a path separator to the router
    "encoded-backslashes": (b"..%5C..%5Cwindows", "job_not_found"),
    "nul": (b"abc%00def", "job_not_found"),
    "redis-glob": (b"*", "job_not_found"),
    "redis-key-separator": (b"x:job:y", "job_not_found"),
    "unicode": (b"%C3%A9t%C3%A9", "job_not_found"),
    "4000-chars": (b"a" * 4000, "job_not_found"),
    "crlf": (b"abc%0D%0ASet-Cookie:x", "job_not_found"),
}


@pytest.mark.parametrize("case", sorted(ID_TRICKS))
@pytest.mark.parametrize("route", ["get", "cancel", "result", "input", "delete"])
def test_job_id_tricks(stack: ServiceStack, case: str, route: str) -> None:
    method = {"cancel": b"POST", "delete": b"DELETE"}.get(route, b"GET")
    suffix = b"/" + route.encode() if route in ("cancel", "result", "input") else b""
    job_id, code = ID_TRICKS[case]
    status, body = raw_request(stack, b"/v1/jobs/" + job_id + suffix, method)
    assert status == 404, body
    assert json.loads(body)["error"]["code"] == code, body


def test_dot_segments_in_raw_path(stack: ServiceStack) -> None:
    """Un-normalised dot segments reach no file and no other route."""
    for target in (
        b"/v1/jobs/../../etc/passwd",
        b"/v1/jobs/%2e%2e/%2e%2e/etc/passwd",
        b"/v1/../../../etc/passwd",
    ):
        status, body = raw_request(stack, target)
        assert status == 404, (target, body)
        assert json.loads(body)["error"]["code"] == "not_found", body


CONSOLE_TRAVERSALS = [
    b"/console/../../../etc/passwd",
    b"/console/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    b"/console//etc/passwd",
    b"/console/%2e%2e/%2e%2e/api/routes_console.py",
    b"/console/index.html%00.js",
]


@pytest.mark.parametrize("target", CONSOLE_TRAVERSALS, ids=lambda t: t.decode())
def test_console_path_traversal(stack: ServiceStack, target: bytes) -> None:
    """The console's static route serves nothing outside its own folder."""
    status, body = raw_request(stack, target)
    assert status == 404, (target, body[:200])
    assert json.loads(body)["error"]["code"] == "not_found", body[:200]


def test_100_kb_job_id(stack: ServiceStack) -> None:
    """A 100 KB request line passes the HTTP layer and is simply no job."""
    status, body = raw_request(stack, b"/v1/jobs/" + b"a" * 100_000)
    assert status == 404 and json.loads(body)["error"]["code"] == "job_not_found", (status, body[:200])


def cursor_of(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


LIST_CASES: dict[str, tuple[dict[str, str], str]] = {
    "cursor-not-base64": ({"cursor": "!!!"}, "invalid_cursor"),
    "cursor-not-json": ({"cursor": base64.urlsafe_b64encode(b"not json").decode()}, "invalid_cursor"),
    "cursor-wrong-shape": ({"cursor": cursor_of({"a": 1, "b": 2, "c": 3})}, "invalid_cursor"),
    "cursor-score-not-a-number": ({"cursor": cursor_of(["soon", "abc"])}, "invalid_cursor"),
    "cursor-score-nan": ({"cursor": cursor_of(["nan", "abc"])}, "invalid_cursor"),
    "cursor-over-512-chars": ({"cursor": "a" * 600}, "invalid_params"),
    "limit-0": ({"limit": "0"}, "invalid_params"),
    "limit-101": ({"limit": "101"}, "invalid_params"),
    "limit-negative": ({"limit": "-1"}, "invalid_params"),
    "limit-not-a-number": ({"limit": "ten"}, "invalid_params"),
    "limit-huge": ({"limit": "9" * 40}, "invalid_params"),
    "status-unknown": ({"status": "deleted"}, "invalid_params"),
}


@pytest.mark.parametrize("case", sorted(LIST_CASES))
def test_bad_listing_query(stack: ServiceStack, case: str) -> None:
    params, code = LIST_CASES[case]
    response = httpx.get(f"{stack.api_url}/v1/jobs", params=params, headers=stack.acme.headers, timeout=30)
    assert_error(response, 422, code)


CREDENTIALS = {
    "none": None,
    "scheme-only": "Bearer",
    "unknown-key": "Bearer not-a-key",
    "basic": "Basic YWNtZTpwYXNzd29yZA==",
    "valid-key-wrong-scheme": "Token {key}",
    "valid-key-plus-one-char": "Bearer {key}x",
    "valid-key-truncated": "Bearer {short}",
    "two-keys": "Bearer {key} {key}",
}


@pytest.mark.parametrize("case", sorted(CREDENTIALS))
def test_bad_credentials(stack: ServiceStack, case: str) -> None:
    template = CREDENTIALS[case]
    if template is None:
        headers = []
    else:
        value = template.format(key=stack.acme.key, short=stack.acme.key[:-1])
        headers = [(b"Authorization", value.encode())]
    for method, path in (("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", "/v1/status")):
        response = httpx.request(method, f"{stack.api_url}{path}", headers=headers, timeout=30)
        assert_error(response, 401, "unauthorized")


# --- SSRF -----------------------------------------------------------------------------------------------

SSRF_URLS = {
    "loopback": "http://127.0.0.1:8080/hook",
    "loopback-other": "http://127.3.4.5/hook",
    "ten-eight": "http://10.0.0.1/hook",
    "one-seven-two-sixteen": "http://172.16.0.1/hook",
    "one-nine-two-one-six-eight": "https://192.168.1.1/hook",
    "cloud-metadata": "http://169.254.169.254/latest/meta-data/",
    "cgnat": "http://100.64.0.1/hook",
    "unspecified": "http://0.0.0.0:9000/hook",
    "ipv6-loopback": "http://[::1]:8080/hook",
    "ipv6-unique-local": "http://[fd00::1]/hook",
    "ipv6-link-local": "http://[fe80::1]/hook",
    "ipv4-mapped-loopback": "http://[::ffff:127.0.0.1]/hook",
    "ipv4-mapped-metadata": "http://[::ffff:a9fe:a9fe]/hook",
    "nat64-private": "http://[64:ff9b::10.0.0.1]/hook",
    "localhost-name": "http://localhost:8080/hook",
    "localhost-name-trailing-dot": "http://localhost.:8080/hook",
    "decimal-ip": "http://2130706433/hook",
    "short-ip": "http://127.1/hook",
    "hex-ip": "http://0x7f000001/hook",
    "credentials": "http://user:pass@93.184.215.14/hook",
    "file-scheme": "file:///etc/passwd",
    "gopher-scheme": "gopher://127.0.0.1:6379/_FLUSHALL",
    "no-host": "http:///hook",
    "bad-port": "http://93.184.215.14:99999/hook",
    "whitespace": "http://93.184.215.14/ho ok",
}


@pytest.mark.parametrize("case", sorted(SSRF_URLS))
def test_ssrf_webhook_url_refused(stack: ServiceStack, clip: Path, case: str) -> None:
    before = job_ids(stack)
    params = json.dumps({"webhook_url": SSRF_URLS[case]}).encode()
    response = post(stack, multipart(file_part(clip.read_bytes()), params_part(params)), MULTIPART)
    assert_error(response, 422, "invalid_webhook_url")
    assert job_ids(stack) == before and leftovers(stack) == []


@pytest.fixture(scope="module")
def redirect_stack(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceStack]:
    """Private addresses allowed (the receivers are on loopback); a compressed retry schedule."""
    root = tmp_path_factory.mktemp("redirect-stack")
    overrides = {"webhook_retry_schedule_s": [0, 0.5, 1.0]}
    service = ServiceStack(redis_server.url.replace("/0", "/8"), root, overrides=overrides)
    try:
        yield service.start()
    finally:
        service.stop()


def test_webhook_redirect_is_not_followed(redirect_stack: ServiceStack, clip: Path) -> None:
    """A 302 to another address is a failed attempt, retried on the schedule; the target is never called."""
    stack = redirect_stack
    with WebhookReceiver(stack.acme.secret) as target:
        redirect = Reply(302, headers={"Location": target.url})
        with WebhookReceiver(stack.acme.secret, [redirect] * 10) as first:
            job = stack.submit(clip, {"webhook_url": first.url, "webhook_events": ["completed"]})
            assert stack.wait(job)["status"] == "succeeded"
            events = first.wait_for(3, timeout=10)
            time.sleep(2.0)  # the schedule has three entries: no fourth attempt comes
            events = first.events
    assert target.events == []
    assert len(events) == 3 and all(e.status == 302 and e.verified for e in events), events
    assert len({e.msg_id for e in events}) == 1 and len({e.raw_body for e in events}) == 1
    assert events[0].body["type"] == "job.completed" and events[0].body["data"]["id"] == job["id"]
    gaps = [later.time - earlier.time for earlier, later in itertools.pairwise(events)]
    for gap, planned in zip(gaps, (0.5, 1.0), strict=True):  # 10 % jitter; late by a poll or a busy CPU
        assert planned * 0.9 - 0.05 <= gap <= planned * 1.1 + 1.0, gaps
