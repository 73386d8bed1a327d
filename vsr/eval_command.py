"""`vsr eval`: PSNR-Y, SSIM-Y, E_warp and speed of MATLAB bicubic and models on GT/LR sequences.

Importing this module is cheap (no torch, numpy or OpenCV): `vsr.cli` imports it to build its parser.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evaluation.runner import Method
    from evaluation.sequences import SequenceSource

DEFAULT_CONFIG = "fastvsr-tiny"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _crop(text: str) -> tuple[int, int, int, int]:
    parts = text.split(",")
    if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected x,y,w,h (four non-negative integers), got {text!r}")
    x, y, w, h = (int(p) for p in parts)
    return x, y, w, h


def add_eval_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ev = commands.add_parser("eval", help="PSNR-Y / SSIM-Y / E_warp of bicubic and models on GT/LR sequences")
    ev.add_argument(
        "root", nargs="?", help="ROOT/<seq>/{GT,LR}/*.png (Vid4, UDM10, SPMCS, REDS) or one sequence"
    )
    ev.add_argument("--gt-video", help="GT video (with --lr-video, instead of ROOT)")
    ev.add_argument("--lr-video", help="LR video, 1/4 the size of --gt-video")
    ev.add_argument("--model", action="append", default=[], help="model directory (repeatable)")
    ev.add_argument(
        "--config", action="append", default=[], help=f"named model (repeatable); default {DEFAULT_CONFIG}"
    )
    ev.add_argument("--out", required=True, help="directory for report.json, report.md and crops/")
    ev.add_argument("--frames", type=_positive, help="evaluate at most N frames per sequence")
    ev.add_argument("--crop-border", type=int, default=0, help="pixels ignored on each side (default 0)")
    ev.add_argument("--crop", type=_crop, help="visual crop x,y,w,h in GT pixels (default: centre 256x256)")
    ev.add_argument("--chunk-frames", type=_positive, default=8, help="frames per model chunk")
    ev.add_argument("--device", default="cpu", help="cpu or cuda")
    ev.add_argument("--threads", type=_positive, help="torch/OpenCV threads")
    ev.add_argument(
        "--temporal-blend",
        type=float,
        help="temporal stabilizer on the model output, as the service runs it (0: off; default 0.4)",
    )
    ev.add_argument(
        "--no-warp-error", action="store_true", help="skip E_warp (optical flow is the slow part)"
    )


def _sources(args: argparse.Namespace) -> list[SequenceSource]:
    from evaluation.sequences import EvalError, find_sequences, video_sequence

    videos = args.gt_video is not None or args.lr_video is not None
    if videos == (args.root is not None):
        raise EvalError("bad_option", "give either ROOT or both --gt-video and --lr-video")
    if videos and (args.gt_video is None or args.lr_video is None):
        raise EvalError("bad_option", "--gt-video and --lr-video go together")
    if videos:
        return [video_sequence(args.gt_video, args.lr_video, args.frames)]
    return find_sequences(args.root, args.frames)


def _methods(args: argparse.Namespace) -> list[Method]:
    from evaluation.runner import bicubic_method, model_method
    from evaluation.sequences import EvalError
    from models.registry import resolve_model

    requests = [(Path(d).name or str(d), d, DEFAULT_CONFIG) for d in args.model]
    configs = args.config or ([] if args.model else [DEFAULT_CONFIG])
    requests += [(name, None, name) for name in configs]
    if args.temporal_blend is not None and not 0.0 <= args.temporal_blend < 1.0:
        raise EvalError("bad_option", f"--temporal-blend must be in [0, 1), got {args.temporal_blend}")
    methods, seen = [bicubic_method()], set()
    for label, model_dir, config in requests:
        loaded = resolve_model(model_dir, config)
        label = label if loaded.trained else f"{label} (untrained)"
        while label in seen:
            label += "'"
        seen.add(label)
        print(f"{label}: {loaded.description}", file=sys.stderr)
        methods.append(
            model_method(
                label,
                loaded.model,
                loaded.description,
                chunk_frames=args.chunk_frames,
                device=args.device,
                **({} if args.temporal_blend is None else {"temporal_blend": args.temporal_blend}),
            )
        )
    return methods


def _evaluate(args: argparse.Namespace) -> str:
    import torch

    from evaluation.report import markdown_report, save_crops, write_report
    from evaluation.runner import EvalSettings, check_settings, evaluate_sequence, summarize
    from evaluation.sequences import EvalError

    sources = _sources(args)
    settings = EvalSettings(crop_border=args.crop_border, warp_error=not args.no_warp_error, crop=args.crop)
    for source in sources:
        check_settings(source, settings)  # a bad crop or border fails before any model runs
    if args.threads is not None:
        import cv2

        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    out_dir = Path(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EvalError("bad_output", f"cannot create output directory {out_dir}: {exc}") from exc
    methods = _methods(args)
    clips = []
    for source in sources:
        print(f"evaluating {source.name} ...", file=sys.stderr)
        clip, crops = evaluate_sequence(source, methods, settings)
        clip["crop_image"] = str(save_crops(crops, out_dir, source.name).relative_to(out_dir))
        clips.append(clip)
    report = summarize(clips, methods, settings)
    write_report(report, out_dir)
    return markdown_report(report)


def run_eval(args: argparse.Namespace) -> int:
    """Run `vsr eval`; bad input exits 1 with `vsr: error: CODE: message`."""
    from evaluation.sequences import EvalError
    from models.config import ConfigError
    from models.weights import WeightsError
    from vsr.cli import fail

    try:
        table = _evaluate(args)
    except EvalError as exc:
        fail(exc.code, str(exc))
    except (WeightsError, ConfigError) as exc:
        fail("bad_model", str(exc))
    except KeyboardInterrupt:
        fail("interrupted", "stopped by the user")
    print(table)
    return 0
