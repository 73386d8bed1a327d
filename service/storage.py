"""Object storage behind one interface: an S3-compatible server (boto3) or a local directory.

Objects become visible whole or not at all: writers put to a temporary key and `publish` it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Protocol

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from service.settings import S3Settings, Settings


class StorageError(Exception):
    """Storage could not be reached or refused the request (`code` says which)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Storage(Protocol):
    def put_file(self, key: str, path: Path, content_type: str = "application/octet-stream") -> None: ...
    def download_file(self, key: str, path: Path, bucket: str | None = None) -> None: ...
    def publish(self, temp_key: str, key: str) -> None: ...
    def size(self, key: str, bucket: str | None = None) -> int | None: ...
    def delete(self, key: str) -> None: ...
    def delete_prefix(self, prefix: str) -> int: ...
    def presigned_url(self, key: str, filename: str) -> str | None: ...
    def local_path(self, key: str) -> Path | None: ...
    def ping(self) -> None: ...


def temp_key(key: str) -> str:
    """A unique key under tmp/ for a write that is published later."""
    return f"tmp/{uuid.uuid4().hex}/{key.rsplit('/', 1)[-1]}"


def attempt_prefix(job_id: str, attempt: int) -> str:
    """Where one attempt of a job stages its output: deletable as a whole if the attempt is lost."""
    return f"tmp/{job_id}/{attempt}/"


class LocalStorage:
    """Objects as files under `root`; a publish is an atomic rename."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise StorageError("invalid_key", f"key escapes the storage root: {key!r}")
        return path

    def put_file(self, key: str, path: Path, content_type: str = "application/octet-stream") -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        shutil.copyfile(path, partial)
        os.replace(partial, target)

    def download_file(self, key: str, path: Path, bucket: str | None = None) -> None:
        if bucket is not None:
            raise StorageError("unsupported_reference", "local storage cannot read s3:// references")
        try:
            shutil.copyfile(self._path(key), path)
        except FileNotFoundError as exc:
            raise StorageError("not_found", f"no object {key!r}") from exc

    def publish(self, temp_key: str, key: str) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._path(temp_key), target)
        self._prune(self._path(temp_key).parent)

    def size(self, key: str, bucket: str | None = None) -> int | None:
        path = self._path(key)
        return path.stat().st_size if path.is_file() else None

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        self._prune(path.parent)

    def delete_prefix(self, prefix: str) -> int:
        directory = self._path(prefix.rstrip("/"))
        files = [p for p in directory.rglob("*") if p.is_file()] if directory.is_dir() else []
        shutil.rmtree(directory, ignore_errors=True)
        self._prune(directory.parent)
        return len(files)

    def _prune(self, directory: Path) -> None:
        """Remove empty directories up to the root."""
        while directory != self.root and directory.is_relative_to(self.root):
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    def presigned_url(self, key: str, filename: str) -> str | None:
        return None  # the API streams local files itself

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    def ping(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise StorageError("storage_unavailable", f"storage directory not writable: {self.root}")


class S3Storage:
    """An S3-compatible bucket (path-style addressing, checksums only when required)."""

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self.client = _s3_client(settings, settings.endpoint_url)
        self.public_client = _s3_client(settings, settings.public_endpoint_url or settings.endpoint_url)
        self.transfer = TransferConfig(multipart_threshold=16 * 1024**2, multipart_chunksize=16 * 1024**2)

    def _call(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}:
                raise StorageError("not_found", f"{what}: {code}") from exc
            if code in {"403", "AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId"}:
                raise StorageError("storage_access_denied", f"{what}: {code}") from exc
            raise StorageError("storage_unavailable", f"{what}: {exc}") from exc
        except (BotoCoreError, OSError) as exc:
            raise StorageError("storage_unavailable", f"{what}: {exc}") from exc

    def put_file(self, key: str, path: Path, content_type: str = "application/octet-stream") -> None:
        self._call(
            f"upload {key}",
            self.client.upload_file,
            str(path),
            self.bucket,
            key,
            ExtraArgs={"ContentType": content_type},
            Config=self.transfer,
        )

    def download_file(self, key: str, path: Path, bucket: str | None = None) -> None:
        self._call(
            f"download {key}",
            self.client.download_file,
            bucket or self.bucket,
            key,
            str(path),
            Config=self.transfer,
        )

    def publish(self, temp_key: str, key: str) -> None:
        source = {"Bucket": self.bucket, "Key": temp_key}
        self._call(f"publish {key}", self.client.copy, source, self.bucket, key, Config=self.transfer)
        self.delete(temp_key)

    def size(self, key: str, bucket: str | None = None) -> int | None:
        try:
            head = self._call(f"head {key}", self.client.head_object, Bucket=bucket or self.bucket, Key=key)
        except StorageError as exc:
            if exc.code == "not_found":
                return None
            raise
        return int(head["ContentLength"])

    def delete(self, key: str) -> None:
        self._call(f"delete {key}", self.client.delete_object, Bucket=self.bucket, Key=key)

    def delete_prefix(self, prefix: str) -> int:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self._call(
            f"list {prefix}", lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=prefix))
        )
        keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
        for key in keys:
            self.delete(key)
        return len(keys)

    def presigned_url(self, key: str, filename: str) -> str | None:
        params = {
            "Bucket": self.bucket,
            "Key": key,
            "ResponseContentDisposition": f'attachment; filename="{filename}"',
        }
        return str(
            self._call(
                "presign",
                self.public_client.generate_presigned_url,
                "get_object",
                Params=params,
                ExpiresIn=self.settings.presign_expiry_s,
            )
        )

    def local_path(self, key: str) -> Path | None:
        return None

    def ping(self) -> None:
        self._call("ping", self.client.head_bucket, Bucket=self.bucket)


def _s3_client(settings: S3Settings, endpoint_url: str | None) -> Any:
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        connect_timeout=settings.connect_timeout_s,
        read_timeout=settings.read_timeout_s,
        retries={"max_attempts": settings.max_attempts, "mode": "standard"},
    )
    secret = settings.secret_access_key
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=settings.region,
        aws_access_key_id=settings.access_key_id.get_secret_value() if settings.access_key_id else None,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
        config=config,
    )


def make_storage(settings: Settings) -> Storage:
    if settings.s3 is not None:
        return S3Storage(settings.s3)
    return LocalStorage(settings.data_dir / "objects")
