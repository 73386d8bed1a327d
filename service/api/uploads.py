"""Receive a multipart upload (`file` + JSON `params`) straight to a spool file on disk.

The body is parsed as it streams in, so a 2 GiB video never sits in memory, and the size limit is
enforced while receiving: the first byte over the limit ends the request with 413.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from service.api.errors import ApiError

MAX_PARAMS_BYTES = 64 * 1024
ENVELOPE_SLACK = MAX_PARAMS_BYTES + 64 * 1024  # boundaries, part headers and the params part


@dataclass
class ReceivedUpload:
    params: bytes | None = None
    path: Path | None = None
    filename: str | None = None
    bytes: int = 0

    def discard(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


@dataclass
class _Part:
    headers: dict[str, bytes] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    sink: IO[bytes] | None = None
    buffer: bytearray = field(default_factory=bytearray)


class _UploadParser:
    """Callbacks for python-multipart's streaming parser."""

    def __init__(self, spool_dir: Path, max_bytes: int) -> None:
        self.spool_dir, self.max_bytes = spool_dir, max_bytes
        self.result = ReceivedUpload()
        self.part = _Part()
        self._field, self._value = bytearray(), bytearray()
        self.error: ApiError | None = None

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": lambda d, s, e: self._field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._value.extend(d[s:e]),
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self.part = _Part()

    def on_header_end(self) -> None:
        self.part.headers[bytes(self._field).decode("latin-1").lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def on_headers_finished(self) -> None:
        kind, options = parse_options_header(self.part.headers.get("content-disposition"))
        if kind != b"form-data" or b"name" not in options:
            raise ApiError(
                400, "malformed_multipart", "each part needs Content-Disposition: form-data; name="
            )
        self.part.name = options[b"name"].decode("utf-8", "replace")
        raw_filename = options.get(b"filename")
        self.part.filename = raw_filename.decode("utf-8", "replace") if raw_filename is not None else None
        if self.part.name == "file":
            if self.result.path is not None:
                raise ApiError(422, "invalid_params", "send exactly one 'file' part")
            handle, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=self.spool_dir)
            self.part.sink = os.fdopen(handle, "wb")
            self.result.path, self.result.filename = Path(name), self.part.filename
        elif self.part.name != "params":
            raise ApiError(422, "invalid_params", f"unexpected form field {self.part.name!r}")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.part.sink is not None:
            self.result.bytes += end - start
            if self.result.bytes > self.max_bytes:
                raise ApiError(413, "upload_too_large", f"the file exceeds the {self.max_bytes}-byte limit")
            self.part.sink.write(data[start:end])
        else:
            self.part.buffer.extend(data[start:end])
            if len(self.part.buffer) > MAX_PARAMS_BYTES:
                raise ApiError(413, "params_too_large", f"params exceed {MAX_PARAMS_BYTES} bytes")

    def on_part_end(self) -> None:
        if self.part.sink is not None:
            self.part.sink.close()
            self.part.sink = None
        elif self.part.name == "params":
            self.result.params = bytes(self.part.buffer)

    def close(self) -> None:
        if self.part.sink is not None:
            self.part.sink.close()


async def receive_upload(request: Request, spool_dir: Path, max_bytes: int) -> ReceivedUpload:
    """Parse a multipart/form-data request; the caller owns (and must discard) the spool file."""
    _, options = parse_options_header(request.headers.get("content-type"))
    boundary = options.get(b"boundary")
    if not boundary:
        raise ApiError(400, "malformed_multipart", "multipart/form-data needs a boundary")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes + ENVELOPE_SLACK:
        raise ApiError(413, "upload_too_large", f"the upload exceeds the {max_bytes}-byte limit")
    spool_dir.mkdir(parents=True, exist_ok=True)
    handler = _UploadParser(spool_dir, max_bytes)
    parser = MultipartParser(boundary, handler.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        handler.close()
        handler.result.discard()
        raise ApiError(400, "malformed_multipart", f"malformed multipart body: {exc}") from exc
    except (ApiError, ClientDisconnect, OSError):
        handler.close()
        handler.result.discard()
        raise
    if handler.result.path is None:
        raise ApiError(422, "missing_file", "multipart uploads need a 'file' part")
    return handler.result
