"""`vsr figures scaling | profile | crops`: the seed's figures as PNGs (evaluation/figures_*.py).

Importing this module is cheap (no torch, no matplotlib): the CLI imports it to build its parser.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

FIGURES_DIR = Path("figures")


def add_common(parser: argparse.ArgumentParser, default_out: str) -> None:
    parser.add_argument("--out", type=Path, help=f"output PNG (default: {FIGURES_DIR / default_out})")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")


def add_video_inputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", type=Path, help="low-res video file, or a folder of PNG frames")
    parser.add_argument("--fastvsr-model", help="FastVSR model directory (default: fastvsr-tiny)")
    parser.add_argument("--baseline-model", help="Baseline model directory (default: baseline-tiny)")
    parser.add_argument("--gt", type=Path, help="ground truth (4x) video or PNG folder: an extra column")


def add_figures_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The `figures` command and its three figures."""
    figures = commands.add_parser("figures", help="draw the paper's figures as PNGs")
    kinds = figures.add_subparsers(dest="figure", required=True, parser_class=type(figures))

    scaling = kinds.add_parser("scaling", help="MACs and CPU time vs frames and resolution (Fig. 1)")
    scaling.add_argument("--frames", help="timed frame counts, comma-separated (default 1,3,5)")
    scaling.add_argument("--frames-size", help="low-res HxW for the frames sweep (default 48x80)")
    scaling.add_argument("--sizes", help="timed low-res sizes, HxW comma-separated (default 24x40..96x160)")
    scaling.add_argument("--sizes-frames", type=int, help="frames for the size sweep (default 3)")
    scaling.add_argument("--repeats", type=int, help="timed runs per point; the median is kept (default 3)")
    scaling.add_argument("--quick", action="store_true", help="a tiny timed sweep (seconds), for tests")
    scaling.add_argument("--fastvsr-config", default="fastvsr-tiny", help="named FastVSR config")
    scaling.add_argument("--baseline-config", default="baseline-tiny", help="named Baseline config")
    add_common(scaling, "scaling.png")

    profile = kinds.add_parser("profile", help="temporal profile of one output row (Fig. 2)")
    add_video_inputs(profile)
    profile.add_argument("--row", type=int, help="output pixel row (default: the middle row)")
    profile.add_argument("--frames", type=int, help="use at most N frames")
    profile.add_argument("--stretch", type=int, help="pixel rows per frame (default: >= 128 rows in all)")
    add_common(profile, "profile_<video>.png")

    crops = kinds.add_parser("crops", help="before/after crops of chosen regions of one frame")
    add_video_inputs(crops)
    crops.add_argument("--region", action="append", default=[], help="x,y,w,h in output pixels (repeatable)")
    crops.add_argument("--frame", type=int, default=0, help="frame index K (default 0)")
    crops.add_argument("--zoom", type=int, help="crop enlargement (default: about 256 px per crop)")
    add_common(crops, "crops_<video>.png")


def run_figures(args: argparse.Namespace) -> int:
    """Run one figure; input errors exit 1 with `vsr: error: CODE: message`."""
    from evaluation.figures_common import FigureError
    from models.config import ConfigError
    from models.weights import WeightsError
    from vsr.cli import fail
    from worker.video_io import VideoError

    if args.threads is not None:
        if args.threads < 1:
            fail("bad_option", f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    try:
        {"scaling": run_scaling, "profile": run_profile, "crops": run_crops}[args.figure](args)
    except (FigureError, VideoError) as exc:
        fail(exc.code, str(exc))
    except (WeightsError, ConfigError) as exc:
        fail("bad_model", str(exc))
    return 0


def output_path(args: argparse.Namespace, name: str) -> Path:
    return args.out if args.out is not None else FIGURES_DIR / name


def check_input(path: Path) -> None:
    from evaluation.figures_common import FigureError

    if not path.exists():
        raise FigureError("not_found", f"input not found: {path}")


def run_scaling(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from evaluation.figures_scaling import QUICK, ScalingOptions, Sweep, make_scaling_figure, parse_size

    given: dict[str, Any] = {
        "frames": tuple(int_list(args.frames)) if args.frames else None,
        "frames_size": parse_size(args.frames_size) if args.frames_size else None,
        "sizes": tuple(parse_size(s) for s in args.sizes.split(",")) if args.sizes else None,
        "sizes_frames": args.sizes_frames,
        "repeats": args.repeats,
    }
    sweep = replace(QUICK if args.quick else Sweep(), **{k: v for k, v in given.items() if v is not None})
    out = output_path(args, "scaling.png")
    data = make_scaling_figure(ScalingOptions(out, sweep, args.fastvsr_config, args.baseline_config))
    for quantity in ("macs", "cpu_seconds"):
        for vs, points in data[quantity].items():
            ratios = ", ".join(f"x{p['ratio']:.2f}" for p in points)
            print(f"{quantity} {vs}: Baseline/FastVSR {ratios}")
    print(f"wrote {out} and {out.with_suffix('.json')}")


def int_list(text: str) -> list[int]:
    from evaluation.figures_common import FigureError

    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise FigureError("bad_sweep", f"{text!r} is not a comma-separated list of integers") from None


def run_profile(args: argparse.Namespace) -> None:
    from evaluation.figures_profile import ProfileOptions, make_profile_figure

    check_input(args.video)
    out = output_path(args, f"profile_{args.video.stem}.png")
    options = ProfileOptions(
        args.video, out, args.row, args.frames, args.stretch, args.fastvsr_model, args.baseline_model, args.gt
    )
    result = make_profile_figure(options, print_model)
    print(f"wrote {out} ({result.size[0]}x{result.size[1]}): row {result.row}, {result.frames} frames")


def run_crops(args: argparse.Namespace) -> None:
    from evaluation.figures_crops import CropOptions, make_crops_figure

    check_input(args.video)
    out = output_path(args, f"crops_{args.video.stem}.png")
    options = CropOptions(
        args.video,
        out,
        tuple(args.region),
        args.frame,
        args.zoom,
        args.fastvsr_model,
        args.baseline_model,
        args.gt,
    )
    result = make_crops_figure(options, print_model)
    print(f"wrote {out} ({result.size[0]}x{result.size[1]}): {len(result.regions)} regions x{result.zoom}")


def print_model(method: str, description: str) -> None:
    print(f"{method} model: {description}", file=sys.stderr)
