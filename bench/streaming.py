"""The streaming pipeline, measured side by side in one run (issue 6's benchmark; nothing here is a test).

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 \
        python -m bench.streaming --out bench/results/streaming.json   # as the CPU worker image runs

- overlap: frames/s of `upscale_video` (decode, model and encode overlapped) against model-only
  frames/s (model and temporal stabilizer, as served) on the same frames already decoded in memory,
  alternating runs, on a real LR clip; also with decode and encode at the model's own CPU priority
  instead of the default lowered one;
- memory: peak RSS of a 10 s and a 60 s clip at the same resolution, each upscaled in a fresh process;
- tiles: Y-PSNR against GT of whole frames and of tiles within a memory budget, on real frames.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from PIL import Image

from evaluation.metrics import frame_metrics
from models.registry import resolve_model
from training.sources import SHARED_DATA
from worker.allocator import malloc_library
from worker.memory_budget import MIB
from worker.upscale_file import UpscaleOptions, upscale_video
from worker.upscaler import ClipUpscaler
from worker.video_io import iter_frames

CLIP = SHARED_DATA / "videos" / "dove_demo_002.mp4"  # real LR, 318x180 (odd), 32 frames
BEDROOM = SHARED_DATA / "sam2_bedroom" / "bedroom"


def overlap(runs: int) -> dict[str, Any]:
    """Model-only frames/s against end to end with the default options, and with decode/encode at the
    model's own CPU priority (`io_niceness=0`), alternating runs."""
    model = resolve_model().model
    frames = [f.image for f in iter_frames(CLIP)]
    # the same model work as served: the temporal stabilizer included
    upscaler = ClipUpscaler(model, temporal_blend=UpscaleOptions().temporal_blend)
    for _ in upscaler.upscale(frames[:9]):  # warm-up
        pass
    variants = {"default": UpscaleOptions(), "equal_priority": UpscaleOptions(io_niceness=0)}
    model_fps: list[float] = []
    e2e_fps: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(runs):
            start = time.perf_counter()
            for _ in upscaler.upscale(frames):
                pass
            model_fps.append(len(frames) / (time.perf_counter() - start))
            for name, options in variants.items():
                start = time.perf_counter()
                result = upscale_video(CLIP, Path(tmp) / "out.mp4", model, options)
                e2e_fps[name].append(result.frames / (time.perf_counter() - start))
    best_model = max(model_fps)
    return {
        "clip": CLIP.name,
        "frames": len(frames),
        "io_niceness": {"default": variants["default"].io_niceness, "equal_priority": 0},
        "model_only_fps": [round(v, 3) for v in model_fps],
        "end_to_end_fps": {name: [round(v, 3) for v in fps] for name, fps in e2e_fps.items()},
        "ratio_best": round(max(e2e_fps["default"]) / best_model, 3),
        "ratio_best_equal_priority": round(max(e2e_fps["equal_priority"]) / best_model, 3),
        "target_ratio": 0.9,
        "decode_s": round(result.decode_seconds, 2),
        "encode_s": round(result.encode_seconds, 2),
    }


def write_clip(path: Path, seconds: int, size: tuple[int, int], fps: int = 24) -> Path:
    """A real-content clip of `seconds`: the demo clip's frames resized to `size`, looped."""
    frames = [Image.fromarray(f.image).resize(size, Image.BICUBIC) for f in iter_frames(CLIP)]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "20", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        stream.time_base = Fraction(1, fps)
        for i in range(seconds * fps):
            frame = av.VideoFrame.from_ndarray(np.asarray(frames[i % len(frames)]), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def peak_rss_mib(source: Path, output: Path) -> tuple[float, float]:
    """Upscale in a fresh process; (its own peak RSS in MiB, wall seconds)."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent at fork, across exec
    code = (
        "import re, sys; from models.registry import resolve_model; "
        "from worker.upscale_file import upscale_video; "
        "upscale_video(sys.argv[1], sys.argv[2], resolve_model().model); "
        "print(re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read())[1])"
    )
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, str(source), str(output)], check=True, capture_output=True, text=True
    )
    return int(done.stdout.split()[-1]) / 1024, time.perf_counter() - start


def memory(size: tuple[int, int]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        long = write_clip(Path(tmp) / "60s.mp4", 60, size)
        short = write_clip(Path(tmp) / "10s.mp4", 10, size)
        short_rss, short_wall = peak_rss_mib(short, Path(tmp) / "short_out.mp4")
        long_rss, long_wall = peak_rss_mib(long, Path(tmp) / "long_out.mp4")
    return {
        "input": f"{size[0]}x{size[1]} at 24 fps",
        "rss_10s_mib": round(short_rss, 1),
        "rss_60s_mib": round(long_rss, 1),
        "growth": round(long_rss / short_rss - 1, 4),
        "target_growth": 0.10,
        "wall_s": {"10s": round(short_wall, 1), "60s": round(long_wall, 1)},
    }


def tiles(budget_mib: int, frames: int) -> dict[str, Any]:
    model = resolve_model().model
    names = sorted(p.name for p in (BEDROOM / "LR").glob("*.png"))[:frames]
    lr = [np.asarray(Image.open(BEDROOM / "LR" / n).convert("RGB")) for n in names]
    gt = [np.asarray(Image.open(BEDROOM / "GT" / n).convert("RGB")) for n in names]
    results: dict[str, Any] = {"frames": frames, "lr_size": f"{lr[0].shape[1]}x{lr[0].shape[0]}"}
    outputs = {}
    for label, budget in (("whole", None), ("tiled", budget_mib * MIB)):
        upscaler = ClipUpscaler(model, memory_budget_bytes=budget)
        plan = upscaler.plan(*lr[0].shape[:2])
        start = time.perf_counter()
        outputs[label] = list(upscaler.upscale(lr))
        psnr = float(np.mean([frame_metrics(o, g)[0] for o, g in zip(outputs[label], gt, strict=True)]))
        results[label] = {
            "tiles": len(plan),
            "window": f"{plan[0].cols.size}x{plan[0].rows.size}",
            "psnr_y": round(psnr, 4),
            "seconds": round(time.perf_counter() - start, 1),
        }
    results["budget_mib"] = budget_mib
    results["psnr_difference_db"] = round(abs(results["tiled"]["psnr_y"] - results["whole"]["psnr_y"]), 4)
    results["target_difference_db"] = 0.05
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/streaming.json"))
    parser.add_argument("--runs", type=int, default=4, help="alternating model-only / end-to-end runs")
    parser.add_argument("--rss-size", default="80x48", help="WxH of the 10 s and 60 s clips")
    parser.add_argument("--tile-budget-mib", type=int, default=1100)
    parser.add_argument("--tile-frames", type=int, default=8)
    parser.add_argument("--only-overlap", action="store_true", help="print the overlap part, save nothing")
    args = parser.parse_args()
    width, height = (int(v) for v in args.rss_size.split("x"))
    report = {
        "machine": f"{torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "malloc": malloc_library(),  # the CPU worker image runs on tcmalloc (preloaded)
        "overlap": overlap(args.runs),
    }
    if args.only_overlap:
        print(json.dumps(report, indent=2))
        return
    report |= {
        "tiles": tiles(args.tile_budget_mib, args.tile_frames),
        "memory": memory((width, height)),
    }
    print(json.dumps(report, indent=2))
    o, m, t = report["overlap"], report["memory"], report["tiles"]
    print(
        f"end-to-end / model-only fps: {o['ratio_best']:.3f} (target >= 0.9); "
        f"decode/encode at equal priority: {o['ratio_best_equal_priority']:.3f}"
    )
    print(
        f"peak RSS 10 s {m['rss_10s_mib']} MiB, 60 s {m['rss_60s_mib']} MiB: "
        f"growth {m['growth']:+.1%} (<= 10%)"
    )
    print(f"tiled vs whole Y-PSNR: {t['psnr_difference_db']:.4f} dB (<= 0.05)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
