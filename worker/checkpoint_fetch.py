"""Bring a checkpoint directory from S3 (`s3://bucket/prefix`) into a local cache, or use a local path.

Every object under the prefix is downloaded to CACHE/bucket/prefix/..., each through a temporary file
renamed into place, so an interrupted fetch never leaves a truncated weight file. Objects already there
with the same size are not downloaded again.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/(?P<prefix>[^\x00-\x1f]+?)/?$")


class FetchError(RuntimeError):
    """The checkpoint could not be listed or downloaded; the message says which object and why."""


def _objects(client: Any, bucket: str, prefix: str) -> list[tuple[str, int]]:
    paginator = client.get_paginator("list_objects_v2")
    found = []
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix + "/"):
        found += [(item["Key"], int(item["Size"])) for item in page.get("Contents", [])]
    return found


def fetch_checkpoint(reference: str | Path, cache_dir: Path, client: Any | None = None) -> Path:
    """The local directory of `reference`: a local path as it is, an s3:// prefix fetched into `cache_dir`."""
    match = S3_URI.match(str(reference))
    if match is None:
        if str(reference).startswith("s3://"):
            raise FetchError(f"{reference}: not an s3://bucket/prefix reference")
        return Path(reference)
    if client is None:
        raise FetchError(f"{reference}: an S3 client is needed to fetch it")
    bucket, prefix = match["bucket"], match["prefix"].rstrip("/")
    try:
        objects = _objects(client, bucket, prefix)
    except (ClientError, BotoCoreError) as exc:
        raise FetchError(f"{reference}: cannot list the checkpoint: {exc}") from exc
    if not objects:
        raise FetchError(f"{reference}: no objects under this prefix")
    root = cache_dir / bucket / prefix
    for key, size in objects:
        target = root / key[len(prefix) + 1 :]
        if target.is_file() and target.stat().st_size == size:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        try:
            client.download_file(bucket, key, str(partial))
        except (ClientError, BotoCoreError, OSError) as exc:
            partial.unlink(missing_ok=True)
            raise FetchError(f"s3://{bucket}/{key}: download failed: {exc}") from exc
        partial.replace(target)
    return root
