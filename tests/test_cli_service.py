"""`vsr keys`, `vsr worker` and `vsr serve` as a user runs them: real processes, real HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from service.settings import TenantConfig
from service.tenants import hash_api_key
from tests.media import make_test_clip
from tests.support.ports import free_port, wait_until
from tests.support.processes import REPO, VsrProcess, settings_env
from tests.support.service import make_tenant
from tests.support.webhook_receiver import WebhookReceiver


def vsr(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vsr.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_keys_prints_a_tenant_entry_for_the_settings() -> None:
    result = vsr("keys", "acme")
    assert result.returncode == 0, result.stderr
    entry = TenantConfig.model_validate(json.loads(result.stdout))
    key = result.stderr.split("API key (give it to the tenant; it is not stored): ")[1].split()[0]
    assert entry.id == "acme" and entry.api_key_sha256 == [hash_api_key(key)]
    assert entry.webhook_secret.get_secret_value().startswith("whsec_")


def test_keys_refuses_a_bad_tenant_id() -> None:
    result = vsr("keys", "Not Valid")
    assert result.returncode == 1 and result.stderr.startswith("vsr: error: bad_tenant: ")


def test_worker_without_redis_and_bad_settings_fail_clearly(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VSR_")}
    result = vsr("worker", env=clean)
    assert (
        result.returncode == 1
        and "vsr: error: bad_settings: a separate worker needs VSR_REDIS_URL" in result.stderr
    )
    result = vsr("serve", env={**clean, "VSR_MAX_UPLOAD_BYTES": "lots"})
    assert result.returncode == 1 and result.stderr.startswith("vsr: error: bad_settings: ")
    assert "max_upload_bytes" in result.stderr


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return make_test_clip(tmp_path / "clip.mp4", frames=6, width=48, height=32)


def test_serve_embedded_runs_jobs_with_webhooks(tmp_path: Path, clip: Path) -> None:
    """No Redis URL, no S3: `vsr serve` alone is the whole service (in-process Redis substitute)."""
    acme = make_tenant("acme")
    port = free_port()
    env = settings_env(
        {
            "data_dir": str(tmp_path / "data"),
            "tenants": [{**acme.config.model_dump(mode="json"), "webhook_secret": acme.secret}],
            "webhook_allow_private": True,
            "progress_interval_s": 0,
        }
    )
    server = VsrProcess(["serve", "--port", str(port)], env, tmp_path / "serve.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        server.wait_http(f"{url}/readyz")
        with WebhookReceiver(acme.secret) as receiver, clip.open("rb") as handle:
            job = httpx.post(
                f"{url}/v1/jobs",
                headers=acme.headers,
                files={"file": ("clip.mp4", handle)},
                data={
                    "params": json.dumps(
                        {"webhook_url": receiver.url, "webhook_events": ["start", "completed"]}
                    )
                },
            ).json()
            wait_until(
                lambda: httpx.get(job["urls"]["get"], headers=acme.headers).json()["status"] == "succeeded",
                120,
                "the embedded job",
            )
            events = receiver.wait_for(2)
        result = httpx.get(job["urls"]["result"], headers=acme.headers)
        assert result.status_code == 200 and result.headers["content-type"] == "video/mp4"
        assert result.content[4:8] == b"ftyp" and len(result.content) > 1000
        assert [e.body["type"] for e in events] == ["job.started", "job.completed"]
        assert all(e.verified for e in events)
    finally:
        exit_code = server.stop()
    log = server.log.read_text()
    assert exit_code == 0 and "Application shutdown complete" in log, server.tail()
    assert "Traceback" not in log


def test_serve_embedded_without_tenants_makes_a_local_key(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    server = VsrProcess(
        ["serve", "--port", str(port)], settings_env({"data_dir": str(data)}), tmp_path / "s.log"
    )
    server.start()
    try:
        server.wait_http(f"http://127.0.0.1:{port}/healthz")
        key = (data / "api-key").read_text().strip()
        assert (data / "api-key").stat().st_mode & 0o077 == 0
        headers = {"Authorization": f"Bearer {key}"}

        def status() -> dict[str, object]:
            return dict(httpx.get(f"http://127.0.0.1:{port}/v1/status", headers=headers).json())

        wait_until(lambda: status()["workers"] == 1, 30, "the embedded worker")
        assert status()["storage"] == "local"
        assert httpx.get(f"http://127.0.0.1:{port}/v1/status").status_code == 401
    finally:
        server.stop()


def test_serve_embedded_stops_cleanly_while_a_job_runs(tmp_path: Path) -> None:
    """SIGTERM mid-job: the worker thread leaves the job at its next chunk, the process exits cleanly."""
    acme = make_tenant("acme")
    port = free_port()
    env = settings_env(
        {
            "data_dir": str(tmp_path / "data"),
            "tenants": [{**acme.config.model_dump(mode="json"), "webhook_secret": acme.secret}],
            "progress_interval_s": 0,
            "chunk_frames": 2,
        }
    )
    server = VsrProcess(["serve", "--port", str(port)], env, tmp_path / "serve.log").start()
    url = f"http://127.0.0.1:{port}"
    clip = make_test_clip(tmp_path / "long.mp4", frames=48, width=96, height=64)
    try:
        server.wait_http(f"{url}/readyz")
        with clip.open("rb") as handle:
            job = httpx.post(f"{url}/v1/jobs", headers=acme.headers, files={"file": ("c.mp4", handle)}).json()
        wait_until(
            lambda: httpx.get(job["urls"]["get"], headers=acme.headers).json()["progress"]["frames_done"] > 0,
            60,
            "the job to start",
        )
    finally:
        exit_code = server.stop(signal.SIGTERM)
    log = server.log.read_text()
    assert exit_code == 0, server.tail()
    assert "re-queued" in log and "Traceback" not in log and "Abort" not in log, server.tail()
