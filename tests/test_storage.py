"""Both storage backends: local directory and S3 (a real Ceph RGW), through the same interface."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from service.settings import S3Settings
from service.storage import LocalStorage, S3Storage, Storage, StorageError, temp_key
from tests.support.s3_server import S3Server


def s3_settings(server: S3Server, bucket: str, **changes: object) -> S3Settings:
    values: dict[str, object] = {
        "bucket": bucket,
        "endpoint_url": server.endpoint,
        "access_key_id": server.access_key,
        "secret_access_key": server.secret_key,
    }
    return S3Settings.model_validate(values | changes)


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "objects")
    server: S3Server = request.getfixturevalue("s3_server")
    bucket = f"storage-{uuid.uuid4().hex[:12]}"
    server.client().create_bucket(Bucket=bucket)
    return S3Storage(s3_settings(server, bucket))


def test_put_publish_download_delete(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"video bytes" * 1000)
    final = "jobs/acme/j1/output.mp4"
    staging = temp_key(final)
    storage.put_file(staging, source)
    assert storage.size(final) is None  # nothing visible at the final key before publish
    storage.publish(staging, final)
    assert storage.size(staging) is None and storage.size(final) == source.stat().st_size
    copy = tmp_path / "copy.bin"
    storage.download_file(final, copy)
    assert copy.read_bytes() == source.read_bytes()
    storage.delete(final)
    storage.delete(final)  # idempotent
    assert storage.size(final) is None
    with pytest.raises(StorageError) as missing:
        storage.download_file(final, copy)
    assert missing.value.code == "not_found"
    storage.ping()


def test_local_keys_cannot_escape_the_root(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "objects")
    for key in ("../outside", "a/../../outside", "/etc/passwd"):
        with pytest.raises(StorageError) as error:
            storage.size(key)
        assert error.value.code == "invalid_key"


def test_local_delete_prunes_empty_directories(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "objects")
    source = tmp_path / "f"
    source.write_bytes(b"x")
    storage.put_file("jobs/acme/j1/input.mp4", source)
    storage.delete("jobs/acme/j1/input.mp4")
    assert list((tmp_path / "objects").iterdir()) == []


def test_presigned_urls_use_the_public_endpoint_and_expire(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = f"presign-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=bucket)
    source = tmp_path / "out.mp4"
    source.write_bytes(b"\x00\x00\x00\x18ftypisom" + b"x" * 100)
    expiry_s = 5  # long enough for the first GET to come in time on a loaded machine
    storage = S3Storage(s3_settings(s3_server, bucket, presign_expiry_s=expiry_s))
    storage.put_file("out.mp4", source, "video/mp4")
    minted_at = time.time()
    url = storage.presigned_url("out.mp4", "result.mp4")
    assert url is not None
    fetched = httpx.get(url)
    assert time.time() - minted_at < expiry_s, "the first GET came too late to prove anything"
    assert fetched.status_code == 200 and fetched.content == source.read_bytes()
    assert fetched.headers["content-disposition"] == 'attachment; filename="result.mp4"'
    time.sleep(max(0.0, minted_at + expiry_s + 1.5 - time.time()))  # past expiry (1 s signing granularity)
    assert httpx.get(url).status_code == 403  # expired: the server enforces it

    public = S3Storage(s3_settings(s3_server, bucket, public_endpoint_url="https://media.example.com"))
    minted = urlsplit(public.presigned_url("out.mp4", "result.mp4") or "")
    assert (minted.scheme, minted.netloc) == ("https", "media.example.com")
    assert minted.path == f"/{bucket}/out.mp4"


def test_s3_errors_are_classified(s3_server: S3Server, tmp_path: Path) -> None:
    wrong = S3Storage(s3_settings(s3_server, "nope", secret_access_key="0" * 40, max_attempts=1))
    with pytest.raises(StorageError) as denied:
        wrong.ping()
    assert denied.value.code in ("storage_access_denied", "not_found")
    down = S3Storage(
        S3Settings(bucket="b", endpoint_url="http://127.0.0.1:9", max_attempts=1, connect_timeout_s=0.5)
    )
    with pytest.raises(StorageError) as unreachable:
        down.ping()
    assert unreachable.value.code == "storage_unavailable"
