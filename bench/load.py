"""Load: N concurrent submissions of a small clip to a running service (API + 2 workers, real Redis).

Starts its own redis-server (or uses `redis_url`), `vsr serve` and `vsr worker` processes with local
storage, and uploads one tiny clip N times at once: N asyncio tasks, one connection each (no pool limit),
released together by a barrier (each with its own Idempotency-Key). It measures how many uploads were
really on the wire at the same moment (`max_in_flight`: requests whose body had started to go out and
whose answer had not come back), polls every job's status while the load runs, and checks: every job
succeeded, none lost, no duplicate job ids, exactly one published output per job, each job run once. It
reports the status endpoint's (GET /v1/jobs/{id}) latency under that load, the wall time and the
throughput.

    python -m bench.load                      # 300 jobs, all at once, 2 workers -> bench/results/load.json
    python -m bench.load --jobs 50 --out /tmp/load.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tests.media import make_test_clip
from tests.support.redis_server import start_redis
from tests.support.stack import TERMINAL, ServiceStack

RESULTS = Path(__file__).resolve().parent / "results" / "load.json"
CLIP = {"frames": 2, "width": 16, "height": 16}  # the smallest clip the pipeline takes whole
# Two polling clients, each at most 20 requests/s (40/s in all: 300 waiting clients polling every 7.5 s),
# no job read more often than every 0.5 s: the poller's own load stays small next to the workers'.
POLL_THREADS, REQUEST_GAP_S, POLL_INTERVAL_S = 2, 0.05, 0.5
BARRIER_TIMEOUT_S = 120.0  # longest wait for every upload to start (a stuck one fails the run instead)
JOBS_TOTAL = re.compile(r'^vsr_jobs_total\{status="succeeded"\} (\S+)$', re.MULTILINE)


@dataclass
class Latencies:
    """Request latencies in seconds, summarised as percentiles in milliseconds."""

    samples: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, seconds: float) -> None:
        with self.lock:
            self.samples.append(seconds)

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.samples)
        if not ordered:
            return {"count": 0}

        def pct(p: float) -> float:
            return round(1000 * ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))], 2)

        return {
            "count": len(ordered),
            "p50_ms": pct(50),
            "p95_ms": pct(95),
            "p99_ms": pct(99),
            "max_ms": pct(100),
        }


@dataclass
class InFlight:
    """Uploads on the wire right now (body started, answer not back), and the most there ever were."""

    now: int = 0
    peak: int = 0

    def enter(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        self.now -= 1


@dataclass
class LoadResult:
    jobs: int
    workers: int
    clip: dict[str, Any]
    max_in_flight: int = 0  # measured: most uploads on the wire at the same moment
    submitted: int = 0
    submit_errors: list[str] = field(default_factory=list)
    succeeded: int = 0
    failed: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    duplicate_ids: int = 0
    duplicate_outputs: int = 0
    missing_outputs: list[str] = field(default_factory=list)
    stray_objects: list[str] = field(default_factory=list)
    rerun_jobs: list[str] = field(default_factory=list)
    status_errors: list[str] = field(default_factory=list)
    processed_per_worker: list[float] = field(default_factory=list)
    submit_s: float = 0.0
    wall_s: float = 0.0
    jobs_per_s: float = 0.0
    submit_latency: dict[str, float] = field(default_factory=dict)
    status_latency: dict[str, float] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def problems(self) -> list[str]:
        """What went wrong, one line each (empty when the run is clean)."""
        checks = {
            "submissions refused": self.submit_errors,
            "jobs not succeeded": self.failed,
            "jobs lost": self.lost,
            "outputs missing": self.missing_outputs,
            "stray objects": self.stray_objects,
            "jobs run more than once": self.rerun_jobs,
            "status endpoint errors": self.status_errors,
        }
        lines = [f"{name}: {len(items)} {items[:3]}" for name, items in checks.items() if items]
        if self.succeeded != self.jobs:
            lines.append(f"{self.succeeded}/{self.jobs} succeeded")
        if self.max_in_flight != self.jobs:
            lines.append(f"only {self.max_in_flight}/{self.jobs} uploads were in flight at once")
        if self.duplicate_ids or self.duplicate_outputs:
            lines.append(f"duplicates: {self.duplicate_ids} ids, {self.duplicate_outputs} outputs")
        if sum(self.processed_per_worker) != self.jobs:
            lines.append(f"workers processed {sum(self.processed_per_worker)} jobs for {self.jobs}")
        return lines


@contextmanager
def running_stack(root: Path, workers: int, redis_url: str | None) -> Iterator[ServiceStack]:
    """A service stack on `redis_url`, or on a redis-server of its own."""
    redis = None if redis_url else start_redis(root / "redis")
    url = redis.url if redis is not None else str(redis_url)
    stack = ServiceStack(url, root / "stack", workers=workers)
    try:
        yield stack.start()
    finally:
        stack.stop()
        if redis is not None:
            redis.stop()


def _multipart(clip: bytes) -> tuple[str, bytes, bytes]:
    """(content type, head, tail) of a multipart/form-data body with `clip` as its `file` part."""
    boundary = f"load-{secrets.token_hex(12)}"
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="clip.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    return f"multipart/form-data; boundary={boundary}", head, f"\r\n--{boundary}--\r\n".encode()


async def _submit_all(
    stack: ServiceStack, clip: bytes, result: LoadResult, latency: Latencies, poller: Poller
) -> list[str]:
    """Upload the clip `result.jobs` times at once, handing each new job to `poller` as soon as it is
    accepted; return the job ids in submission order.

    Two barriers make the uploads truly concurrent: every task starts together once all exist, and each
    upload sends its multipart head, then holds its body until every upload is on the wire (the API
    cannot answer a submission before its body is complete), so all `jobs` requests are in flight at the
    same moment; `result.max_in_flight` is measured, not assumed.
    """
    content_type, head, tail = _multipart(clip)
    in_flight = InFlight()
    go, all_sending = asyncio.Barrier(result.jobs), asyncio.Barrier(result.jobs)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)  # one connection per upload
    timeout = httpx.Timeout(300, connect=60)

    async def body(sending: list[bool]) -> AsyncIterator[bytes]:
        sending.append(True)
        in_flight.enter()  # the connection is up and the request line and headers are out
        yield head
        async with asyncio.timeout(BARRIER_TIMEOUT_S):
            await all_sending.wait()
        yield clip
        yield tail

    async def submit(client: httpx.AsyncClient, index: int) -> str | None:
        headers = {
            **stack.acme.headers,
            "Idempotency-Key": f"load-{index}",
            "Content-Type": content_type,
            "Content-Length": str(len(head) + len(clip) + len(tail)),
        }
        sending: list[bool] = []
        try:
            async with asyncio.timeout(BARRIER_TIMEOUT_S):
                await go.wait()
            start = time.perf_counter()
            response = await client.post(f"{stack.api_url}/v1/jobs", headers=headers, content=body(sending))
        except Exception as exc:  # a failed upload is a result, not a crash
            result.submit_errors.append(f"#{index}: {type(exc).__name__}: {exc}")
            await all_sending.abort()  # never leave the others waiting for this one
            await go.abort()
            return None
        finally:
            if sending:
                in_flight.leave()
        latency.add(time.perf_counter() - start)
        if response.status_code != 202:
            result.submit_errors.append(f"#{index}: {response.status_code} {response.text[:200]}")
            return None
        job_id = str(response.json()["id"])
        poller.add([job_id])
        return job_id

    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        ids = await asyncio.gather(*(submit(client, index) for index in range(result.jobs)))
    result.max_in_flight = in_flight.peak
    return [i for i in ids if i is not None]


class Poller:
    """Threads that sweep the pending jobs' status until each is terminal, timing every request."""

    def __init__(self, stack: ServiceStack, threads: int = POLL_THREADS) -> None:
        self.stack, self.threads = stack, threads
        self.latency = Latencies()
        self.final: dict[str, dict[str, Any]] = {}
        self.missing: set[str] = set()
        self.errors: list[str] = []  # non-200/404 answers of the status endpoint
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._workers: list[threading.Thread] = []

    def add(self, job_ids: list[str]) -> None:
        with self._lock:
            self._pending.extend(job_ids)

    def start(self) -> Poller:
        for index in range(self.threads):
            thread = threading.Thread(target=self._run, args=(index,), daemon=True)
            thread.start()
            self._workers.append(thread)
        return self

    def _run(self, index: int) -> None:
        with httpx.Client(timeout=60, headers=self.stack.acme.headers) as client:
            while not self._done.is_set():
                with self._lock:
                    mine = self._pending[index :: self.threads]
                for job_id in mine:
                    start = time.perf_counter()
                    try:
                        response = client.get(f"{self.stack.api_url}/v1/jobs/{job_id}")
                    except httpx.HTTPError as exc:
                        self.errors.append(f"{job_id}: {type(exc).__name__}: {exc}")
                        continue
                    self.latency.add(time.perf_counter() - start)
                    if response.status_code == 404:
                        self._finish(job_id, None)
                    elif response.status_code != 200:
                        self.errors.append(f"{job_id}: {response.status_code} {response.text[:200]}")
                    elif response.json()["status"] in TERMINAL:
                        self._finish(job_id, response.json())
                    self._done.wait(REQUEST_GAP_S)
                self._done.wait(POLL_INTERVAL_S)

    def _finish(self, job_id: str, record: dict[str, Any] | None) -> None:
        with self._lock:
            if job_id in self._pending:
                self._pending.remove(job_id)
                if record is None:
                    self.missing.add(job_id)
                else:
                    self.final[job_id] = record

    def wait(self, expected: int, timeout: float) -> None:
        """Until `expected` jobs are terminal (or missing), or `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while len(self.final) + len(self.missing) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        self._done.set()
        for thread in self._workers:
            thread.join(10)


def _check_outputs(stack: ServiceStack, ids: list[str], result: LoadResult) -> None:
    """Exactly one output object per job and nothing else left (no staging, no spool)."""
    keys = stack.stored_keys()
    outputs = [k for k in keys if k.rsplit("/", 1)[-1].startswith("output.")]
    per_job: dict[str, int] = {}
    for key in outputs:
        per_job[key.split("/")[2]] = per_job.get(key.split("/")[2], 0) + 1
    result.duplicate_outputs = sum(n - 1 for n in per_job.values() if n > 1)
    result.missing_outputs = [i for i in ids if i not in per_job]
    expected = {f"jobs/acme/{i}/{name}" for i in ids for name in ("input.mp4", "output.mp4")}
    result.stray_objects = sorted(set(keys) - expected)


def _worker_counts(stack: ServiceStack) -> list[float]:
    """Jobs each worker process reports as succeeded (its own /metrics)."""
    counts = []
    for index in range(len(stack.worker_processes)):
        text = httpx.get(stack.metrics_url(index), timeout=10).text
        counts.append(sum(float(v) for v in JOBS_TOTAL.findall(text)))
    return counts


def run_load(
    jobs: int = 300,
    workers: int = 2,
    root: Path | None = None,
    redis_url: str | None = None,
    timeout_s: float = 600,
) -> LoadResult:
    """Run the load (all `jobs` uploads at once) against a fresh stack; return what was measured and
    checked."""
    with tempfile.TemporaryDirectory(prefix="vsr-load-") as scratch:
        base = root or Path(scratch)
        clip_path = make_test_clip(
            base / "clip.mp4", frames=CLIP["frames"], width=CLIP["width"], height=CLIP["height"], audio=False
        )
        clip = clip_path.read_bytes()
        shape = {**CLIP, "bytes": len(clip)}
        result = LoadResult(jobs=jobs, workers=workers, clip=shape)
        result.machine = {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "load_average_1m_before": round(os.getloadavg()[0], 2),  # other work on the machine
        }
        with running_stack(base, workers, redis_url) as stack:
            submit_latency = Latencies()
            poller = Poller(stack).start()
            start = time.perf_counter()
            ids = asyncio.run(_submit_all(stack, clip, result, submit_latency, poller))
            result.submit_s = round(time.perf_counter() - start, 3)
            poller.wait(len(ids), timeout_s)
            result.wall_s = round(time.perf_counter() - start, 3)
            result.submitted = len(ids)
            result.duplicate_ids = len(ids) - len(set(ids))
            finals = poller.final
            result.succeeded = sum(1 for j in finals.values() if j["status"] == "succeeded")
            result.failed = [
                f"{i}: {j['status']} {j['error']}" for i, j in finals.items() if j["status"] != "succeeded"
            ]
            result.lost = sorted(set(ids) - set(finals))
            result.rerun_jobs = [i for i, j in finals.items() if j.get("attempts", 1) != 1]
            result.status_errors = poller.errors
            _check_outputs(stack, ids, result)
            result.processed_per_worker = _worker_counts(stack)
        result.machine["load_average_1m_after"] = round(os.getloadavg()[0], 2)
        result.jobs_per_s = round(result.succeeded / result.wall_s, 2) if result.wall_s else 0.0
        result.submit_latency = submit_latency.summary()
        result.status_latency = poller.latency.summary()
    return result


def source_version() -> str:
    """`git describe`-style id of the code measured (with -dirty for uncommitted changes), if known."""
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run_load(args.jobs, args.workers)
    report = asdict(result)
    report["problems"] = result.problems
    report["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    report["source"] = source_version()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    status = result.status_latency
    print(
        f"{result.succeeded}/{result.jobs} succeeded, {len(result.lost)} lost, "
        f"{result.duplicate_ids} duplicate ids, {result.duplicate_outputs} duplicate outputs "
        f"({args.workers} workers, {result.max_in_flight} of {result.jobs} uploads in flight at once)"
    )
    print(
        f"wall {result.wall_s:.1f} s (uploads {result.submit_s:.1f} s), {result.jobs_per_s:.2f} jobs/s, "
        f"per worker {result.processed_per_worker}"
    )
    print(
        f"status endpoint under load: p50 {status.get('p50_ms')} ms, p95 {status.get('p95_ms')} ms, "
        f"p99 {status.get('p99_ms')} ms over {status.get('count')} requests"
    )
    print(f"submit: {result.submit_latency}")
    for line in result.problems:
        print(f"PROBLEM: {line}")
    print(f"written to {args.out}")
    return 1 if result.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
