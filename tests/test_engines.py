"""Engines without a GPU: settings, profiles, TensorRT cache keys, fp16 graphs, ONNX export, the CLI."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from pydantic import ValidationError

from engines.base import EngineUnavailableError, ShapeProfile
from engines.cache import EngineKey
from engines.export import ONNX_OPSET, export_stage, ort_outputs
from engines.layout import ChunkSize, probe_layout, sample_inputs
from engines.ort_rewrite import group_norm_as_instance_norm
from engines.pipeline import load_engines, resolve_backend, resolve_precision
from engines.precision import FP32_OPS, convert_to_fp16
from engines.profiles import stage_profile
from engines.settings import EngineSettings, ShapeRange
from engines.trt_engine import tensorrt_available
from models.weights import save_model
from service.settings import Settings
from tests.conftest import lr_conditioned_model, tiny_model
from tests.media import make_test_clip
from worker.upscale_file import UpscaleOptions, upscale_video
from worker.upscaler import ClipUpscaler
from worker.video_io import VideoError

CPU = torch.device("cpu")


def run_vsr(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "vsr.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def test_engine_settings_come_from_nested_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VSR_ENGINE__BACKEND", "onnxruntime")
    monkeypatch.setenv("VSR_ENGINE__FRAMES__MAX", "33")
    monkeypatch.setenv("VSR_ENGINE__CACHE_DIR", "/var/cache/vsr")
    engine = Settings(_env_file=None).engine  # type: ignore[call-arg]
    assert engine.backend == "onnxruntime"
    assert (engine.frames.min, engine.frames.opt, engine.frames.max) == (1, 9, 33)
    assert engine.cache_dir == Path("/var/cache/vsr")
    monkeypatch.setenv("VSR_ENGINE__HEIGHT__MIN", "2000")
    with pytest.raises(ValidationError, match="min <= opt <= max"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="cuda_graphs needs compile"):
        EngineSettings(cuda_graphs=True)


def test_engine_settings_import_no_torch() -> None:
    code = "import sys, engines.settings, service.settings; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_profiles_derive_from_settings_rounded_up_to_what_engines_see() -> None:
    model = tiny_model("fastvsr", temporal_compression=4)  # LR multiple 8, 4 frames per latent frame
    layout = probe_layout(model)
    settings = EngineSettings(
        frames=ShapeRange(min=1, opt=9, max=17),
        height=ShapeRange(min=10, opt=180, max=1080),
        width=ShapeRange(min=8, opt=320, max=1918),
    )
    encoder = stage_profile(layout, "encoder", settings).shapes
    assert encoder["lr"] == ((1, 3, 4, 16, 8), (1, 3, 12, 184, 320), (1, 3, 20, 1080, 1920))
    assert encoder["past.encoder.conv_in"][2] == (1, 3, 2, 2160, 3840)  # the x2-interpolated input
    assert "first" not in encoder  # static flags need no profile
    denoiser = stage_profile(layout, "denoiser", settings).shapes
    assert denoiser["latent"][1] == (1, 16, 3, 46, 80)
    tokens = denoiser["past.denoiser.blocks.0"]  # (B * tokens, window - 1, hidden): tokens = (H/8)(W/8)
    assert [shape[0] for shape in tokens] == [2 * 1, 23 * 40, 135 * 240]
    assert tokens[0][1:] == (2, 32)
    decoder = stage_profile(layout, "decoder", settings).shapes
    assert decoder["denoised"] == denoiser["latent"] and decoder["lr"] == encoder["lr"]


def test_layout_scales_are_exact() -> None:
    layout = probe_layout(tiny_model("baseline"))  # x4 interpolation before the f8 encoder
    assert layout.latent_scale == Fraction(1, 2) and layout.lr_multiple == 4
    scales = {e.key: e.scale for e in layout.caches}
    assert scales["encoder.conv_in"] == 4 and scales["decoder.conv_out"] == 4
    with pytest.raises(ValueError, match="multiple"):
        layout.shapes("encoder", ChunkSize(1, 1, 5, 8))


def key(**changes: object) -> EngineKey:
    base = EngineKey(
        onnx_sha256="ab" * 32,
        trt_version="10.13.0",
        compute_capability=(9, 0),
        profile=ShapeProfile({"lr": ((1, 3, 1, 8, 8), (1, 3, 9, 184, 320), (1, 3, 17, 1088, 1920))}),
        precision="fp16",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_engine_cache_key_covers_onnx_trt_gpu_profile_and_precision(tmp_path: Path) -> None:
    assert key().digest == key().digest
    other_profile = ShapeProfile({"lr": ((1, 3, 1, 8, 8), (1, 3, 9, 184, 320), (1, 3, 33, 1088, 1920))})
    variants = [
        key(onnx_sha256="cd" * 32),
        key(trt_version="11.4.0"),
        key(compute_capability=(8, 9)),
        key(profile=other_profile),
        key(precision="fp32"),
    ]
    digests = {key().digest, *(variant.digest for variant in variants)}
    assert len(digests) == 6
    two_inputs = {"a": ((1,), (2,), (3,)), "b": ((4,), (5,), (6,))}
    reordered = dict(reversed(two_inputs.items()))
    assert key(profile=ShapeProfile(two_inputs)).digest == key(profile=ShapeProfile(reordered)).digest
    path = key().plan_path(tmp_path, "decoder")
    assert path.parent == tmp_path / "sm90" / "trt10.13.0"
    assert path.name.startswith("decoder-fp16-") and path.suffix == ".plan"
    assert key().timing_cache_path(tmp_path) == tmp_path / "sm90" / "trt10.13.0" / "timing.cache"
    assert key().metadata()["key"] == key().digest


def is_cast(node: onnx.NodeProto, to: int) -> bool:
    return node.op_type == "Cast" and node.attribute[0].i == to


def test_fp16_graph_keeps_io_and_normalization_in_fp32() -> None:
    model = tiny_model("fastvsr", temporal_compression=4)
    layout = probe_layout(model)
    for component in ("encoder", "denoiser"):
        fp32 = export_stage(model, layout, component)
        fp16 = convert_to_fp16(fp32)
        graph = fp16.graph
        assert all(i.data_type != TensorProto.FLOAT for i in graph.initializer)
        assert any(i.data_type == TensorProto.FLOAT16 for i in graph.initializer)
        floats = [
            v for v in (*graph.input, *graph.output) if v.type.tensor_type.elem_type != TensorProto.INT64
        ]
        assert all(v.type.tensor_type.elem_type == TensorProto.FLOAT for v in floats)
        producer = {out: node for node in graph.node for out in node.output}
        consumers = {name: [n for n in graph.node if name in n.input] for name in producer}
        norms = [n for n in graph.node if n.op_type in FP32_OPS]
        assert norms, "no normalization nodes found"
        for node in norms:  # every input cast up to fp32, the output cast back down to fp16
            assert all(is_cast(producer[name], TensorProto.FLOAT) for name in node.input if name), node.name
            assert all(is_cast(n, TensorProto.FLOAT16) for n in consumers[node.output[0]]), node.name
        inputs = sample_inputs(layout, component, ChunkSize(1, 8, 16, 24), first=False)
        expected, got = ort_outputs(fp32, inputs), ort_outputs(fp16, inputs)
        for name, value in expected.items():
            assert got[name].dtype == np.float32
            assert np.abs(got[name] - value).max() <= 2e-2 * max(1.0, float(np.abs(value).max())), name


def test_fp16_group_norm_statistics_do_not_overflow() -> None:
    """Activations of 3000 square to 9e6 > fp16 max (65504): fp32 statistics keep the result finite."""
    scale = helper.make_tensor("scale", TensorProto.FLOAT, [4], [1.0] * 4)
    bias = helper.make_tensor("bias", TensorProto.FLOAT, [4], [0.0] * 4)
    gain = helper.make_tensor("gain", TensorProto.FLOAT, [], [3000.0])
    nodes = [
        helper.make_node("Mul", ["x", "gain"], ["big"]),
        helper.make_node("GroupNormalization", ["big", "scale", "bias"], ["y"], num_groups=2, epsilon=1e-5),
    ]
    graph = helper.make_graph(
        nodes,
        "gn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [scale, bias, gain],
    )
    fp32 = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    x = torch.rand(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 20
    expected = ort_outputs(fp32, {"x": x})["y"]
    got = ort_outputs(convert_to_fp16(fp32), {"x": x})["y"]
    assert np.isfinite(got).all()
    assert np.abs(got - expected).max() < 2e-2


def test_exported_onnx_has_named_dynamic_io_and_native_group_norm() -> None:
    model = tiny_model("fastvsr", temporal_compression=4)
    proto = export_stage(model, probe_layout(model), "encoder")
    assert proto.opset_import[0].version == ONNX_OPSET >= 18
    ops = {node.op_type for node in proto.graph.node}
    assert "GroupNormalization" in ops and "InstanceNormalization" not in ops
    lr = next(i for i in proto.graph.input if i.name == "lr")
    assert [d.dim_param or d.dim_value for d in lr.type.tensor_type.shape.dim] == [
        "batch",
        3,
        "frames",
        "height",
        "width",
    ]
    names = [o.name for o in proto.graph.output]
    assert names[0] == "latent" and all(n.startswith("present.encoder.") for n in names[1:])


def test_pixel_norm_exports_as_native_layer_normalization() -> None:
    model = lr_conditioned_model(4, norm="pixel")
    layout = probe_layout(model)
    for component in ("encoder", "decoder"):
        ops = [node.op_type for node in export_stage(model, layout, component).graph.node]
        assert "LayerNormalization" in ops and "GroupNormalization" not in ops, component


def test_cpu_graph_runs_group_norm_as_instance_norm_with_the_same_outputs() -> None:
    """ONNX Runtime's CPU graph (GroupNormalization rewritten) gives the exported graph's outputs."""
    model = tiny_model("fastvsr")
    layout = probe_layout(model)
    proto = export_stage(model, layout, "decoder")
    rewritten = group_norm_as_instance_norm(proto)
    count = sum(node.op_type == "GroupNormalization" for node in proto.graph.node)
    assert count > 0
    assert sum(node.op_type == "InstanceNormalization" for node in rewritten.graph.node) == count
    assert not any(node.op_type == "GroupNormalization" for node in rewritten.graph.node)
    assert any(node.op_type == "GroupNormalization" for node in proto.graph.node)  # argument unchanged
    onnx.checker.check_model(rewritten, full_check=True)
    inputs = sample_inputs(layout, "decoder", ChunkSize(1, 3, 16, 24), first=False, seed=3)
    inputs = {k: v * 4 - 1 if v.is_floating_point() else v for k, v in inputs.items()}  # not just [0, 1)
    expected, got = ort_outputs(proto, inputs), ort_outputs(rewritten, inputs)
    assert expected.keys() == got.keys()
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, atol=1e-5, err_msg=name)


def test_auto_backend_and_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    auto = EngineSettings()
    assert resolve_backend(auto, CPU) == "torch"  # ONNX Runtime measured no faster on CPU: explicit only
    assert resolve_precision(auto, "onnxruntime", CPU) == "fp32"
    cuda = torch.device("cuda")
    monkeypatch.setattr("engines.trt_engine.tensorrt_available", lambda: True)
    assert resolve_backend(auto, cuda) == "tensorrt"
    assert resolve_precision(auto, "tensorrt", cuda) == "fp16"
    monkeypatch.setattr("engines.trt_engine.tensorrt_available", lambda: False)
    assert resolve_backend(auto, cuda) == "torch"
    assert resolve_precision(auto, "torch", cuda) == "bf16"
    assert resolve_backend(EngineSettings(backend="torch"), CPU) == "torch"
    with pytest.raises(EngineUnavailableError, match="not bf16"):
        resolve_precision(EngineSettings(precision="bf16"), "onnxruntime", CPU)


@pytest.mark.skipif(tensorrt_available(), reason="checks the error shown where TensorRT is missing")
def test_tensorrt_backend_without_tensorrt_fails_clearly() -> None:
    with pytest.raises(EngineUnavailableError, match="TensorRT is not installed"):
        load_engines(tiny_model(), EngineSettings(backend="tensorrt"), "cpu")


@pytest.mark.parametrize(
    ("make_model", "frames", "chunk", "seed"),
    [
        pytest.param(lambda: tiny_model("baseline", temporal_compression=4), 10, 4, 2, id="baseline-tc4"),
        # the guide's space-to-depth inputs export with dynamic sizes and stream like torch
        pytest.param(lambda: lr_conditioned_model(levels=4), 7, 3, 4, id="fastvsr-lr-at-every-level"),
        # per-pixel normalisation exports as LayerNormalization
        pytest.param(lambda: lr_conditioned_model(levels=4, norm="pixel"), 5, 4, 5, id="fastvsr-pixel-norm"),
    ],
)
def test_onnxruntime_upscaler_equals_the_torch_path(make_model, frames: int, chunk: int, seed: int) -> None:
    model = make_model()
    rng = np.random.default_rng(seed)
    clip = [rng.integers(0, 256, (13, 21, 3), dtype=np.uint8) for _ in range(frames)]
    expected = np.stack(list(ClipUpscaler(model, chunk_frames=chunk).upscale(clip)))
    engines = load_engines(model, EngineSettings(backend="onnxruntime", threads=2))
    got = np.stack(list(ClipUpscaler(engines, chunk_frames=chunk).upscale(clip)))
    assert got.shape == expected.shape == (frames, 52, 84, 3)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    assert expected.std() > 10


def test_frames_larger_than_the_profile_are_refused_before_decoding(tmp_path: Path) -> None:
    source = make_test_clip(tmp_path / "in.mp4", frames=3, width=64, height=48)
    small = EngineSettings(backend="torch", height=ShapeRange(min=8, opt=16, max=32))
    engines = load_engines(tiny_model(), small)
    with pytest.raises(VideoError, match="outside the engine's profile") as error:
        upscale_video(source, tmp_path / "out.mp4", engines, UpscaleOptions(chunk_frames=4))
    assert error.value.code == "input_too_large"
    assert not (tmp_path / "out.mp4").exists()


def test_vsr_export_onnx_writes_checked_files(tmp_path: Path) -> None:
    model_dir = save_model(tiny_model(), tmp_path / "model")
    result = run_vsr("export", "onnx", "--model", model_dir, "--out", tmp_path / "onnx")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["encoder", "denoiser", "decoder"]
    assert all("onnx.checker ok, max abs error vs torch" in line for line in lines)
    manifest = json.loads((tmp_path / "onnx" / "manifest.json").read_text())
    assert manifest["opset"] == ONNX_OPSET and manifest["precision"] == "fp32"
    for component, entry in manifest["files"].items():
        assert entry["max_abs_error"] < 1e-4, component
        onnx.checker.check_model(str(tmp_path / "onnx" / entry["file"]))


@pytest.mark.skipif(tensorrt_available(), reason="checks the error shown where TensorRT is missing")
def test_vsr_export_trt_without_tensorrt_fails_clearly(tmp_path: Path) -> None:
    result = run_vsr("export", "trt", "--out", tmp_path)
    assert result.returncode == 1
    assert "engine_error: TensorRT is not installed" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_export_is_byte_identical_for_the_same_weights() -> None:
    """TensorRT cache keys hash the ONNX bytes: the same model must export the same bytes every time."""
    first, second = tiny_model("fastvsr"), tiny_model("fastvsr")
    layout = probe_layout(first)
    a = export_stage(first, layout, "denoiser").SerializeToString()
    assert a == export_stage(second, layout, "denoiser").SerializeToString()
    with torch.no_grad():
        second.denoiser.patch_in.bias.add_(1.0)
    assert a != export_stage(second, layout, "denoiser").SerializeToString()
