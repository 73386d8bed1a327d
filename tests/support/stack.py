"""A running service made of real processes: `vsr serve` (API) and N `vsr worker`s on a real Redis,
with S3 (Ceph RGW) or local storage, configured only through VSR_* variables like in production."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from botocore.client import BaseClient

from tests.support.ports import free_port
from tests.support.processes import VsrProcess, settings_env
from tests.support.s3_server import S3Server
from tests.support.service import ApiTenant, files_under, make_tenant

TERMINAL = {"succeeded", "failed", "canceled"}
BUCKET, INPUT_BUCKET = "vsr-jobs", "vsr-inputs"


@dataclass
class ServiceStack:
    redis_url: str
    root: Path
    s3_server: S3Server | None = None
    workers: int = 1
    overrides: dict[str, Any] = field(default_factory=dict)
    acme: ApiTenant = field(default_factory=lambda: make_tenant("acme"))
    globex: ApiTenant = field(default_factory=lambda: make_tenant("globex"))
    api: VsrProcess = field(init=False)
    worker_processes: list[VsrProcess] = field(default_factory=list, init=False)
    api_port: int = field(default_factory=free_port, init=False)
    metrics_ports: list[int] = field(default_factory=list, init=False)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def worker(self) -> VsrProcess:
        return self.worker_processes[0]

    @property
    def s3(self) -> BaseClient:
        assert self.s3_server is not None
        return self.s3_server.client()

    def settings(self, data_dir: Path, metrics_port: int | None = None) -> dict[str, Any]:
        values: dict[str, Any] = {
            "redis_url": self.redis_url,
            "key_prefix": f"t{self.api_port}",
            "queue_name": f"t{self.api_port}",
            "tenants": [
                {**t.config.model_dump(mode="json"), "webhook_secret": t.secret} for t in self.tenants
            ],
            "data_dir": str(data_dir),
            "webhook_allow_private": True,
            "webhook_retry_schedule_s": [0, 0.5, 1],
            "progress_interval_s": 0.2,
            "chunk_frames": 4,
            "worker_metrics_port": metrics_port,
        }
        if self.s3_server is not None:
            values["s3"] = {
                "bucket": BUCKET,
                "endpoint_url": self.s3_server.endpoint,
                "access_key_id": self.s3_server.access_key,
                "secret_access_key": self.s3_server.secret_key,
                "input_buckets": [INPUT_BUCKET],
            }
        else:  # local storage: API and workers share one directory, like a shared volume
            values["data_dir"] = str(self.root / "shared-data")
        return values | self.overrides

    @property
    def tenants(self) -> tuple[ApiTenant, ApiTenant]:
        return self.acme, self.globex

    def start(self) -> ServiceStack:
        if self.s3_server is not None:
            client = self.s3_server.client()
            existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
            for bucket in {BUCKET, INPUT_BUCKET} - existing:
                client.create_bucket(Bucket=bucket)
        args = ["serve", "--host", "127.0.0.1", "--port", str(self.api_port)]
        self.api = VsrProcess(
            args, settings_env(self.settings(self.root / "api")), self.root / "api.log"
        ).start()
        for _ in range(self.workers):
            self.add_worker()
        self.api.wait_http(f"{self.api_url}/readyz")
        for process, port in zip(self.worker_processes, self.metrics_ports, strict=True):
            process.wait_http(f"http://127.0.0.1:{port}/metrics")
        return self

    def add_worker(self, **extra_env: str) -> VsrProcess:
        """Start one more worker process (its metrics on a fresh port)."""
        index, port = len(self.worker_processes), free_port()
        env = settings_env(self.settings(self.root / f"worker{index}", port)) | extra_env
        process = VsrProcess(["worker"], env, self.root / f"worker{index}.log").start()
        self.worker_processes.append(process)
        self.metrics_ports.append(port)
        return process

    def stop(self) -> None:
        for process in self.worker_processes:
            process.stop()
        self.api.stop()

    def metrics_url(self, index: int = 0) -> str:
        return f"http://127.0.0.1:{self.metrics_ports[index]}/metrics"

    def submit(
        self,
        clip: Path,
        params: dict[str, Any] | None = None,
        tenant: ApiTenant | None = None,
        **headers: str,
    ) -> dict[str, Any]:
        response = self.post_file(clip, params, tenant, **headers)
        assert response.status_code == 202, response.text
        return dict(response.json())

    def post_file(
        self,
        clip: Path,
        params: dict[str, Any] | None = None,
        tenant: ApiTenant | None = None,
        **headers: str,
    ) -> httpx.Response:
        with clip.open("rb") as handle:
            return httpx.post(
                f"{self.api_url}/v1/jobs",
                headers={**(tenant or self.acme).headers, **headers},
                files={"file": (clip.name, handle, "video/mp4")},
                data={"params": json.dumps(params or {})},
                timeout=60,
            )

    def get(self, job: dict[str, Any], tenant: ApiTenant | None = None) -> dict[str, Any]:
        return dict(httpx.get(job["urls"]["get"], headers=(tenant or self.acme).headers, timeout=30).json())

    def wait(self, job: dict[str, Any], until: set[str] = TERMINAL, timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        current = self.get(job)
        while current["status"] not in until:
            if time.monotonic() > deadline:
                logs = "\n".join(p.tail() for p in self.worker_processes)
                raise TimeoutError(f"job {job['id']} still {current['status']}\n{logs}")
            time.sleep(0.1)
            current = self.get(job)
        return current

    def stored_keys(self, prefix: str = "") -> list[str]:
        """Every stored object key under `prefix` (S3 bucket or the shared local directory)."""
        if self.s3_server is None:
            root = self.root / "shared-data" / "objects"
            return [str(p.relative_to(root)) for p in files_under(root / prefix if prefix else root)]
        listing = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        return sorted(o["Key"] for o in listing.get("Contents", []))
