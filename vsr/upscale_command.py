"""`vsr upscale`: upscale one video file on this machine (tqdm bar: done/total, fps, ETA; summary or JSON)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from engines.pipeline import load_engines
from engines.settings import EngineSettings, ShapeRange
from models.registry import resolve_model
from worker.upscale_file import UpscaleOptions, UpscaleResult, upscale_video
from worker.upscaler import DEFAULT_CHUNK_FRAMES

# done/total, frames/s (never tqdm's inverted s/frame), elapsed and time left.
BAR_FORMAT = (
    "{l_bar}{bar}| {n_fmt}/{total_fmt} [{rate_noinv_fmt}, elapsed {elapsed}, ETA {remaining}{postfix}]"
)


def run_upscale(args: argparse.Namespace) -> UpscaleResult:
    options = UpscaleOptions(
        scale=args.scale,
        codec=args.codec,
        crf=args.crf,
        preset=args.preset,
        chunk_frames=DEFAULT_CHUNK_FRAMES if args.chunk_frames is None else args.chunk_frames,
        copy_audio=not args.no_audio,
        memory_budget_bytes=args.memory_budget_mb and args.memory_budget_mb << 20,
        device=args.device,
        **({} if args.temporal_blend is None else {"temporal_blend": args.temporal_blend}),
    )
    options.validate(Path(args.output))  # fail on bad options before loading anything
    loaded = resolve_model(args.model, args.config)
    print(f"model: {loaded.description}", file=sys.stderr)
    engines = load_engines(loaded.model, engine_settings(args.backend, args.precision, options), args.device)
    print(f"engines: {engines.description}", file=sys.stderr)
    with tqdm(
        unit=" frames",
        bar_format=BAR_FORMAT,
        smoothing=0,  # the run's average rate, as the job record reports it
        disable=args.no_progress,
        file=sys.stderr,
        dynamic_ncols=True,
    ) as bar:

        def progress(done: int, expected: int | None) -> None:
            if expected and bar.total != max(expected, done):
                bar.total = max(expected, done)
            bar.update(done - bar.n)

        try:
            return upscale_video(args.input, args.output, engines, options, progress)
        finally:
            engines.close()


def engine_settings(backend: str, precision: str, options: UpscaleOptions) -> EngineSettings:
    """Settings for a local run: the profile's frame range covers this run's first chunk."""
    first_chunk = options.chunk_frames + 8  # + up to one temporal-compression group of padding
    frames = ShapeRange(min=1, opt=options.chunk_frames + 1, max=max(17, first_chunk))
    return EngineSettings(backend=backend, precision=precision, frames=frames)  # type: ignore[arg-type]


def summary(result: UpscaleResult, wall: float) -> dict[str, object]:
    return {
        "output": str(result.output),
        "width": result.width,
        "height": result.height,
        "frames": result.frames,
        "fps": float(result.fps),
        "seconds": {**{k: round(v, 3) for k, v in result.stats.seconds.items()}, "wall": round(wall, 3)},
        "macs": result.stats.macs,
    }


def print_summary(info: dict[str, object]) -> None:
    seconds: dict[str, float] = info["seconds"]  # type: ignore[assignment]
    macs: dict[str, int] = info["macs"]  # type: ignore[assignment]
    frames = int(info["frames"])  # type: ignore[call-overload]
    print(
        f"wrote {info['output']}: {info['width']}x{info['height']}, {frames} frames at {info['fps']:.3f} fps"
    )
    print("stage seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in seconds.items()))
    print(f"throughput: {frames / max(seconds['wall'], 1e-9):.2f} frames/s")
    print(
        "MACs: "
        + ", ".join(f"{k} {v / 1e9:.1f} G" for k, v in macs.items())
        + f" ({macs['total'] / max(frames, 1) / 1e9:.2f} GMACs/frame)"
    )
