"""`make demo` (`python -m vsr.demo`) end to end, in a child process as `make` runs it: the embedded
service (API + in-process worker) over HTTP, on a short sample clip (`--frames`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from PIL import Image

from service.metrics import STAGES
from tests.support.processes import REPO
from vsr.demo import CLIP_SIZE, LABEL_HEIGHT
from worker.video_io import iter_frames, probe_video

FRAMES = 3


def test_demo_runs_the_service_path_and_prints_the_job_metrics(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VSR_")}  # the demo's own defaults
    done = subprocess.run(
        [sys.executable, "-m", "vsr.demo", "--out", str(out), "--frames", str(FRAMES)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    stdout = done.stdout

    # The result came through the service: submitted over HTTP, followed to `succeeded`, downloaded.
    assert re.search(r"^submitted job [0-9a-f]{32} \(202 queued\)$", stdout, re.M), stdout
    assert f"succeeded: {FRAMES}/{FRAMES} frames" in stdout
    result = out / "sample_x4.mp4"
    info = probe_video(result)
    width, height = CLIP_SIZE[0] * 4, CLIP_SIZE[1] * 4
    assert (info.width, info.height) == (width, height)
    assert sum(1 for _ in iter_frames(result)) == FRAMES
    assert f"input clip:  {out / 'sample_lr.mp4'} ({CLIP_SIZE[0]}x{CLIP_SIZE[1]}, {FRAMES} frames)" in stdout
    size = result.stat().st_size
    assert f"output clip: {result} ({width}x{height}, {FRAMES} frames, {size} bytes)" in stdout

    # The job's metrics, as the job record reports them: every stage's seconds, and its MACs.
    (stages_line,) = [line for line in stdout.splitlines() if line.startswith("job stage seconds: ")]
    timings = dict(
        item.rsplit(" ", 1) for item in stages_line.removeprefix("job stage seconds: ").split(", ")
    )
    assert set(timings) == set(STAGES), timings
    assert all(float(value) >= 0 for value in timings.values())
    assert float(timings["model_encode"]) + float(timings["model_decode"]) > 0
    macs = re.search(r"^job MACs: ([\d.]+) G total, ([\d.]+) G per output frame$", stdout, re.M)
    assert macs is not None, stdout
    total, per_frame = float(macs[1]), float(macs[2])
    assert total > 0 and abs(per_frame - total / FRAMES) <= 0.01 + 0.01 * per_frame

    with Image.open(out / "comparison.png") as png:  # bicubic and model output side by side
        assert png.size == (2 * width, height + LABEL_HEIGHT)
