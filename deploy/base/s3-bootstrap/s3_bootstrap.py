"""Create the service's bucket on an S3-compatible server: the bootstrap step of the compose stack
(service `s3-init`) and of the Kubernetes base (Job `vsr-s3-bootstrap`).

It reads the same `VSR_S3__*` variables as the API and the workers, waits for the server to answer,
creates `VSR_S3__BUCKET` (and, with `--create-input-buckets`, every `VSR_S3__INPUT_BUCKETS` entry: for local
stacks), and sets a lifecycle rule that aborts incomplete multipart uploads after a day
(docs/reliability.md, known limits) where the server supports lifecycle rules. Idempotent: existing
buckets are kept as they are. Runs in the `api` image (boto3, no torch).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.settings import S3Settings

LIFECYCLE = {
    "Rules": [
        {
            "ID": "abort-incomplete-multipart-uploads",
            "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        }
    ]
}


class S3Only(BaseSettings):
    """Only the S3 part of the service settings (the rest, e.g. tenants, is not needed here)."""

    model_config = SettingsConfigDict(env_prefix="VSR_", env_nested_delimiter="__", extra="ignore")
    s3: S3Settings


def s3_client(settings: S3Settings) -> Any:
    """A client configured as the service's (path-style, SigV4, checksums only when required)."""
    return boto3.client(
        "s3",
        endpoint_url=settings.endpoint_url,
        region_name=settings.region,
        aws_access_key_id=settings.access_key_id.get_secret_value() if settings.access_key_id else None,
        aws_secret_access_key=(
            settings.secret_access_key.get_secret_value() if settings.secret_access_key else None
        ),
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            connect_timeout=settings.connect_timeout_s,
            read_timeout=settings.read_timeout_s,
            retries={"max_attempts": 2, "mode": "standard"},
        ),
    )


def wait_for_server(client: Any, timeout_s: float) -> None:
    """Poll until the server answers an authenticated request (a wrong key fails at once)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.list_buckets()
            return
        except ClientError:
            raise
        except BotoCoreError as exc:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"S3 server did not answer within {timeout_s:.0f} s: {exc}") from exc
            time.sleep(1)


def ensure_bucket(client: Any, bucket: str, region: str) -> bool:
    """Create `bucket` unless it exists; True if it was created."""
    try:
        client.head_bucket(Bucket=bucket)
        return False
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in {"404", "NoSuchBucket", "NotFound"}:
            raise
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        client.create_bucket(**kwargs)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
            raise
        return False
    return True


def set_lifecycle(client: Any, bucket: str) -> str | None:
    """Abort incomplete multipart uploads after a day; the server's error code if it refuses."""
    try:
        client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=LIFECYCLE)
    except ClientError as exc:
        return str(exc.response.get("Error", {}).get("Code", "error"))
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="s3-bootstrap", description="Create the service's S3 bucket.")
    parser.add_argument(
        "--create-input-buckets", action="store_true", help="also create VSR_S3__INPUT_BUCKETS (local stacks)"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the server")
    args = parser.parse_args(argv)
    try:
        settings = S3Only().s3  # type: ignore[call-arg]
    except ValidationError as exc:
        print(f"s3-bootstrap: error: bad VSR_S3__* settings: {exc}", file=sys.stderr)
        return 2
    client = s3_client(settings)
    try:
        wait_for_server(client, args.timeout)
        buckets = [settings.bucket, *(settings.input_buckets if args.create_input_buckets else [])]
        for bucket in buckets:
            created = ensure_bucket(client, bucket, settings.region)
            print(f"s3-bootstrap: bucket {bucket}: {'created' if created else 'exists'}")
        refused = set_lifecycle(client, settings.bucket)
    except (ClientError, BotoCoreError, TimeoutError) as exc:
        print(f"s3-bootstrap: error: {exc}", file=sys.stderr)
        return 1
    if refused is None:
        print(f"s3-bootstrap: bucket {settings.bucket}: incomplete multipart uploads expire after 1 day")
    else:
        print(
            f"s3-bootstrap: warning: lifecycle rule refused ({refused}); clean up incomplete multipart "
            "uploads another way (docs/reliability.md)",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
