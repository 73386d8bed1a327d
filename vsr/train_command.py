"""`vsr train`: reproduce a shipped model on this machine's CPUs (the staged recipe in training.recipe).

Writes a model directory (config.json, model.safetensors, sha256sums.txt) plus training_log.jsonl and
training_summary.json next to it. Torch-free at import: the CLI builds its parser from here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

VARIANTS = {
    "extended": {"bicubic_skip": True, "lr_conditioning": True},  # LR-conditioned decoder + bicubic skip
    "plain": {"bicubic_skip": False, "lr_conditioning": False},  # the paper's pipeline alone
}
DEGRADATIONS = ("bi", "realworld", "mixed")
SUMMARY_FILE = "training_summary.json"
LOG_FILE = "training_log.jsonl"


def add_train_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    train = commands.add_parser("train", help="train a tiny model on this machine's CPUs")
    train.add_argument("--out", required=True, help="model directory to write")
    train.add_argument("--config", default="fastvsr-tiny", help="named architecture to train")
    train.add_argument("--variant", choices=sorted(VARIANTS), default="extended")
    train.add_argument("--degradation", choices=DEGRADATIONS, default="bi", help="LR synthesis")
    train.add_argument(
        "--photos",
        choices=("skimage", "all"),
        default="all",
        help="photo set: scikit-image's, or also Debian's wallpaper photos (fetched with apt-get if needed)",
    )
    train.add_argument("--steps-scale", type=float, default=1.0, help="multiply every stage's steps")
    train.add_argument(
        "--temporal-weight",
        type=float,
        default=None,
        help="weight of the warped temporal term (error flicker along the HR motion) in the last "
        "fine-tune stage (default: the recipe's; 0 skips that stage)",
    )
    train.add_argument(
        "--lr-levels",
        type=int,
        default=None,
        help="extended variant: decoder levels that see the LR clip (default: the config's)",
    )
    train.add_argument("--no-ablation", action="store_true", help="skip the unguided decoder run")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    train.add_argument("--quiet", action="store_true", help="no per-step log lines on stderr")


def run_train(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from models.config import load_named_config
    from models.weights import save_model
    from training.recipe import TrainSettings, train
    from training.sources import photo_set

    if args.steps_scale <= 0:
        raise SystemExit("vsr: error: bad_steps: --steps-scale must be > 0 (see --help)")
    if args.temporal_weight is not None and args.temporal_weight < 0:
        raise SystemExit("vsr: error: bad_option: --temporal-weight must be >= 0 (see --help)")
    torch.set_num_threads(args.threads)
    photos, validation_photos = photo_set(args.photos)
    config = dataclasses.replace(load_named_config(args.config), **VARIANTS[args.variant])
    if args.lr_levels is not None:
        config = dataclasses.replace(config, lr_conditioning_levels=args.lr_levels)
    try:
        config.validate()
    except ValueError as exc:
        raise SystemExit(f"vsr: error: bad_option: {exc}") from exc
    settings = TrainSettings(
        config=config,
        degradation=args.degradation,
        seed=args.seed,
        ablation=not args.no_ablation,
        photos=photos,
        validation_photos=validation_photos,
    ).scaled(args.steps_scale)
    if args.temporal_weight is not None:
        settings = dataclasses.replace(settings, temporal_weight=args.temporal_weight)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    echo = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    result = train(settings, out / LOG_FILE, echo)
    save_model(result.model, out)
    summary: dict[str, Any] = {
        "command": "vsr train " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["train"] else None,
        "variant": args.variant,
        "threads": args.threads,
        "settings": settings.to_dict(),
        "seconds": result.seconds,
        "validation": result.validation,
        "ablation": result.ablation,
        "parameters": sum(p.numel() for p in result.model.parameters()),
    }
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({"out": str(out), "seconds": round(result.seconds["total"]), **result.validation}))
    return 0
