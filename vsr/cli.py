"""The `vsr` command: `upscale` a file here, `serve` the API, run a `worker`, create API `keys`.

Heavy imports (torch, PyAV) happen inside the commands that need them, so the API image stays torch-free.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn, get_args

from engines.settings import Backend, PrecisionSetting  # torch-free, like the next imports
from vsr.eval_command import add_eval_parser
from vsr.figures_command import add_figures_parser
from vsr.train_command import add_train_parser
from worker.encode_options import ENCODERS

if TYPE_CHECKING:
    from service.settings import Settings

EXIT_ERROR = 1
EXIT_USAGE = 2
BACKENDS = get_args(Backend)
PRECISIONS = get_args(PrecisionSetting)


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports usage errors on one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"vsr: error: {message} (see --help)\n")


def add_upscale(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    up = commands.add_parser("upscale", help="upscale a video file 4x on this machine")
    up.add_argument("input", help="input video file")
    up.add_argument("output", help="output video file (.mp4, .mkv or .mov)")
    up.add_argument("--model", help="model directory (config.json + model.safetensors + sha256sums.txt)")
    up.add_argument("--config", default="fastvsr-tiny", help="named model when --model is not given")
    up.add_argument("--scale", type=int, default=4, help="upscaling factor (only 4 is supported)")
    up.add_argument("--codec", choices=sorted(ENCODERS), default="h264")
    up.add_argument("--crf", type=int, default=18, help="constant rate factor, 0..51 (lower is better)")
    up.add_argument("--preset", default="medium", help="x264/x265 preset")
    up.add_argument("--chunk-frames", type=int, help="frames per model chunk (memory); default 8")
    up.add_argument(
        "--memory-budget-mb",
        type=int,
        default=4096,
        help="activation memory of one chunk (MiB); larger frames run as overlapping tiles (default 4096)",
    )
    up.add_argument("--device", default="cpu", help="cpu or cuda")
    up.add_argument(
        "--temporal-blend",
        type=float,
        help="temporal stabilizer: share of the warped previous frame, 0..<1 (0: off; default 0.4)",
    )
    up.add_argument("--backend", choices=BACKENDS, default="auto", help="inference engine (auto: best here)")
    up.add_argument("--precision", choices=PRECISIONS, default="auto", help="engine precision")
    up.add_argument("--no-audio", action="store_true", help="do not copy audio streams")
    up.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    up.add_argument("--json", action="store_true", help="print the summary as JSON")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="vsr", description="FastVSR 4x video super-resolution")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    add_upscale(commands)
    serve = commands.add_parser("serve", help="run the API (and, without VSR_REDIS_URL, one worker)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    worker = commands.add_parser("worker", help="run a job worker (needs VSR_REDIS_URL)")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    keys = commands.add_parser("keys", help="create an API key and its tenant entry for VSR_TENANTS")
    keys.add_argument("tenant", help="tenant id (a-z, 0-9, '_', '-')")
    add_export(commands)
    add_client(commands)
    add_eval_parser(commands)
    add_figures_parser(commands)
    add_train_parser(commands)
    return parser


def add_export(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    export = commands.add_parser("export", help="export the model's stages to ONNX or TensorRT engines")
    export.add_argument("format", choices=("onnx", "trt"), help="onnx files, or TensorRT plans (cached)")
    export.add_argument("--out", help="output directory (onnx: required; trt: default VSR_ENGINE__CACHE_DIR)")
    export.add_argument("--model", help="model directory (config.json + model.safetensors + sha256sums.txt)")
    export.add_argument("--config", default="fastvsr-tiny", help="named model when --model is not given")
    export.add_argument("--precision", choices=("fp32", "fp16"), default="fp32", help="graph precision")
    export.add_argument("--device", default="cuda", help="trt: the GPU to build for")


def add_client(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """submit, status, wait, download, cancel, list: the job service's client (vsr/client_cli.py)."""
    from vsr.client_cli import add_client_commands

    add_client_commands(commands)


def fail(code: str, message: str) -> NoReturn:
    print(f"vsr: error: {code}: {message}", file=sys.stderr)
    raise SystemExit(EXIT_ERROR)


def cmd_upscale(args: argparse.Namespace) -> int:
    from engines.base import EngineError
    from models.config import ConfigError
    from models.weights import WeightsError
    from vsr.upscale_command import print_summary, run_upscale, summary
    from worker.allocator import allocator_advice, malloc_library
    from worker.video_io import VideoError

    advice = allocator_advice(args.device, malloc_library())
    if advice:
        print(f"vsr: note: {advice}", file=sys.stderr)
    start = time.perf_counter()
    try:
        result = run_upscale(args)
    except VideoError as exc:
        fail(exc.code, str(exc))
    except (WeightsError, ConfigError) as exc:
        fail("bad_model", str(exc))
    except EngineError as exc:
        fail("engine_error", str(exc))
    except KeyboardInterrupt:
        fail("interrupted", "stopped by the user; no output was written")
    info = summary(result, time.perf_counter() - start)
    if args.json:
        print(json.dumps(info))
    else:
        print_summary(info)
    return 0


def load_settings_or_fail() -> Settings:
    from pydantic import ValidationError

    from service.settings import load_settings

    try:
        return load_settings()
    except ValidationError as exc:
        fail("bad_settings", str(exc).replace("\n", "; "))


def cmd_serve(args: argparse.Namespace) -> int:
    from vsr.serve import serve

    serve(load_settings_or_fail(), args.host, args.port)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from worker.rq_worker import run_worker

    settings = load_settings_or_fail()
    if settings.embedded:
        fail(
            "bad_settings",
            "a separate worker needs VSR_REDIS_URL (embedded mode runs one inside `vsr serve`)",
        )
    run_worker(settings, burst=args.burst)
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from service.settings import TenantConfig
    from service.tenants import generate_api_key, hash_api_key
    from service.webhook_signing import generate_secret

    key = generate_api_key()
    try:
        tenant = TenantConfig(
            id=args.tenant, api_key_sha256=[hash_api_key(key)], webhook_secret=generate_secret()
        )
    except ValidationError as exc:
        fail("bad_tenant", exc.errors()[0]["msg"])
    print(f"API key (give it to the tenant; it is not stored): {key}", file=sys.stderr)
    print(
        json.dumps(
            tenant.model_dump(mode="json") | {"webhook_secret": tenant.webhook_secret.get_secret_value()}
        )
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from engines.base import EngineError
    from models.config import ConfigError
    from models.weights import WeightsError
    from vsr.export_command import run_export

    try:
        run_export(args)
    except (WeightsError, ConfigError) as exc:
        fail("bad_model", str(exc))
    except EngineError as exc:
        fail("engine_error", str(exc))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from vsr.eval_command import run_eval

    return run_eval(args)


def cmd_figures(args: argparse.Namespace) -> int:
    from vsr.figures_command import run_figures

    return run_figures(args)


def cmd_train(args: argparse.Namespace) -> int:
    from vsr.train_command import run_train

    return run_train(args)


def cmd_client(args: argparse.Namespace) -> int:
    from vsr.client_cli import run_client_command

    return run_client_command(args)


COMMANDS = {
    "upscale": cmd_upscale,
    "serve": cmd_serve,
    "worker": cmd_worker,
    "keys": cmd_keys,
    "export": cmd_export,
    "eval": cmd_eval,
    "figures": cmd_figures,
    "train": cmd_train,
    **dict.fromkeys(("submit", "status", "wait", "download", "cancel", "list"), cmd_client),
}


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
