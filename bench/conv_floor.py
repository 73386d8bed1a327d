"""The ceiling on `onnxruntime_vs_torch_cpu`: the layer that dominates both CPU backends' time, alone.

FastVSR's VAE spends most of its CPU time in causal 3x3x3 convolutions at the encoder-input grid (the
profile of ONNX Runtime at 180p -> 720p: Conv 68% of the encoder and 45% of the decoder; the rest is
memory-bound LayerNorm, SiLU, Transpose and Concat, which both backends pay). One such layer (one
8-frame chunk plus its 2 history frames) is timed here in every form ONNX Runtime's CPU provider could
run it, against the form torch eager runs (oneDNN, channels-last 3D, `models.blocks.conv3d`):

- `onnxruntime-conv3d`: the exported graph's `Conv` (MLAS: im2col + GEMM);
- `onnxruntime-conv2d-taps`: three per-frame 2D `Conv`s (one per time tap, over frames as the batch;
  MLAS's NCHWc direct convolution), summed: the same result;
- `onnxruntime-int8`: the `Conv` statically quantized (QDQ, u8 activations, per-channel s8 weights).

If no form runs the layer well under torch's time, the whole graph cannot reach 1.5x torch. Each form
runs in a process of its own on tcmalloc (as the CPU worker image runs), the processes alternating
`--rounds` times; the best time per form is kept.

    python -m bench.conv_floor --out bench/results/cpu_conv_floor.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from worker.allocator import malloc_env

FORMS = ("torch-onednn-conv3d", "onnxruntime-conv3d", "onnxruntime-conv2d-taps", "onnxruntime-int8")
# (channels, height, width): the tiny config's top level at 180p's encoder grid (2x the LR, padded),
# and the full-scale VAE's top level (128 channels) on a smaller grid, where convs are compute-bound
LAYERS = {"tiny-16ch-384x640": (16, 384, 640), "full-128ch-96x160": (128, 96, 160)}
HISTORY = 2  # past frames a causal conv with 3 time taps reads


def layer_weights(channels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((channels, channels, 3, 3, 3)) / np.sqrt(27 * channels)
    return weight.astype(np.float32), (rng.standard_normal(channels) * 0.1).astype(np.float32)


def layer_input(channels: int, frames: int, height: int, width: int, seed: int = 1) -> np.ndarray:
    """(1, C, HISTORY + frames, H, W): a chunk with its history, as the exported graph concatenates it."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((1, channels, HISTORY + frames, height, width)).astype(np.float32)


def _model(nodes: list[onnx.NodeProto], initializers: list[onnx.TensorProto]) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


def conv3d_model(weight: np.ndarray, bias: np.ndarray) -> onnx.ModelProto:
    """x (1, C, T + 2, H, W) -> y (1, O, T, H, W), as the exported causal conv runs it."""
    conv = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[0, 1, 1, 0, 1, 1])
    return _model([conv], [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])


def conv2d_taps_model(weight: np.ndarray, bias: np.ndarray, frames: int) -> onnx.ModelProto:
    """x (T + 2, C, H, W) frames as the batch -> y (T, O, H, W): y[t] = sum_k conv2d_k(x[t + k])."""
    nodes, initializers = [], [numpy_helper.from_array(np.array([0]), "axis")]
    zeros = np.zeros_like(bias)
    for tap in range(3):
        initializers += [
            numpy_helper.from_array(np.ascontiguousarray(weight[:, :, tap]), f"w{tap}"),
            numpy_helper.from_array(bias if tap == 0 else zeros, f"b{tap}"),
            numpy_helper.from_array(np.array([tap]), f"start{tap}"),
            numpy_helper.from_array(np.array([tap + frames]), f"end{tap}"),
        ]
        nodes += [
            helper.make_node("Slice", ["x", f"start{tap}", f"end{tap}", "axis"], [f"x{tap}"]),
            helper.make_node("Conv", [f"x{tap}", f"w{tap}", f"b{tap}"], [f"y{tap}"], pads=[1, 1, 1, 1]),
        ]
    nodes += [helper.make_node("Add", ["y0", "y1"], ["y01"]), helper.make_node("Add", ["y01", "y2"], ["y"])]
    return _model(nodes, initializers)


def int8_model(weight: np.ndarray, bias: np.ndarray, calibration: np.ndarray) -> onnx.ModelProto:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class OneBatch(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = [{"x": calibration}]

        def get_next(self) -> dict[str, np.ndarray] | None:
            return self.batches.pop() if self.batches else None

    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(conv3d_model(weight, bias), source)
        quantize_static(
            source,
            target,
            OneBatch(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
        )
        return onnx.load(target)


def best_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up: allocations, kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def time_form(
    form: str, channels: int, height: int, width: int, frames: int, threads: int, repeats: int
) -> dict[str, float]:
    """Best seconds of one form on a C -> C layer, and its max abs difference from torch's result."""
    import torch

    from models.blocks import conv3d

    torch.set_num_threads(threads)
    weight, bias = layer_weights(channels)
    x = layer_input(channels, frames, height, width)
    conv = torch.nn.Conv3d(channels, channels, 3, padding=(0, 1, 1)).eval()
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weight))
        conv.bias.copy_(torch.from_numpy(bias))
    x_torch = torch.from_numpy(x).contiguous(memory_format=torch.channels_last_3d)  # as activations are
    with torch.inference_mode():
        expected = conv3d(conv, x_torch).numpy()
        if form == "torch-onednn-conv3d":
            return {"seconds": best_seconds(lambda: conv3d(conv, x_torch), repeats), "max_abs_diff": 0.0}
    import onnxruntime as ort

    feed = x
    if form == "onnxruntime-conv3d":
        model = conv3d_model(weight, bias)
    elif form == "onnxruntime-conv2d-taps":
        model = conv2d_taps_model(weight, bias, frames)
        feed = np.ascontiguousarray(x[0].transpose(1, 0, 2, 3))
        expected = expected[0].transpose(1, 0, 2, 3)
    elif form == "onnxruntime-int8":
        model = int8_model(weight, bias, x)
    else:
        raise ValueError(f"unknown form {form!r}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    seconds = best_seconds(lambda: session.run(None, {"x": feed}), repeats)
    got = session.run(None, {"x": feed})[0]
    return {"seconds": seconds, "max_abs_diff": float(np.abs(got - expected).max())}


def time_in_subprocess(**job: Any) -> dict[str, float]:
    """`time_form(**job)` in a fresh interpreter on tcmalloc (one backend per process, as a CPU worker
    runs one)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.conv_floor", "--job", json.dumps(job)],
        capture_output=True,
        text=True,
        check=False,
        env=malloc_env("tcmalloc"),
    )
    if done.returncode != 0:
        raise RuntimeError(f"{job} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(
    frames: int, threads: int, repeats: int, rounds: int, layers: dict[str, tuple[int, int, int]]
) -> dict[str, Any]:
    """Best time of every form on every named (channels, height, width) layer."""
    report: dict[str, Any] = {"frames": frames, "history": HISTORY, "threads": threads, "layers": {}}
    for layer, (channels, height, width) in layers.items():
        best: dict[str, dict[str, float]] = {}
        for _ in range(rounds):
            for form in FORMS:
                sample = time_in_subprocess(
                    form=form,
                    channels=channels,
                    height=height,
                    width=width,
                    frames=frames,
                    threads=threads,
                    repeats=repeats,
                )
                if form not in best or sample["seconds"] < best[form]["seconds"]:
                    best[form] = sample
        torch_seconds = best["torch-onednn-conv3d"]["seconds"]
        macs = channels * channels * 27 * frames * height * width
        report["layers"][layer] = {
            form: {
                "ms": value["seconds"] * 1000,
                "gmac_per_s": macs / value["seconds"] / 1e9,
                "speedup_vs_torch": torch_seconds / value["seconds"],
                "max_abs_diff_vs_torch": value["max_abs_diff"],
            }
            for form, value in best.items()
        }
    return report


def print_report(report: dict[str, Any]) -> None:
    print(
        f"one causal 3x3x3 conv, {report['frames']} frames + {report['history']} history, "
        f"{report['threads']} threads (best per form over alternating processes)"
    )
    for layer, forms in report["layers"].items():
        for form, value in forms.items():
            print(
                f"{layer:20s} {form:26s} {value['ms']:8.1f} ms  {value['gmac_per_s']:6.1f} GMAC/s  "
                f"{value['speedup_vs_torch']:5.2f}x torch  "
                f"(max abs diff {value['max_abs_diff_vs_torch']:.2g})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--layers", default=",".join(LAYERS), help="comma-separated, from " + ", ".join(LAYERS)
    )
    parser.add_argument("--out", type=Path, help="also write the report as JSON here")
    parser.add_argument("--job", help=argparse.SUPPRESS)  # internal: time one form, print JSON
    args = parser.parse_args()
    if args.job:
        print(json.dumps(time_form(**json.loads(args.job))))
        return
    layers = {name: LAYERS[name] for name in args.layers.split(",")}
    report = run(args.frames, args.threads, args.repeats, args.rounds, layers)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)


if __name__ == "__main__":
    main()
