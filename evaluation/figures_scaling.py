"""MACs and CPU inference time against frames and resolution, FastVSR vs Baseline (the seed's Fig. 1).

MACs are counted on the meta device (free at any size), so they use 720p-class sizes. Time is real
CPU forward time of the two pipelines over a smaller sweep: the median of `repeats` runs per point,
FastVSR and Baseline interleaved so that load from other work hits both alike. Low-res sizes are padded
up to the pipelines' multiple, as `vsr upscale` does; the numbers are for the padded sizes.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from evaluation.figures_common import SCALE, FigureError, save_figure, write_json
from models.config import VSRConfig, load_named_config
from models.macs import count_macs
from models.sr_model import VSRModel

Size = tuple[int, int]  # (height, width) of the low-res clip
FIGSIZE = (12.0, 9.0)  # inches, at DPI -> 1200 x 900 px
DPI = 100
MAC_FRAMES_AT = 33  # frames of the MACs-vs-resolution panel
MAC_SIZES_AT: Size = (180, 320)  # low-res size of the MACs-vs-frames panel: 720p output
SEED = 0


@dataclass(frozen=True)
class Sweep:
    """What is counted and timed: frame counts at one size, and sizes at one frame count.

    MACs use the `mac_*` points (720p-class, free to count); time uses the others (real forwards).
    """

    mac_frames: tuple[int, ...] = (1, 9, 17, 25, 33)  # 1 + 8k: fits temporal compression 1, 4 and 8
    mac_sizes: tuple[Size, ...] = ((45, 80), (90, 160), (135, 240), (180, 320))  # x4: 180p .. 720p
    frames: tuple[int, ...] = (1, 3, 5)
    frames_size: Size = (48, 80)
    sizes: tuple[Size, ...] = ((24, 40), (48, 80), (72, 128))
    sizes_frames: int = 3
    repeats: int = 3


QUICK = Sweep(
    mac_frames=(1, 33),
    mac_sizes=((45, 80), (180, 320)),
    frames=(1, 2),
    frames_size=(16, 24),
    sizes=((16, 24), (24, 32)),
    sizes_frames=1,
    repeats=1,
)


@dataclass(frozen=True)
class ScalingOptions:
    out: Path
    sweep: Sweep = Sweep()
    fastvsr_config: str = "fastvsr-tiny"
    baseline_config: str = "baseline-tiny"


def parse_size(text: str) -> Size:
    """'HxW' -> (H, W)."""
    try:
        h, w = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise FigureError("bad_sweep", f"size {text!r} is not HxW (two integers)") from None
    if h < 1 or w < 1:
        raise FigureError("bad_sweep", f"size {text} must be positive")
    return h, w


def check_sweep(sweep: Sweep, configs: Sequence[VSRConfig]) -> None:
    """Every frame count must be a whole clip of both pipelines: T = 1 + k * tc."""
    if sweep.repeats < 1:
        raise FigureError("bad_sweep", f"--repeats must be >= 1, got {sweep.repeats}")
    tc = math.lcm(*(c.vae.temporal_compression for c in configs))
    for t in (*sweep.mac_frames, *sweep.frames, sweep.sizes_frames):
        if t < 1 or (t - 1) % tc:
            raise FigureError("bad_sweep", f"{t} frames does not fit the temporal layout T = 1 + k*{tc}")


def padded(size: Size, multiple: int) -> Size:
    return (-(-size[0] // multiple) * multiple, -(-size[1] // multiple) * multiple)


@cache
def gmacs(config: VSRConfig, frames: int, size: Size) -> float:
    return count_macs(config, frames, *size).total / 1e9


def median_seconds(models: dict[str, VSRModel], frames: int, size: Size, repeats: int) -> dict[str, float]:
    """Median forward wall seconds per model on one random clip, runs interleaved across models; also
    the fastest run as `<name>_min` and the median process CPU seconds (all threads) as `<name>_process`."""
    clip = torch.rand(1, 3, frames, *size, generator=torch.Generator().manual_seed(SEED))
    wall: dict[str, list[float]] = {name: [] for name in models}
    cpu: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for _ in range(repeats):
            for name, model in models.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                model(clip)
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    medians = {name: statistics.median(seconds) for name, seconds in wall.items()}
    fastest = {f"{name}_min": min(seconds) for name, seconds in wall.items()}
    return medians | fastest | {f"{name}_process": statistics.median(s) for name, s in cpu.items()}


def point(x: int, frames: int, size: Size, values: dict[str, float]) -> dict[str, Any]:
    """One plotted point: `fastvsr` and `baseline` values (plus any extras) and their ratio."""
    return {
        "x": x,
        "frames": frames,
        "lr_size": list(size),
        "output_size": [size[0] * SCALE, size[1] * SCALE],
        **values,
        "ratio": values["baseline"] / values["fastvsr"],
    }


def mac_points(configs: dict[str, VSRConfig], sweep: Sweep, multiple: int) -> dict[str, list[dict[str, Any]]]:
    at = padded(MAC_SIZES_AT, multiple)
    by_frames = [point(t, t, at, {k: gmacs(c, t, at) for k, c in configs.items()}) for t in sweep.mac_frames]
    by_size = []
    for nominal in sweep.mac_sizes:
        size = padded(nominal, multiple)
        values = {k: gmacs(c, MAC_FRAMES_AT, size) for k, c in configs.items()}
        by_size.append(point(size[0] * size[1] * SCALE**2, MAC_FRAMES_AT, size, values))
    return {"vs_frames": by_frames, "vs_size": by_size}


def time_points(
    configs: dict[str, VSRConfig], sweep: Sweep, multiple: int
) -> dict[str, list[dict[str, Any]]]:
    torch.manual_seed(SEED)  # untrained weights: forward time does not depend on their values
    models = {k: VSRModel(c).eval() for k, c in configs.items()}
    median_seconds(models, 1, padded(sweep.frames_size, multiple), 1)  # warm-up
    cache: dict[tuple[int, Size], dict[str, float]] = {}

    def timed(frames: int, size: Size) -> dict[str, float]:
        if (frames, size) not in cache:
            cache[frames, size] = median_seconds(models, frames, size, sweep.repeats)
        return cache[frames, size]

    at = padded(sweep.frames_size, multiple)
    by_frames = [point(t, t, at, timed(t, at)) for t in sweep.frames]
    sizes = [padded(s, multiple) for s in sweep.sizes]
    t = sweep.sizes_frames
    by_size = [point(s[0] * s[1] * SCALE**2, t, s, timed(t, s)) for s in sizes]
    return {"vs_frames": by_frames, "vs_size": by_size}


def plot_panel(ax: Axes, points: list[dict[str, Any]], ylabel: str, vs: str) -> None:
    """Both pipelines against frames or output size, with the Baseline/FastVSR ratio at each point."""
    xs = [p["x"] for p in points]
    for key, label, style in (
        ("baseline", "Baseline (x4 interp + f8 decoder)", "s-"),
        ("fastvsr", "FastVSR (x2 interp + f16 decoder)", "o-"),
    ):
        ax.plot(xs, [p[key] for p in points], style, label=label)
    for p in points:
        ax.annotate(
            f"x{p['ratio']:.2f}",
            (p["x"], p["baseline"]),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=8,
        )
    if vs == "frames":
        size = points[0]["output_size"]
        ax.set_xlabel(f"frames (output {size[1]}x{size[0]})")
        ax.set_xticks(xs)
    else:
        frames = points[0]["frames"]
        ax.set_xlabel(f"output size ({frames} frame{'s' if frames != 1 else ''})")
        ax.set_xticks(xs, [f"{p['output_size'][1]}x{p['output_size'][0]}" for p in points], fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0, top=max(max(p["baseline"], p["fastvsr"]) for p in points) * 1.15)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")


def scaling_figure(data: dict[str, Any]) -> Figure:
    fig = Figure(figsize=FIGSIZE, dpi=DPI, facecolor="white", layout="constrained")
    axes = fig.subplots(2, 2)
    plot_panel(axes[0, 0], data["macs"]["vs_frames"], "GMACs per clip", "frames")
    plot_panel(axes[0, 1], data["macs"]["vs_size"], "GMACs per clip", "size")
    plot_panel(axes[1, 0], data["cpu_seconds"]["vs_frames"], "seconds per clip (CPU, wall)", "frames")
    plot_panel(axes[1, 1], data["cpu_seconds"]["vs_size"], "seconds per clip (CPU, wall)", "size")
    axes[0, 0].set_title("MACs vs frames (meta-device count)", fontsize=10)
    axes[0, 1].set_title("MACs vs resolution (meta-device count)", fontsize=10)
    runs = f"median of {data['repeats']} run{'s' if data['repeats'] != 1 else ''}"
    axes[1, 0].set_title(f"CPU wall time vs frames ({runs})", fontsize=10)
    axes[1, 1].set_title(f"CPU wall time vs resolution ({runs})", fontsize=10)
    c = data["configs"]
    fig.suptitle(
        f"FastVSR ({c['fastvsr']}) vs Baseline ({c['baseline']}): MACs and CPU forward time per clip; "
        f"x = Baseline / FastVSR\nuntrained weights (seed {SEED}; cost does not depend on them); "
        f"CPU time: {data['threads']} torch thread(s), fp32 eager, whole clip in one forward,\n"
        f"machine load average {data['load_average_1min']:.1f} at the start",
        fontsize=11,
    )
    return fig


def make_scaling_figure(options: ScalingOptions) -> dict[str, Any]:
    """Count, time, plot; write the PNG and the same numbers as JSON next to it. Returns the numbers."""
    configs = {
        "fastvsr": load_named_config(options.fastvsr_config),
        "baseline": load_named_config(options.baseline_config),
    }
    for kind, config in configs.items():
        if config.pipeline != kind:
            raise FigureError("bad_config", f"the {kind} config is a {config.pipeline!r} pipeline")
    check_sweep(options.sweep, list(configs.values()))
    multiple = math.lcm(*(c.lr_multiple for c in configs.values()))
    data: dict[str, Any] = {
        "configs": {"fastvsr": options.fastvsr_config, "baseline": options.baseline_config},
        "weights": f"untrained initialisation (seed {SEED})",
        "threads": torch.get_num_threads(),
        "repeats": options.sweep.repeats,
        "lr_multiple": multiple,
        "macs_unit": "GMACs per clip",
        "time_unit": "wall seconds per clip on the CPU (median; *_min: fastest run); "
        "*_process: process CPU seconds, all threads (median)",
        "load_average_1min": os.getloadavg()[0],  # other work on the machine skews the times
        "macs": mac_points(configs, options.sweep, multiple),
        "cpu_seconds": time_points(configs, options.sweep, multiple),
    }
    save_figure(scaling_figure(data), options.out)
    write_json(data, options.out.with_suffix(".json"))
    return data
