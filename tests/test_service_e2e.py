"""The whole service on real servers: Ceph RGW (S3), redis-server, `vsr serve` (uvicorn) and `vsr worker`
in separate processes, and a webhook receiver that verifies every signature."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.metrics import STAGES
from tests.media import make_test_clip
from tests.support.redis_server import RedisServer
from tests.support.s3_server import S3Server
from tests.support.stack import BUCKET, INPUT_BUCKET, ServiceStack
from tests.support.webhook_receiver import WebhookReceiver


@pytest.fixture(scope="module")
def stack(
    s3_server: S3Server, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceStack]:
    stack = ServiceStack(redis_server.url.replace("/0", "/3"), tmp_path_factory.mktemp("stack"), s3_server)
    try:
        yield stack.start()
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_test_clip(tmp_path_factory.mktemp("clips") / "small.mp4", frames=12, width=64, height=48)


def metric(stack: ServiceStack, name: str, **labels: str) -> float:
    """One sample of the worker's /metrics, parsed."""
    for family in text_string_to_metric_families(httpx.get(stack.metrics_url()).text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"{name}{labels} is not exported")


def test_job_succeeds_with_signed_ordered_webhooks(
    stack: ServiceStack, small_clip: Path, tmp_path: Path
) -> None:
    frames_before = metric(stack, "vsr_frames_total")
    with WebhookReceiver(stack.acme.secret) as receiver:
        job = stack.submit(small_clip, {"webhook_url": receiver.url, "crf": 20})
        done = stack.wait(job)
        assert done["status"] == "succeeded", done
        events = receiver.wait_for(2, timeout=10)
        time.sleep(0.5)  # nothing else should arrive after completed
        events = receiver.events

    output = done["output"]
    assert (output["width"], output["height"], output["frames"]) == (256, 192, 12)
    progress = done["progress"]
    assert (progress["frames_done"], progress["frames_total"], progress["eta_s"]) == (12, 12, 0)
    assert progress["fps"] > 0  # the whole run's average
    assert set(STAGES) <= set(done["timings"]) and all(v >= 0 for v in done["timings"].values())
    assert done["macs"]["total"] == sum(done["macs"][c] for c in ("encoder", "denoiser", "decoder")) > 0

    result = httpx.get(job["urls"]["result"], headers=stack.acme.headers)
    assert result.status_code == 307 and result.headers["location"].startswith(stack.s3.meta.endpoint_url)
    assert "X-Amz-Signature=" in result.headers["location"]
    downloaded = tmp_path / "result.mp4"
    downloaded.write_bytes(httpx.get(result.headers["location"]).raise_for_status().content)
    assert downloaded.stat().st_size == output["bytes"]
    with av.open(str(downloaded)) as container:
        video = container.streams.video[0]
        assert (video.codec_context.width, video.codec_context.height) == (256, 192)
        assert len(container.streams.audio) == 1
        assert sum(1 for _ in container.decode(video=0)) == 12

    assert all(e.verified for e in events), [e.error for e in events]
    types = [e.body["type"] for e in events]
    assert types[0] == "job.started" and types[-1] == "job.completed", types
    assert set(types[1:-1]) <= {"job.progress"}
    for event in events[1:-1]:  # a progress event carries the rate of the frames done so far
        sent = event.body["data"]["progress"]
        assert sent["fps"] > 0 and sent["eta_s"] >= 0 and sent["frames_done"] > 0, sent
    assert len({e.msg_id for e in events}) == len(events)
    assert events[-1].body["data"]["status"] == "succeeded" and events[-1].body["data"]["id"] == job["id"]
    assert [e.time for e in events] == sorted(e.time for e in events)

    keys = stack.stored_keys(f"jobs/acme/{job['id']}/")  # the bucket is shared with other test modules
    assert keys == sorted([f"jobs/acme/{job['id']}/input.mp4", f"jobs/acme/{job['id']}/output.mp4"])

    metrics = httpx.get(stack.metrics_url()).text
    assert 'vsr_jobs_total{status="succeeded"}' in metrics
    for stage in ("download", "decode", "model_encode", "denoise", "model_decode", "video_encode", "upload"):
        assert f'vsr_stage_seconds_count{{stage="{stage}"}}' in metrics, stage
    assert 'vsr_macs_total{component="decoder"}' in metrics and "vsr_frames_total" in metrics
    assert metric(stack, "vsr_frames_total") - frames_before == 12  # counted as they are done, once
    assert (
        metric(stack, "vsr_worker_frames_per_second") == metric(stack, "vsr_worker_eta_seconds") == 0
    )  # idle
    assert metric(stack, "vsr_worker_job_frames", kind="done") == 0

    assert httpx.delete(job["urls"]["get"], headers=stack.acme.headers).status_code == 204
    assert stack.stored_keys(f"jobs/acme/{job['id']}/") == []
    gone = httpx.get(job["urls"]["result"], headers=stack.acme.headers)
    assert gone.status_code == 410


def test_other_tenant_and_idempotent_resubmit(stack: ServiceStack, small_clip: Path) -> None:
    first = stack.submit(small_clip, **{"Idempotency-Key": "batch-7"})
    again = stack.submit(small_clip, **{"Idempotency-Key": "batch-7"})
    assert again["id"] == first["id"]
    foreign = httpx.get(first["urls"]["get"], headers=stack.globex.headers)
    assert foreign.status_code == 404
    assert stack.wait(first)["status"] == "succeeded"
    status = httpx.get(f"{stack.api_url}/v1/status", headers=stack.acme.headers).json()
    assert status["workers"] == 1 and status["storage"] == "s3"


def test_cancel_while_processing_leaves_no_output(stack: ServiceStack, tmp_path: Path) -> None:
    clip = make_test_clip(tmp_path / "long.mp4", frames=96, width=128, height=96)
    job = stack.submit(clip)
    deadline = time.monotonic() + 120
    while (current := stack.get(job))["progress"]["frames_done"] == 0:
        assert time.monotonic() < deadline and current["status"] in ("queued", "processing"), current
        time.sleep(0.05)
    running = current["progress"]
    assert running["fps"] > 0 and running["eta_s"] > 0, running  # measured while the job runs
    assert metric(stack, "vsr_worker_frames_per_second") > 0 and metric(stack, "vsr_worker_eta_seconds") > 0
    assert metric(stack, "vsr_worker_job_frames", kind="total") == 96
    canceled = httpx.post(job["urls"]["cancel"], headers=stack.acme.headers)
    assert canceled.status_code == 202 and canceled.json()["cancel_requested"]
    final = stack.wait(job)
    assert final["status"] == "canceled" and final["output"] is None
    assert final["progress"]["frames_done"] < 96
    assert stack.stored_keys(f"jobs/acme/{job['id']}/") == [] and stack.stored_keys("tmp/") == []


def test_truncated_upload_fails_with_code_and_leaves_nothing(
    stack: ServiceStack, small_clip: Path, tmp_path: Path
) -> None:
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(small_clip.read_bytes()[: small_clip.stat().st_size // 2])
    job = stack.submit(truncated)
    final = stack.wait(job)
    assert final["status"] == "failed" and final["error"]["code"] == "invalid_video", final
    assert final["error"]["message"]
    assert stack.stored_keys(f"jobs/acme/{job['id']}/") == [] and stack.stored_keys("tmp/") == []
    assert stack.worker.alive()


def test_storage_reference_input(stack: ServiceStack, small_clip: Path) -> None:
    stack.s3.upload_file(str(small_clip), INPUT_BUCKET, "uploads/clip.mp4")
    headers = stack.acme.headers
    response = httpx.post(
        f"{stack.api_url}/v1/jobs", headers=headers, json={"input": f"s3://{INPUT_BUCKET}/uploads/clip.mp4"}
    )
    assert response.status_code == 202, response.text
    assert stack.wait(response.json())["status"] == "succeeded"
    refused = httpx.post(f"{stack.api_url}/v1/jobs", headers=headers, json={"input": f"s3://{BUCKET}/jobs/x"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "bucket_not_allowed"
    missing = httpx.post(
        f"{stack.api_url}/v1/jobs", headers=headers, json={"input": f"s3://{INPUT_BUCKET}/nope"}
    )
    assert missing.status_code == 422 and missing.json()["error"]["code"] == "input_not_found"
    assert stack.s3.head_object(Bucket=INPUT_BUCKET, Key="uploads/clip.mp4")  # the client's file stays
