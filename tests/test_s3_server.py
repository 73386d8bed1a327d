"""The test S3 server (Ceph radosgw) is a real, strict S3: multipart, copies, signatures, presigned expiry."""

from __future__ import annotations

import hashlib
import os
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.error import HTTPError

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

from tests.support.s3_server import S3Server, start_s3_server

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = start_s3_server(tmp_path_factory.mktemp("s3"))
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server: S3Server) -> BaseClient:
    return s3_server.client()


@pytest.fixture
def bucket(s3: BaseClient) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read())


def error_code(exc: ClientError) -> tuple[str, int]:
    return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]


def test_put_get_round_trip(s3: BaseClient, bucket: str) -> None:
    body = os.urandom(100_000)
    s3.put_object(Bucket=bucket, Key="dir/a.bin", Body=body, ContentType="application/x-test")
    got = s3.get_object(Bucket=bucket, Key="dir/a.bin")
    assert got["Body"].read() == body
    assert got["ContentType"] == "application/x-test"
    assert got["ETag"].strip('"') == hashlib.md5(body).hexdigest()
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="dir/")
    assert [item["Key"] for item in listed["Contents"]] == ["dir/a.bin"]


def test_multipart_upload_file(s3: BaseClient, bucket: str, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(9 * MIB))
    config = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB, max_concurrency=2)
    s3.upload_file(str(source), bucket, "big.bin", Config=config)
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == 9 * MIB
    assert head["ETag"].strip('"').endswith("-2")  # two parts: a multipart ETag, not an MD5
    target = tmp_path / "back.bin"
    s3.download_file(bucket, "big.bin", str(target), Config=config)
    assert target.read_bytes() == source.read_bytes()


def test_copy_then_delete(s3: BaseClient, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"payload")
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"payload"
    s3.delete_object(Bucket=bucket, Key="src")
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=bucket, Key="src")
    assert error_code(info.value) == ("NoSuchKey", 404)
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"payload"


def test_wrong_secret_is_refused(s3_server: S3Server, bucket: str) -> None:
    impostor = s3_server.client(secret_key="not-the-secret", config=Config(retries={"total_max_attempts": 1}))
    with pytest.raises(ClientError) as info:
        impostor.put_object(Bucket=bucket, Key="x", Body=b"x")
    assert error_code(info.value) == ("SignatureDoesNotMatch", 403)


def test_presigned_get(s3: BaseClient, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="p", Body=b"presigned body")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p"}, ExpiresIn=60)
    assert fetch(url) == b"presigned body"
    with pytest.raises(HTTPError) as info:  # the signature covers the key
        fetch(url.replace("/p?", "/q?"))
    assert info.value.code == 403
    info.value.close()


def test_presigned_get_expires(s3: BaseClient, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="e", Body=b"soon gone")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "e"}, ExpiresIn=1)
    time.sleep(2.1)
    with pytest.raises(HTTPError) as info:
        fetch(url)
    assert info.value.code == 403
    assert b"AccessDenied" in info.value.read()
    info.value.close()


def test_rgw_restart_keeps_data(s3_server: S3Server, s3: BaseClient, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="kept", Body=b"survives")
    s3_server.stop_rgw()
    try:
        offline = s3_server.client(config=Config(retries={"total_max_attempts": 1}, connect_timeout=1))
        with pytest.raises(EndpointConnectionError):
            offline.get_object(Bucket=bucket, Key="kept")
    finally:
        s3_server.start_rgw()
    assert s3.get_object(Bucket=bucket, Key="kept")["Body"].read() == b"survives"


def test_missing_ceph_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"apt-get install .*radosgw"):
        start_s3_server(tmp_path / "s3")
