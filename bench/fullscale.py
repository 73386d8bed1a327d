"""The full-scale architecture (CogVideoX1.5-5B VAE and DiT, random weights, timing only): FastVSR
(x2, f16 decoder) vs the DOVE-style baseline (x4, f8 decoder) on the same GPU, seconds per clip.

    python -m bench.fullscale --device cuda --dtype bfloat16       # 33 frames, 180x320 -> 720x1280
    python -m bench.fullscale --device cpu --tiny --frames 9        # a smoke run of this script

The paper measured 3.80 s vs 14.90 s (3.92x) on an A100. The JSON is rewritten after every run, so a
timeout still leaves what was measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDPMScheduler, CogVideoXTransformer3DModel

from models.fullscale.configs import (
    COGVIDEOX_1_5_5B_TRANSFORMER,
    COGVIDEOX_1_5_LAYOUT,
    COGVIDEOX_1_5_SCHEDULER,
    COGVIDEOX_1_5_VAE,
    TINY_TRANSFORMER,
    TINY_VAE,
)
from models.fullscale.pipeline import FullScaleVSR


def build(tiny: bool, device: torch.device, dtype: torch.dtype) -> FullScaleVSR:
    """Random weights, initialised directly on `device` (a 5B DiT initialises in seconds on a GPU)."""
    torch.manual_seed(0)
    with device:
        vae = AutoencoderKLCogVideoX(**(TINY_VAE if tiny else COGVIDEOX_1_5_VAE))
        transformer = CogVideoXTransformer3DModel(
            **({**TINY_TRANSFORMER, **COGVIDEOX_1_5_LAYOUT} if tiny else COGVIDEOX_1_5_5B_TRANSFORMER)
        )
        config = transformer.config
        prompt = torch.randn(1, config.max_text_seq_length, config.text_embed_dim)
    model = FullScaleVSR(vae, transformer, CogVideoXDPMScheduler(**COGVIDEOX_1_5_SCHEDULER), prompt)
    return model.to(device=device, dtype=dtype).eval()


def timed(model: FullScaleVSR, clip: torch.Tensor, pipeline: str) -> dict[str, float]:
    """Seconds of the whole clip and of each stage (synchronised on CUDA)."""

    def now() -> float:
        if clip.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    stages: dict[str, float] = {}
    original = {name: getattr(model, name) for name in ("encode", "denoise", "decode")}

    def wrap(name: str) -> Any:
        def run(*args: Any) -> torch.Tensor:
            start = now()
            out = original[name](*args)
            stages[name] = now() - start
            return out

        return run

    for name in original:
        setattr(model, name, wrap(name))
    try:
        start = now()
        with torch.inference_mode():
            model(clip, pipeline)
        stages["total"] = now() - start
    finally:
        for name in original:
            delattr(model, name)
    return stages


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--height", type=int, default=180, help="LR height (output is 4x)")
    parser.add_argument("--width", type=int, default=320, help="LR width")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="tiny widths: a smoke run of the script")
    parser.add_argument("--out", type=Path, default=Path("bench/results/gpu/fullscale.json"))
    args = parser.parse_args(argv)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    model = build(args.tiny, device, dtype)
    clip = torch.rand(1, 3, args.frames, args.height, args.width, device=device, dtype=dtype)
    result: dict[str, Any] = {
        "architecture": "tiny" if args.tiny else "CogVideoX1.5-5B VAE + DiT, random weights",
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "dtype": args.dtype,
        "input": [args.frames, args.height, args.width],
        "output": [args.frames, 4 * args.height, 4 * args.width],
        "paper_a100_s": {"fastvsr": 3.80, "baseline": 14.90, "ratio": 3.92},
        "runs": {"fastvsr": [], "baseline": []},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    timed(model, clip[:, :, :1], "fastvsr")  # warm-up (kernels, allocator)
    timed(model, clip[:, :, :1], "baseline")
    for _ in range(args.repeats):
        for pipeline in ("fastvsr", "baseline"):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            result["runs"][pipeline].append(timed(model, clip, pipeline))
            if device.type == "cuda":
                result[f"{pipeline}_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
            medians = {
                p: statistics.median(r["total"] for r in runs) for p, runs in result["runs"].items() if runs
            }
            result["median_s"] = medians
            if len(medians) == 2:
                result["ratio"] = round(medians["baseline"] / medians["fastvsr"], 2)
            args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result.get(k) for k in ("device", "dtype", "median_s", "ratio")}))


if __name__ == "__main__":
    main()
