"""The `vsr` command. `vsr upscale INPUT OUTPUT` upscales a video file 4x on this machine."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from tqdm import tqdm

from models.config import ConfigError
from models.registry import DEFAULT_MODEL, resolve_model
from models.weights import WeightsError
from worker.upscale_file import UpscaleOptions, UpscaleResult, upscale_video
from worker.upscaler import DEFAULT_CHUNK_FRAMES
from worker.video_io import ENCODERS, VideoError

EXIT_ERROR = 1
EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports usage errors on one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"vsr: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="vsr", description="FastVSR 4x video super-resolution")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    up = commands.add_parser("upscale", help="upscale a video file 4x")
    up.add_argument("input", help="input video file")
    up.add_argument("output", help="output video file (.mp4, .mkv or .mov)")
    up.add_argument("--model", help="model directory (config.json + model.safetensors + sha256sums.txt)")
    up.add_argument("--config", default=DEFAULT_MODEL, help="named model when --model is not given")
    up.add_argument("--scale", type=int, default=4, help="upscaling factor (only 4 is supported)")
    up.add_argument("--codec", choices=sorted(ENCODERS), default="h264")
    up.add_argument("--crf", type=int, default=18, help="constant rate factor, 0..51 (lower is better)")
    up.add_argument("--preset", default="medium", help="x264/x265 preset")
    up.add_argument(
        "--chunk-frames", type=int, default=DEFAULT_CHUNK_FRAMES, help="frames per model chunk (memory)"
    )
    up.add_argument("--device", default="cpu", help="cpu or cuda")
    up.add_argument("--no-audio", action="store_true", help="do not copy audio streams")
    up.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    up.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def fail(code: str, message: str) -> NoReturn:
    print(f"vsr: error: {code}: {message}", file=sys.stderr)
    raise SystemExit(EXIT_ERROR)


def run_upscale(args: argparse.Namespace) -> UpscaleResult:
    options = UpscaleOptions(
        scale=args.scale,
        codec=args.codec,
        crf=args.crf,
        preset=args.preset,
        chunk_frames=args.chunk_frames,
        copy_audio=not args.no_audio,
        device=args.device,
    )
    options.validate(Path(args.output))  # fail on bad options before loading anything
    loaded = resolve_model(args.model, args.config)
    print(f"model: {loaded.description}", file=sys.stderr)
    with tqdm(unit="frame", disable=args.no_progress, file=sys.stderr, dynamic_ncols=True) as bar:

        def progress(done: int, expected: int | None) -> None:
            if expected and bar.total != max(expected, done):
                bar.total = max(expected, done)
            bar.update(done - bar.n)

        return upscale_video(args.input, args.output, loaded.model, options, progress)


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


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        result = run_upscale(args)
    except VideoError as exc:
        fail(exc.code, str(exc))
    except (WeightsError, ConfigError) as exc:
        fail("bad_model", str(exc))
    except KeyboardInterrupt:
        fail("interrupted", "stopped by the user; no output was written")
    info = summary(result, time.perf_counter() - start)
    if args.json:
        print(json.dumps(info))
    else:
        print_summary(info)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
