"""ONNX export of the three stages: named inputs/outputs, dynamic batch/frames/height/width, opset 21.

The TorchScript exporter (`dynamo=False`) is used: it exports these stages in about a second each, while
the dynamo exporter takes tens of seconds and fails on the denoiser's token reshapes (torch 2.13).
GroupNorm becomes one native `GroupNormalization` node: traced at opset 20 with a symbolic that emits the
opset-21 form (per-channel scale/bias; the opset-18 form is deprecated), then stamped opset 21 (every op
traced at 20 is unchanged at 21). Each file is checked with `onnx.checker` and compared with the torch
stage in ONNX Runtime on a shape other than the traced one.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from engines.layout import (
    COMPONENTS,
    ChunkSize,
    Component,
    StreamLayout,
    past_name,
    present_name,
    sample_inputs,
)
from engines.precision import Precision, convert_to_fp16
from engines.stages import Stage
from models.sr_model import VSRModel

ONNX_OPSET = 21  # GroupNormalization-21: per-channel scale/bias (the opset-18 form is deprecated)
_TRACE_OPSET = 20  # the TorchScript exporter's newest; every op it emits is unchanged at 21


def _group_norm_symbolic(
    g: Any, x: Any, num_groups: Any, weight: Any, bias: Any, eps: Any, _cudnn: Any
) -> Any:
    """aten::group_norm -> one GroupNormalization node with per-channel scale and bias (opset-21 form)."""
    from torch.onnx import symbolic_helper as sh

    groups = sh._get_const(num_groups, "i", "num_groups")
    epsilon = sh._get_const(eps, "f", "eps")
    if sh._is_none(weight) or sh._is_none(bias):
        raise ValueError("GroupNorm without affine parameters is not exported")
    return g.op("GroupNormalization", x, weight, bias, epsilon_f=epsilon, num_groups_i=groups)


def _scale_name(axis: str, scale: Fraction) -> str:
    return f"{axis}_{scale.numerator}" + (f"_{scale.denominator}" if scale.denominator != 1 else "")


def dynamic_axes(layout: StreamLayout, component: Component) -> dict[str, dict[int, str]]:
    """Symbolic names of every dynamic dimension; equal names mean equal sizes."""
    lr = {0: "batch", 2: "frames", 3: "height", 4: "width"}
    latent = {0: "batch", 2: "latent_frames", 3: "latent_height", 4: "latent_width"}
    axes = {
        "lr": lr,
        "latent": latent,
        "denoised": latent,
        "video": {0: "batch", 2: "frames", 3: "video_height", 4: "video_width"},
    }
    result = {
        n: axes[n] for n in (*layout.input_names(component), *layout.output_names(component)) if n in axes
    }
    for entry in layout.entries(component):
        if entry.tokens:
            dims = {0: f"tokens_{_scale_name('height', entry.scale**2)}"}
        else:
            dims = {0: "batch", 3: _scale_name("height", entry.scale), 4: _scale_name("width", entry.scale)}
        result[past_name(entry.key)] = result[present_name(entry.key)] = dims
    return result


def trace_size(layout: StreamLayout) -> ChunkSize:
    """A chunk whose dimensions are all distinct and > 1, so no size is specialised while tracing."""
    m, tc = layout.lr_multiple, layout.temporal_compression
    return ChunkSize(1, 2 * tc, 2 * m, 3 * m)


def export_stage(model: VSRModel, layout: StreamLayout, component: Component) -> onnx.ModelProto:
    """Export one stage of `model` (fp32) as an ONNX model held in memory.

    Traced from a CPU copy wherever the model lives, so the bytes (and TensorRT cache keys) do not depend
    on the device.
    """
    stage = Stage(copy.deepcopy(model).cpu(), layout, component).eval()
    inputs = sample_inputs(layout, component, trace_size(layout), first=False)
    buffer = io.BytesIO()
    torch.onnx.register_custom_op_symbolic("aten::group_norm", _group_norm_symbolic, _TRACE_OPSET)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)  # dynamo=False is deprecated in torch 2.13
            warnings.simplefilter("ignore", FutureWarning)
            torch.onnx.export(
                stage,
                tuple(inputs.values()),
                buffer,
                input_names=list(layout.input_names(component)),
                output_names=list(layout.output_names(component)),
                dynamic_axes=dynamic_axes(layout, component),
                opset_version=_TRACE_OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::group_norm", _TRACE_OPSET)
    proto = onnx.load_from_string(buffer.getvalue())
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = ONNX_OPSET
    proto.doc_string = f"FastVSR {component} ({model.config.pipeline}), streaming caches as past.*/present.*"
    return proto


def ort_outputs(
    proto: onnx.ModelProto, inputs: dict[str, torch.Tensor], threads: int = 2
) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {k: v.numpy() for k, v in inputs.items()}), strict=True))


def verify_stage(
    proto: onnx.ModelProto, model: VSRModel, layout: StreamLayout, component: Component
) -> float:
    """onnx.checker, then the max abs difference from the torch stage (fp32) on an untraced shape."""
    onnx.checker.check_model(proto, full_check=True)
    m, tc = layout.lr_multiple, layout.temporal_compression
    inputs = sample_inputs(layout, component, ChunkSize(1, 3 * tc, 3 * m, 2 * m), first=True, seed=1)
    with torch.no_grad():
        expected = Stage(model, layout, component).eval()(*inputs.values())
    got = ort_outputs(proto, inputs)
    names = layout.output_names(component)
    return max(float(np.abs(got[n] - e.numpy()).max()) for n, e in zip(names, expected, strict=True))


@dataclass(frozen=True)
class ExportedFile:
    component: Component
    path: Path
    sha256: str
    max_abs_error: float


def export_model(model: VSRModel, out_dir: Path, precision: Precision = "fp32") -> list[ExportedFile]:
    """Write encoder/denoiser/decoder `.onnx` files and `manifest.json` to `out_dir`, each verified."""
    from engines.layout import probe_layout

    out_dir.mkdir(parents=True, exist_ok=True)
    layout = probe_layout(model)
    files = []
    for component in COMPONENTS:
        proto = export_stage(model, layout, component)
        if precision == "fp16":
            proto = convert_to_fp16(proto)
        error = verify_stage(proto, model, layout, component)
        data = proto.SerializeToString()
        path = out_dir / f"{component}.onnx"
        path.write_bytes(data)
        files.append(ExportedFile(component, path, hashlib.sha256(data).hexdigest(), error))
    manifest = {
        "config": model.config.to_dict(),
        "precision": precision,
        "opset": ONNX_OPSET,
        "files": {
            f.component: {"file": f.path.name, "sha256": f.sha256, "max_abs_error": f.max_abs_error}
            for f in files
        },
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return files
