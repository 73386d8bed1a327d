"""Per-frame latency of each stage and of the whole pipeline, on every engine backend available here.

FastVSR and the baseline, at 180p -> 720p and 360p -> 1440p, measured side by side in one run: each
backend streams in a process of its own (as a worker runs one), the backends' processes alternating
`--rounds` times, so slow phases of the machine hit all alike. Each stream first runs an untimed first
chunk (and, for compiled engines, two more), then times `--repeats` continuing chunks of `--frames` LR
frames (8, the service's default chunk); the median per stage is divided by the frames. Run it with
the worker images' `GLIBC_TUNABLES` (`make bench-engines` sets it) to measure what they run. On the CPU,
each variant's process runs on the malloc its name says: tcmalloc preloaded, as the CPU worker image runs
(`worker.allocator`), or glibc's (`torch-fp32-eager-glibc`).

    python -m bench.engines                                   # CPU: torch eager vs ONNX Runtime
    python -m bench.engines --device cuda --repeats 10
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from engines.ort_engine import cuda_provider_available
from engines.pipeline import STAGE_OF, load_engines
from engines.settings import EngineSettings, ShapeRange
from engines.trt_engine import tensorrt_available
from models.config import load_named_config
from models.sr_model import VSRModel
from worker.allocator import Malloc, malloc_env, malloc_library
from worker.upscaler import padded_size

T = TypeVar("T")
SIZES = {"180p": (180, 320), "360p": (360, 640)}
PIPELINES = ("fastvsr", "baseline")
STAGES = tuple(STAGE_OF.values())
TARGETS = {"onnxruntime_vs_torch_cpu": 1.5, "bf16_compiled_vs_fp32_eager": 3.0, "fastvsr_vs_baseline": 3.9}


@dataclass(frozen=True)
class Variant:
    name: str
    backend: str
    precision: str
    compile: bool = False
    malloc: Malloc = "glibc"  # the process's malloc: glibc (with GLIBC_TUNABLES as set) or tcmalloc


def variants(device: str) -> list[Variant]:
    """CPU: as the CPU worker image runs them (tcmalloc preloaded), and torch on glibc's malloc beside;
    GPU: as the GPU image runs them (glibc)."""
    if device == "cpu":
        return [
            Variant("torch-fp32-eager", "torch", "fp32", malloc="tcmalloc"),
            Variant("torch-fp32-eager-glibc", "torch", "fp32", malloc="glibc"),
            Variant("onnxruntime-fp32", "onnxruntime", "fp32", malloc="tcmalloc"),
        ]
    found = [
        Variant("torch-fp32-eager", "torch", "fp32"),
        Variant("torch-bf16-compiled", "torch", "bf16", compile=True),
    ]
    if cuda_provider_available():
        found.append(Variant("onnxruntime-fp16", "onnxruntime", "fp16"))
    if tensorrt_available():
        found.append(Variant("tensorrt-fp16", "tensorrt", "fp16"))
    return found


def synchronized(device: torch.device) -> Callable[[], None]:
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


class StageClock:
    """A `StageTimer` that records wall seconds per stage (synchronizing CUDA around each)."""

    def __init__(self, device: torch.device) -> None:
        self.sync = synchronized(device)
        self.seconds: dict[str, float] = {}

    def __call__(self, stage: str, fn: Callable[[], T]) -> T:
        self.sync()
        start = time.perf_counter()
        out = fn()
        self.sync()
        self.seconds[stage] = time.perf_counter() - start
        return out


def engine_settings(variant: Variant, threads: int, frames: int, tc: int) -> EngineSettings:
    heights, widths = [s[0] for s in SIZES.values()], [s[1] for s in SIZES.values()]
    return EngineSettings(
        backend=variant.backend,  # type: ignore[arg-type]
        precision=variant.precision,  # type: ignore[arg-type]
        compile=variant.compile,
        threads=threads,
        frames=ShapeRange(min=1, opt=frames, max=frames + tc),
        height=ShapeRange(min=min(heights), opt=max(heights), max=max(heights)),
        width=ShapeRange(min=min(widths), opt=max(widths), max=max(widths)),
    )


def run(
    config_name: str,
    device_name: str,
    frames: int,
    repeats: int,
    threads: int,
    on_size: Callable[[dict[str, Any]], None] = lambda report: None,
    sizes: tuple[str, ...] = tuple(SIZES),
    rounds: int = 2,
    pipelines: tuple[str, ...] = PIPELINES,
) -> dict[str, Any]:
    """Measure every size; `on_size` sees the report after each (partial results survive a timeout)."""
    device = torch.device(device_name)
    base = load_named_config(config_name)
    tc = base.vae.temporal_compression
    frames = padded_size(frames, tc)
    report: dict[str, Any] = {
        "device": "cpu" if device.type == "cpu" else torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "threads": threads,
        "config": config_name,
        "frames_per_chunk": frames,
        "repeats": repeats,
        "rounds": rounds,
        "isolation": "one process per (variant, round), variants alternating",
        "sizes": {
            name: f"{SIZES[name][0]}x{SIZES[name][1]} -> {4 * SIZES[name][0]}x{4 * SIZES[name][1]}"
            for name in sizes
        },
        "ms_per_frame": {},
    }
    for size_name in sizes:
        height, width = SIZES[size_name]
        table: dict[str, dict[str, dict[str, float]]] = {}
        for pipeline in pipelines:
            jobs = [
                Job(config_name, pipeline, v, height, width, frames, repeats, threads, device_name)
                for v in variants(device.type)
            ]
            table[pipeline] = measure_pipeline(jobs, rounds)
        report["ms_per_frame"][size_name] = table
        report["ratios"] = ratios(report["ms_per_frame"])
        report["targets"] = TARGETS
        on_size(report)
    return report


@dataclass(frozen=True)
class Job:
    """One timed stream: a variant of one pipeline at one LR size, in a process of its own."""

    config: str
    pipeline: str
    variant: Variant
    height: int
    width: int
    frames: int
    repeats: int
    threads: int
    device: str


def time_stream(job: Job) -> list[dict[str, float]]:
    """Seconds per stage of `job.repeats` continuing chunks, after the untimed warm-up chunks."""
    if malloc_library() != job.variant.malloc:
        raise RuntimeError(f"{job.variant.name} should run on {job.variant.malloc}, not {malloc_library()}")
    torch.set_num_threads(job.threads)
    device = torch.device(job.device)
    config = load_named_config(job.config).with_pipeline(job.pipeline)  # type: ignore[arg-type]
    tc, m = config.vae.temporal_compression, config.lr_multiple
    generator = torch.Generator().manual_seed(0)
    lr = torch.rand(
        1, 3, job.frames, padded_size(job.height, m), padded_size(job.width, m), generator=generator
    )
    lr = lr.to(device)
    torch.manual_seed(0)
    model = VSRModel(config).eval()
    engines = load_engines(model, engine_settings(job.variant, job.threads, job.frames, tc), device)
    stream = engines.new_stream()
    samples = []
    with torch.inference_mode():
        engines.upscale_chunk(torch.cat([lr[:, :, :1], lr], dim=2)[:, :, : job.frames + 1], stream)
        for _ in range(2 if job.variant.compile else 0):
            engines.upscale_chunk(lr, stream)
        for _ in range(job.repeats):
            clock = StageClock(device)
            engines.upscale_chunk(lr, stream, clock)
            samples.append(clock.seconds)
    engines.close()
    return samples


def time_in_subprocess(job: Job) -> list[dict[str, float]]:
    """`time_stream(job)` in a fresh interpreter: each backend alone in its process, as a worker runs it
    (in one process, torch eager measured ~1.7x slower next to ONNX Runtime's sessions than alone)."""
    spec = json.dumps(dataclasses.asdict(job))
    done = subprocess.run(
        [sys.executable, "-m", "bench.engines", "--job", spec],
        capture_output=True,
        text=True,
        check=False,
        env=malloc_env(job.variant.malloc),
    )
    if done.returncode != 0:
        raise RuntimeError(f"{job.pipeline} {job.variant.name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_pipeline(jobs: list[Job], rounds: int) -> dict[str, dict[str, float]]:
    """Median ms per frame of each stage for each variant; the variants' processes alternate `rounds`
    times, so slow phases of the machine hit all of them alike."""
    samples: dict[str, list[dict[str, float]]] = {job.variant.name: [] for job in jobs}
    for _ in range(rounds):
        for job in jobs:
            samples[job.variant.name] += time_in_subprocess(job)
    frames = jobs[0].frames
    table = {}
    for name, seconds in samples.items():
        medians = {s: statistics.median(x[s] for x in seconds) * 1000 / frames for s in STAGES}
        totals = [sum(x.values()) * 1000 / frames for x in seconds]
        table[name] = medians | {"total": statistics.median(totals)}
    return table


def ratios(table: dict[str, dict[str, dict[str, dict[str, float]]]]) -> dict[str, dict[str, float]]:
    """Speed-ups (slower total / faster total) per size, pipeline and backend."""
    result: dict[str, dict[str, float]] = {}
    for size, by_pipeline in table.items():
        entry = result.setdefault(size, {})
        for pipeline, by_variant in by_pipeline.items():
            total = {name: value["total"] for name, value in by_variant.items()}
            if {"torch-fp32-eager", "onnxruntime-fp32"} <= set(total):
                entry[f"onnxruntime_vs_torch_cpu.{pipeline}"] = (
                    total["torch-fp32-eager"] / total["onnxruntime-fp32"]
                )
            if {"torch-fp32-eager", "torch-fp32-eager-glibc"} <= set(total):
                entry[f"tcmalloc_vs_glibc_torch_cpu.{pipeline}"] = (
                    total["torch-fp32-eager-glibc"] / total["torch-fp32-eager"]
                )
            if {"torch-fp32-eager", "torch-bf16-compiled"} <= set(total):
                entry[f"bf16_compiled_vs_fp32_eager.{pipeline}"] = (
                    total["torch-fp32-eager"] / total["torch-bf16-compiled"]
                )
        if {"fastvsr", "baseline"} <= by_pipeline.keys():
            for variant, fast in by_pipeline["fastvsr"].items():
                slow = by_pipeline["baseline"][variant]["total"]
                entry[f"fastvsr_vs_baseline.{variant}"] = slow / fast["total"]
    return result


def print_report(report: dict[str, Any]) -> None:
    print(
        f"{report['device']}, torch {report['torch']}, {report['threads']} threads, "
        f"{report['frames_per_chunk']} frames/chunk, median of {report['repeats']} chunks in each of "
        f"{report['rounds']} alternating processes per backend (ms per frame)"
    )
    for size, by_pipeline in report["ms_per_frame"].items():
        for pipeline, by_variant in by_pipeline.items():
            for variant, ms in by_variant.items():
                stages = "  ".join(f"{s} {ms[s]:8.1f}" for s in STAGES)
                print(f"{size} {pipeline:8s} {variant:20s} {stages}  total {ms['total']:8.1f}")
    for size, entries in report["ratios"].items():
        for name, value in entries.items():
            target = TARGETS.get(name.split(".")[0])
            print(f"{size} {name:45s} {value:5.2f}x" + (f"  (target {target}x)" if target else ""))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="fastvsr-tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=8, help="LR frames per timed chunk")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated, from " + ", ".join(SIZES))
    parser.add_argument("--rounds", type=int, default=2, help="alternating processes per variant")
    parser.add_argument(
        "--pipelines",
        default=",".join(PIPELINES),
        help="comma-separated; ONNX Runtime's baseline at 360p needs more than 24 GB (its Conv3d im2col)",
    )
    parser.add_argument("--out", type=Path, help="also write the report as JSON here")
    parser.add_argument("--job", help=argparse.SUPPRESS)  # internal: time one stream, print JSON
    args = parser.parse_args()
    if args.job:
        spec = json.loads(args.job)
        print(json.dumps(time_stream(Job(**spec | {"variant": Variant(**spec["variant"])}))))
        return

    def save(report: dict[str, Any]) -> None:
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2) + "\n")

    sizes = tuple(args.sizes.split(","))
    pipelines = tuple(args.pipelines.split(","))
    report = run(
        args.config, args.device, args.frames, args.repeats, args.threads, save, sizes, args.rounds, pipelines
    )
    print_report(report)


if __name__ == "__main__":
    main()
