"""`vsr export onnx|trt`: write the model's stages as verified ONNX files, or build TensorRT engines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from engines.export import export_model
from engines.layout import COMPONENTS
from models.registry import resolve_model


def run_export(args: argparse.Namespace) -> None:
    loaded = resolve_model(args.model, args.config)
    print(f"model: {loaded.description}", file=sys.stderr)
    if args.format == "onnx":
        if not args.out:
            raise SystemExit("vsr: error: export onnx needs --out DIR")
        for exported in export_model(loaded.model, Path(args.out), args.precision):
            print(
                f"{exported.component}: {exported.path} (sha256 {exported.sha256[:12]}), "
                f"onnx.checker ok, max abs error vs torch {exported.max_abs_error:.3g}"
            )
        return
    build_trt(loaded.model, args)


def build_trt(model: torch.nn.Module, args: argparse.Namespace) -> None:
    """Build (or find in the engine cache) one TensorRT plan per stage, then load each to prove it runs."""
    from engines.pipeline import load_engines
    from engines.trt_engine import import_tensorrt
    from service.settings import load_settings

    import_tensorrt()  # a clear error before any work when TensorRT is missing
    settings = load_settings().engine
    update: dict[str, object] = {"backend": "tensorrt", "precision": args.precision}
    if args.out:
        update["cache_dir"] = Path(args.out)
    engines = load_engines(model, settings.model_copy(update=update), args.device)  # type: ignore[arg-type]
    for component in COMPONENTS:
        engine = engines.engines[component]
        print(f"{component}: {getattr(engine, 'plan_path', '?')} (loaded: {engine.backend})")
    engines.close()
