"""Quality and speed of trained tiny models against bicubic, side by side in one run.

    python -m bench.model_quality --model fastvsr-tiny=models/weights/fastvsr-tiny \\
        --model plain=/tmp/plain --out bench/results/model_quality.json

Sets: `sam2_bedroom` as published (bicubic x4, BI) and the same GT degraded by the real-world mix
(blur, noise, H.264; fixed seed), so each variant is seen on both degradations. Speed: frames/s of the
model stages for 180p -> 720p (the LR demo frames, 320x180), after a warm-up pass, on this machine's CPU.
The targets of the model card are printed as pass/fail lines; nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from evaluation.runner import EvalSettings, bicubic_method, evaluate_sequence, model_method, summarize
from evaluation.sequences import find_sequences
from models.weights import load_model
from training.degrade import degrade
from training.sources import SHARED_DATA
from worker.temporal_stabilizer import DEFAULT_TEMPORAL_BLEND
from worker.upscaler import ClipUpscaler, UpscaleStats

BEDROOM = SHARED_DATA / "sam2_bedroom"
SPEED_FRAMES = SHARED_DATA / "basicvsrpp_demo" / "demo_000" / "LR"
REALWORLD_SEED = 20261202


def realworld_bedroom(root: Path) -> Path:
    """`sam2_bedroom` GT with LR made by the real-world mix (one draw per 3-frame group, fixed seed)."""
    out = root / "sam2_bedroom_realworld" / "bedroom"
    (out / "GT").mkdir(parents=True, exist_ok=True)
    (out / "LR").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(REALWORLD_SEED)
    paths = sorted((BEDROOM / "bedroom" / "GT").glob("*.png"))
    for start in range(0, len(paths), 8):
        group = paths[start : start + 8]
        gt = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in group])
        h, w = (gt.shape[1] // 8) * 8, (gt.shape[2] // 8) * 8  # even LR for H.264
        gt = gt[:, :h, :w]
        lr = degrade(gt, "realworld", rng)
        for path, g, low in zip(group, gt, lr, strict=True):
            Image.fromarray(g).save(out / "GT" / path.name)
            Image.fromarray(low).save(out / "LR" / path.name)
    return out.parent


def evaluate(models: dict[str, Path], root: Path, warp_error: bool) -> dict[str, Any]:
    """Bicubic, then each model as served (with the temporal stabilizer) and without the stabilizer."""
    settings = EvalSettings(warp_error=warp_error)
    methods = [bicubic_method()]
    for name, path in models.items():
        model = load_model(path)
        methods.append(model_method(name, model, str(path), temporal_blend=DEFAULT_TEMPORAL_BLEND))
        methods.append(model_method(f"{name} (no stabilizer)", model, str(path), temporal_blend=0.0))
    clips = [evaluate_sequence(source, methods, settings)[0] for source in find_sequences(root)]
    return summarize(clips, methods, settings)


def speed(path: Path, frames: int = 17) -> dict[str, float]:
    """Frames/s for 320x180 -> 1280x720, wall clock of the second pass (the first warms caches), side by
    side: the model alone, and as served (the stabilizer's motion estimated on a thread beside the model,
    then the blend). `stabilize_ms_per_frame`: what the served run spent waiting for motion and blending."""
    lr = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(SPEED_FRAMES.glob("*.png"))[:frames]]
    model = load_model(path)
    result: dict[str, float] = {"frames": len(lr)}
    for label, blend in (("model", 0.0), ("served", DEFAULT_TEMPORAL_BLEND)):
        upscaler = ClipUpscaler(model, temporal_blend=blend)
        for _ in range(2):
            stats = UpscaleStats()
            start = time.perf_counter()
            count = sum(1 for _ in upscaler.upscale(lr, stats))
            result[f"{label}_fps"] = count / (time.perf_counter() - start)
    # stats and count of the last run: the served second pass
    result["served_stabilize_ms_per_frame"] = 1000 * stats.seconds["stabilize"] / count
    result["served_vs_model"] = result["served_fps"] / result["model_fps"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, help="NAME=DIR (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/model_quality.json"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/vsr-model-quality"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = {name: Path(path) for name, _, path in (m.partition("=") for m in args.model)}
    results: dict[str, Any] = {"threads": args.threads, "sets": {}, "speed_180p_to_720p": {}}
    for label, root, warp in (("bi", BEDROOM, True), ("realworld", realworld_bedroom(args.work), True)):
        report = evaluate(models, root, warp)
        results["sets"][f"sam2_bedroom_{label}"] = report["mean"]
        print(f"sam2_bedroom ({label}):")
        for name, row in report["mean"].items():
            ewarp, own = ("-" if v is None else f"{v:.3f}" for v in (row["ewarp"], row["ewarp_self_flow"]))
            print(
                f"  {name:24s} {row['psnr_y']:.2f} dB  SSIM {row['ssim_y']:.4f}  "
                f"E_warp {ewarp} (self flow {own})"
            )
    for name, path in models.items():
        results["speed_180p_to_720p"][name] = speed(path)
        print(f"speed {name}: {results['speed_180p_to_720p'][name]}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
