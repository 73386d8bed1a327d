"""worker.allocator: which malloc a process runs on, and a whole upscale under the preloaded tcmalloc."""

from __future__ import annotations

import glob
import subprocess
import sys
from pathlib import Path

import numpy as np

from models.weights import save_model
from tests.conftest import tiny_model
from tests.media import make_test_clip
from worker.allocator import Malloc, allocator_advice, find_tcmalloc, malloc_env
from worker.video_io import iter_frames

REPORT = "from worker.allocator import malloc_library; print(malloc_library())"


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def tcmalloc() -> Path:
    library = find_tcmalloc()
    assert library is not None, "libtcmalloc-minimal4 is missing (.ci/run installs it)"
    return library


def test_tcmalloc_is_found_where_debian_installs_it() -> None:
    library = tcmalloc()
    assert library.name == "libtcmalloc_minimal.so.4" and library.exists()


def test_a_process_reports_the_malloc_it_was_started_with() -> None:
    (jemalloc, *_) = glob.glob("/usr/lib/*/libjemalloc.so.2") or [""]
    assert jemalloc, "libjemalloc2 is missing (.ci/run installs it)"
    started = {  # the environments bench.engines and bench.conv_floor give their children, and jemalloc's
        "glibc": malloc_env("glibc"),
        "tcmalloc": malloc_env("tcmalloc"),
        "jemalloc": malloc_env("glibc") | {"LD_PRELOAD": jemalloc},
    }
    for expected, env in started.items():
        result = run_python(f"import torch, av, onnxruntime; {REPORT}", env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == expected


def test_only_a_cpu_worker_on_glibc_is_warned() -> None:
    advice = allocator_advice("cpu", "glibc")
    assert advice is not None and f"LD_PRELOAD={tcmalloc()}" in advice
    assert allocator_advice("cpu", "tcmalloc") is None
    assert allocator_advice("cpu", "jemalloc") is None
    assert allocator_advice("cuda:0", "glibc") is None


def test_an_upscale_on_tcmalloc_gives_glibcs_video(tmp_path: Path) -> None:
    """torch and PyAV in one process on the preloaded tcmalloc, as the CPU worker image runs them: the
    same video as on glibc's malloc, frame for frame."""
    model_dir = save_model(tiny_model(), tmp_path / "model")
    source = make_test_clip(tmp_path / "in.mp4", frames=6, width=32, height=24, audio=False)
    videos = {}
    mallocs: tuple[Malloc, ...] = ("glibc", "tcmalloc")
    for malloc in mallocs:
        output = tmp_path / f"{malloc}.mp4"
        code = f"import sys; from vsr.cli import main; sys.argv[0] = 'vsr'; {REPORT}; main()"
        args = ("upscale", str(source), str(output), "--model", str(model_dir), "--backend", "torch")
        result = subprocess.run(
            [sys.executable, "-c", code, *args],
            env=malloc_env(malloc),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[0] == malloc
        warned = "vsr: note: CPU inference on glibc's malloc" in result.stderr
        assert warned == (malloc == "glibc"), result.stderr
        videos[malloc] = np.stack([frame.image for frame in iter_frames(output)])
    assert videos["glibc"].shape == (6, 96, 128, 3)
    assert np.array_equal(videos["glibc"], videos["tcmalloc"])
