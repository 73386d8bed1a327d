"""FastVSR vs the DOVE-style baseline on the same input: wall time and MACs, printed as ratios.

Both pipelines use the same configuration (modules and widths); only the interpolation factor and the
decoder head differ. Runs alternate between the two so machine noise hits both alike.

    python -m bench.fastvsr_vs_baseline                    # 180p -> 720p, 2 CPU threads
    python -m bench.fastvsr_vs_baseline --device cuda --dtype bfloat16 --frames 33
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from models.config import VSRConfig, load_named_config
from models.macs import count_macs
from models.sr_model import VSRModel
from worker.upscaler import padded_size


def time_forward(model: VSRModel, clip: torch.Tensor, dtype: torch.dtype) -> float:
    device = clip.device
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        model(clip)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return time.perf_counter() - start


def run(
    config: VSRConfig, frames: int, height: int, width: int, repeats: int, device: str, dtype: str
) -> dict:
    torch_dtype = getattr(torch, dtype)
    results: dict[str, dict] = {}
    models, clips = {}, {}
    for pipeline in ("fastvsr", "baseline"):
        cfg = config.with_pipeline(pipeline)
        h, w = padded_size(height, cfg.lr_multiple), padded_size(width, cfg.lr_multiple)
        models[pipeline] = VSRModel(cfg).to(device).eval()
        clips[pipeline] = torch.rand(1, 3, frames, h, w, device=device)
        macs = count_macs(cfg, frames, h, w)
        results[pipeline] = {"padded_lr": [h, w], "macs": macs.as_dict(), "seconds": []}
        time_forward(models[pipeline], clips[pipeline][:, :, :1], torch_dtype)  # warm-up
    for _ in range(repeats):
        for pipeline in ("fastvsr", "baseline"):
            results[pipeline]["seconds"].append(time_forward(models[pipeline], clips[pipeline], torch_dtype))
    for entry in results.values():
        entry["median_s"] = statistics.median(entry["seconds"])
    fast, base = results["fastvsr"], results["baseline"]
    return {
        "input": {"frames": frames, "height": height, "width": width, "output": [4 * height, 4 * width]},
        "device": device if device == "cpu" else torch.cuda.get_device_name(),
        "dtype": dtype,
        "threads": torch.get_num_threads(),
        "pipelines": results,
        "ratios": {
            "time": base["median_s"] / fast["median_s"],
            "macs": base["macs"]["total"] / fast["macs"]["total"],
            **{f"macs_{k}": base["macs"][k] / fast["macs"][k] for k in ("encoder", "denoiser", "decoder")},
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="fastvsr-tiny")
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--height", type=int, default=180)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report = run(
        load_named_config(args.config),
        args.frames,
        args.height,
        args.width,
        args.repeats,
        args.device,
        args.dtype,
    )
    for name, entry in report["pipelines"].items():
        print(
            f"{name:9s} LR {entry['padded_lr'][0]}x{entry['padded_lr'][1]}: "
            f"median {entry['median_s']:.2f} s, "
            f"{entry['macs']['total'] / 1e12:.3f} TMACs "
            f"(enc {entry['macs']['encoder'] / 1e9:.0f} G, dit {entry['macs']['denoiser'] / 1e9:.1f} G, "
            f"dec {entry['macs']['decoder'] / 1e9:.0f} G)"
        )
    ratios = report["ratios"]
    print(
        f"baseline / fastvsr: time {ratios['time']:.2f}x, MACs {ratios['macs']:.2f}x "
        f"(encoder {ratios['macs_encoder']:.2f}x, denoiser {ratios['macs_denoiser']:.2f}x, "
        f"decoder {ratios['macs_decoder']:.2f}x)  [paper: 3.92x time, 4.02x MACs]"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
