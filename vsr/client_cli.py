"""`vsr submit | status | wait | download | cancel | list`: the job service from the command line.

Connection: `--api-url` / VSR_API_URL (default http://127.0.0.1:8000) and `--api-key` / VSR_API_KEY
(default: the key `vsr serve` saved in VSR_DATA_DIR/api-key, if any). Progress bars (tqdm, on a
terminal) are for people; `--json` prints one JSON document on stdout for scripts. Errors print
`vsr: error: CODE: message` and exit 1. The client (httpx, tqdm) is imported only when a command runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vsr.cli import fail
from worker.encode_options import ENCODERS, PRESETS

if TYPE_CHECKING:
    from vsr.client import Job, RetryEvent, VsrClient

CLIENT_COMMANDS = ("submit", "status", "wait", "download", "cancel", "list")
STATUSES = ("queued", "processing", "succeeded", "failed", "canceled")


def _connection_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--api-url", help="service URL (default: VSR_API_URL, else http://127.0.0.1:8000)")
    common.add_argument("--api-key", help="API key (default: VSR_API_KEY, else VSR_DATA_DIR/api-key)")
    common.add_argument("--json", action="store_true", help="print JSON for scripts (no progress bars)")
    return common


def add_client_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    common = [_connection_options()]
    submit = commands.add_parser("submit", parents=common, help="submit a video file or s3:// object")
    submit.add_argument("input", help="video file to upload, or s3://bucket/key in an allow-listed bucket")
    submit.add_argument("--codec", choices=sorted(ENCODERS), help="output codec (service default: h264)")
    submit.add_argument("--crf", type=int, help="constant rate factor 0..51 (service default: 18)")
    submit.add_argument("--preset", choices=PRESETS, help="encoder preset (service default: medium)")
    submit.add_argument("--container", choices=("mp4", "mkv"), help="output container (default: mp4)")
    submit.add_argument("--model", help="model name (default: the service's default model)")
    submit.add_argument("--webhook-url", help="Standard Webhooks callback for the job's events")
    submit.add_argument(
        "--webhook-events", help="comma-separated subset of start,progress,completed (default: all)"
    )
    submit.add_argument("--idempotency-key", help="retry-safe key (default: a fresh random one)")
    submit.add_argument("--wait", action="store_true", help="wait until the job finishes")
    submit.add_argument("-o", "--output", help="after success, download the result here (implies --wait)")
    submit.add_argument("--timeout", type=float, help="give up waiting after this many seconds")
    submit.add_argument("--no-progress", action="store_true", help="hide progress bars")

    status = commands.add_parser("status", parents=common, help="show a job, or the service without ID")
    status.add_argument("id", nargs="?", help="job id (omit for the service's status)")

    wait = commands.add_parser("wait", parents=common, help="wait until a job finishes")
    wait.add_argument("id", help="job id")
    wait.add_argument("--timeout", type=float, help="give up after this many seconds")
    wait.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    download = commands.add_parser("download", parents=common, help="download a succeeded job's video")
    download.add_argument("id", help="job id")
    download.add_argument("output", help="output file (or an existing directory)")
    download.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    cancel = commands.add_parser("cancel", parents=common, help="cancel a queued or running job")
    cancel.add_argument("id", help="job id")

    listing = commands.add_parser("list", parents=common, help="list jobs, newest first")
    listing.add_argument("--status", choices=STATUSES, help="only jobs in this state")
    listing.add_argument("--limit", type=int, default=20, help="at most this many jobs (default 20)")


def run_client_command(args: argparse.Namespace) -> int:
    """Run one client command; every failure ends in `fail(code, message)`."""
    from vsr.client import ApiError, VsrConnectionError, WaitTimeoutError

    try:
        with _client(args) as client:
            return HANDLERS[args.command](client, args)
    except ApiError as exc:
        fail(exc.code, exc.message)
    except VsrConnectionError as exc:
        fail("connection_error", str(exc))
    except WaitTimeoutError as exc:
        fail("wait_timeout", str(exc))
    except FileNotFoundError as exc:
        fail("file_not_found", str(exc))
    except KeyboardInterrupt:
        fail("interrupted", "stopped by the user")
    except BrokenPipeError:  # `vsr list --json | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _api_key(args: argparse.Namespace) -> str | None:
    if args.api_key:
        return str(args.api_key)
    if os.environ.get("VSR_API_KEY"):
        return os.environ["VSR_API_KEY"]
    saved = Path(os.environ.get("VSR_DATA_DIR", "vsr-data")) / "api-key"
    try:
        return saved.read_text().strip() or None
    except OSError:
        return None


@contextmanager
def _client(args: argparse.Namespace) -> Iterator[VsrClient]:
    from vsr.client import VsrClient

    def retrying(event: RetryEvent) -> None:
        print(f"vsr: {event.reason}; retrying in {event.delay_s:.1f} s", file=sys.stderr)

    with VsrClient(args.api_url, _api_key(args), on_retry=retrying) as client:
        yield client


def _bars_off(args: argparse.Namespace) -> bool | None:
    """tqdm's `disable`: off for --json / --no-progress, else on only when stderr is a terminal."""
    return True if args.json or getattr(args, "no_progress", False) else None


def _tqdm(**kwargs: Any) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # the API-only install has no tqdm: no bars
        return None
    return tqdm(file=sys.stderr, dynamic_ncols=True, **kwargs)


class _ByteBar:
    """A `progress(done, total)` callback drawing a bytes bar; restarts on a retried transfer."""

    def __init__(self, desc: str, disable: bool | None) -> None:
        self.bar = _tqdm(desc=desc, unit="B", unit_scale=True, unit_divisor=1024, disable=disable)

    def __call__(self, done: int, total: int | None) -> None:
        if self.bar is None:
            return
        if done < self.bar.n or self.bar.total != total:
            self.bar.reset(total=total)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _emit(args: argparse.Namespace, value: Any, human: str) -> None:
    if args.json:
        print(json.dumps(value))
    else:
        print(human)


def _job_json(job: Job) -> dict[str, Any]:
    return job.model_dump(mode="json")


def _wait(client: VsrClient, job_id: str, args: argparse.Namespace) -> Job:
    bar = _tqdm(desc="queued", unit="frame", disable=_bars_off(args))

    def update(job: Job) -> None:
        if bar is None:
            return
        total = job.progress.frames_total
        if total is not None and bar.total != total:
            bar.reset(total=total)
        bar.set_description(str(job.status), refresh=False)
        speed = job.progress  # the worker's own rate: the bar's would count the polling interval
        if speed.fps is not None:
            eta = "" if speed.eta_s is None else f", ETA {speed.eta_s:.0f} s"
            bar.set_postfix_str(f"worker {speed.fps:.2f} frames/s{eta}", refresh=False)
        bar.update(job.progress.frames_done - bar.n)

    try:
        return client.wait(job_id, timeout=args.timeout, on_update=update)
    finally:
        if bar is not None:
            bar.close()


def _finish(args: argparse.Namespace, job: Job) -> int:
    """Print a terminal job; a failed or canceled one ends with its error code (exit 1)."""
    _emit(args, _job_json(job), _describe(job))
    if job.status == "succeeded":
        return 0
    if job.error is not None:
        fail(job.error.code, job.error.message)
    fail(f"job_{job.status}", f"job {job.id} was {job.status}")


def cmd_submit(client: VsrClient, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {
        name: getattr(args, name)
        for name in ("codec", "crf", "preset", "container", "model", "webhook_url")
        if getattr(args, name) is not None
    }
    if args.webhook_events is not None:
        params["webhook_events"] = [e.strip() for e in args.webhook_events.split(",") if e.strip()]
    if args.input.startswith("s3://"):
        job = client.submit_reference(args.input, idempotency_key=args.idempotency_key, **params)
    else:
        source = Path(args.input)
        if not source.is_file():
            fail("file_not_found", f"no such file: {source}")
        bar = _ByteBar("upload", _bars_off(args))
        try:
            job = client.submit(source, idempotency_key=args.idempotency_key, progress=bar, **params)
        finally:
            bar.close()
    if not (args.wait or args.output):
        _emit(args, _job_json(job), f"job {job.id} {job.status}\n  {job.urls.get}")
        return 0
    if not args.json:
        print(f"job {job.id} {job.status}", file=sys.stderr)
    job = _wait(client, job.id, args)
    if args.output and job.status == "succeeded":
        bar = _ByteBar("download", _bars_off(args))
        try:
            path = client.download(job.id, args.output, progress=bar)
        finally:
            bar.close()
        if not args.json:
            print(f"saved {path}", file=sys.stderr)
    return _finish(args, job)


def cmd_status(client: VsrClient, args: argparse.Namespace) -> int:
    if args.id is None:
        status = client.status()
        human = "\n".join(f"{name:16} {value}" for name, value in status.model_dump().items())
        _emit(args, status.model_dump(mode="json"), human)
        return 0
    job = client.get(args.id)
    _emit(args, _job_json(job), _describe(job))
    return 0


def cmd_wait(client: VsrClient, args: argparse.Namespace) -> int:
    return _finish(args, _wait(client, args.id, args))


def cmd_download(client: VsrClient, args: argparse.Namespace) -> int:
    bar = _ByteBar("download", _bars_off(args))
    try:
        path = client.download(args.id, args.output, progress=bar)
    finally:
        bar.close()
    size = path.stat().st_size
    _emit(args, {"id": args.id, "path": str(path), "bytes": size}, f"{path} ({_bytes(size)})")
    return 0


def cmd_cancel(client: VsrClient, args: argparse.Namespace) -> int:
    job = client.cancel(args.id)
    state = "cancel requested: it stops at its next chunk" if job.status == "processing" else str(job.status)
    _emit(args, _job_json(job), f"job {job.id} {state}")
    return 0


def cmd_list(client: VsrClient, args: argparse.Namespace) -> int:
    if args.limit < 1:
        fail("invalid_params", "--limit must be at least 1")
    jobs = list(client.list(status=args.status, limit=args.limit, page_size=min(args.limit, 100)))
    rows = [f"{'id':32}  {'status':10}  {'progress':>9}  created"]
    for job in jobs:
        done, total = job.progress.frames_done, job.progress.frames_total
        progress = f"{done}/{total if total is not None else '?'}"
        rows.append(f"{job.id:32}  {job.status:10}  {progress:>9}  {job.created_at:%Y-%m-%d %H:%M:%S}")
    _emit(args, [_job_json(j) for j in jobs], "\n".join(rows) if jobs else "no jobs")
    return 0


HANDLERS = {
    "submit": cmd_submit,
    "status": cmd_status,
    "wait": cmd_wait,
    "download": cmd_download,
    "cancel": cmd_cancel,
    "list": cmd_list,
}


def _bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def _describe(job: Job) -> str:
    """A few lines for people: state, progress, output or error, per-stage seconds and MACs."""
    done, total = job.progress.frames_done, job.progress.frames_total
    lines = [f"job {job.id}  {job.status}", f"  progress  {done}/{'?' if total is None else total} frames"]
    if job.output is not None:
        out = job.output
        size = f"{out.width}x{out.height}, {out.frames} frames @ {out.fps:g} fps"
        lines.append(f"  output    {size}, {_bytes(out.bytes)}")
    if job.error is not None:
        lines.append(f"  error     {job.error.code}: {job.error.message}")
    if job.timings:
        stages = ", ".join(f"{name} {seconds:.2f}" for name, seconds in job.timings.items())
        lines.append(f"  seconds   {stages} (total {sum(job.timings.values()):.2f})")
    if job.macs:
        macs = ", ".join(f"{name} {value / 1e9:.1f}" for name, value in job.macs.items())
        lines.append(f"  GMACs     {macs}")
    return "\n".join(lines)
