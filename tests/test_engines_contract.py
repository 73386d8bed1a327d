"""One contract for every engine backend available here (GPU ones run in bench/gpu_check.sh).

Same inputs give the same outputs as the torch fp32 reference within a precision-dependent tolerance,
outputs have the layout's names and shapes, a chunked stream equals the model's own dict-cache stream, and
shapes outside the profile are refused with a clear error.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import torch

from engines.base import EngineError, ShapeOutOfProfileError
from engines.layout import COMPONENTS, ChunkSize, sample_inputs
from engines.ort_engine import cuda_provider_available
from engines.pipeline import EngineSet, load_engines
from engines.settings import EngineSettings, ShapeRange
from engines.stages import Stage
from engines.trt_engine import tensorrt_available
from models.blocks import StreamCache
from models.sr_model import VSRModel
from tests.conftest import tiny_model

CUDA = torch.cuda.is_available()
ONNX = all(importlib.util.find_spec(name) for name in ("onnx", "onnxruntime"))
needs_cuda = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")]


@dataclass(frozen=True)
class Backend:
    backend: str
    device: str
    precision: str
    compile: bool = False
    cuda_graphs: bool = False

    @property
    def tolerance(self) -> float:
        """Max abs error allowed, relative to the reference's magnitude."""
        return {"fp32": 1e-4, "fp16": 2e-2, "bf16": 6e-2}[self.precision]


BACKENDS = [
    pytest.param(Backend("torch", "cpu", "fp32"), id="torch-cpu-fp32"),
    pytest.param(
        Backend("onnxruntime", "cpu", "fp32"),
        # onnx is a project dependency: only a lent GPU machine (bare torch + ORT) may lack it
        marks=pytest.mark.skipif(CUDA and not ONNX, reason="onnx not on this GPU machine"),
        id="onnxruntime-cpu-fp32",
    ),
    pytest.param(Backend("torch", "cuda", "fp32"), marks=needs_cuda, id="torch-cuda-fp32"),
    pytest.param(Backend("torch", "cuda", "bf16"), marks=needs_cuda, id="torch-cuda-bf16"),
    pytest.param(Backend("torch", "cuda", "fp16"), marks=needs_cuda, id="torch-cuda-fp16"),
    pytest.param(
        Backend("torch", "cuda", "bf16", compile=True, cuda_graphs=True),
        marks=needs_cuda,
        id="torch-cuda-bf16-compiled-graphs",
    ),
    pytest.param(
        Backend("onnxruntime", "cuda", "fp16"),
        marks=[*needs_cuda, pytest.mark.skipif(not (ONNX and cuda_provider_available()), reason="no ORT EP")],
        id="onnxruntime-cuda-fp16",
    ),
    pytest.param(
        Backend("tensorrt", "cuda", "fp16"),
        marks=[*needs_cuda, pytest.mark.skipif(not tensorrt_available(), reason="TensorRT not installed")],
        id="tensorrt-cuda-fp16",
    ),
]
PROFILE = {
    "frames": ShapeRange(min=1, opt=8, max=16),
    "height": ShapeRange(min=8, opt=16, max=32),
    "width": ShapeRange(min=8, opt=24, max=48),
}


@pytest.fixture(scope="module")
def model() -> VSRModel:
    return tiny_model("fastvsr", temporal_compression=4)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def engines(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineSet]:
    settings = EngineSettings(
        backend=backend.backend,  # type: ignore[arg-type]
        precision=backend.precision,  # type: ignore[arg-type]
        compile=backend.compile,
        cuda_graphs=backend.cuda_graphs,
        cache_dir=tmp_path_factory.mktemp("engine-cache"),
        **PROFILE,
    )
    engine_set = load_engines(tiny_model("fastvsr", temporal_compression=4), settings, backend.device)
    yield engine_set
    engine_set.close()


def assert_close(got: torch.Tensor, expected: torch.Tensor, backend: Backend, what: str) -> None:
    assert got.shape == expected.shape, what
    error = (got.float().cpu() - expected).abs().max().item()
    assert error <= backend.tolerance * max(1.0, expected.abs().max().item()), (
        f"{what}: max abs error {error}"
    )


def test_each_stage_matches_torch_with_named_outputs(
    model: VSRModel, engines: EngineSet, backend: Backend
) -> None:
    size = ChunkSize(1, 8, 16, 24)
    for component in COMPONENTS:
        inputs = sample_inputs(engines.layout, component, size, first=False, seed=3)  # real history
        with torch.no_grad():
            expected = Stage(model, engines.layout, component).eval()(*inputs.values())
        engine = engines.engines[component]
        outputs = engine.run({name: t.to(engines.device) for name, t in inputs.items()})
        names = engines.layout.output_names(component)
        assert tuple(outputs) == names
        shapes = engines.layout.shapes(component, size)
        for name, reference in zip(names, expected, strict=True):
            assert tuple(outputs[name].shape) == shapes[name]
            assert outputs[name].dtype == torch.float32 and outputs[name].device.type == backend.device
            assert_close(outputs[name], reference, backend, f"{component}.{name}")


def test_chunked_stream_equals_the_models_own_stream(
    model: VSRModel, engines: EngineSet, backend: Backend
) -> None:
    clip = torch.rand(1, 3, 17, 16, 24, generator=torch.Generator().manual_seed(5))
    cache: StreamCache = {}
    parts = (slice(0, 5), slice(5, 9), slice(9, 17))  # 1 + 4, then 4, then 8 frames (tc = 4)
    with torch.no_grad():
        whole = model(clip)
        expected = [model(clip[:, :, part], cache) for part in parts]
    stream = engines.new_stream()
    with torch.inference_mode():
        got = [engines.upscale_chunk(clip[:, :, part].to(engines.device), stream) for part in parts]
    for index, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert_close(a, b, backend, f"chunk {index}")
    assert_close(torch.cat([g.float().cpu() for g in got], dim=2), whole, backend, "whole clip")


def test_same_inputs_give_the_same_outputs(engines: EngineSet, backend: Backend) -> None:
    inputs = sample_inputs(engines.layout, "decoder", ChunkSize(1, 4, 8, 16), first=True, seed=7)
    feed = {name: t.to(engines.device) for name, t in inputs.items()}
    first = engines.engines["decoder"].run(feed)
    second = engines.engines["decoder"].run(feed)
    for name in first:
        assert torch.equal(first[name], second[name]), name


@pytest.mark.parametrize(
    ("size", "bad"),
    [
        (ChunkSize(1, 8, 64, 24), "height 64 > 32"),
        (ChunkSize(1, 8, 16, 56), "width 56 > 48"),
        (ChunkSize(1, 20, 16, 24), "frames 20 > 16"),
    ],
)
def test_out_of_profile_shapes_raise_a_clear_error(engines: EngineSet, size: ChunkSize, bad: str) -> None:
    inputs = sample_inputs(engines.layout, "encoder", size, first=True)
    with pytest.raises(ShapeOutOfProfileError, match=r"encoder: input 'lr' has shape .* outside .* profile"):
        engines.engines["encoder"].run({name: t.to(engines.device) for name, t in inputs.items()})


def test_wrong_names_are_refused(engines: EngineSet) -> None:
    inputs = sample_inputs(engines.layout, "denoiser", ChunkSize(1, 4, 8, 8), first=True)
    inputs.pop("past_frames")
    with pytest.raises(EngineError, match=r"missing inputs \['past_frames'\]"):
        engines.engines["denoiser"].run({name: t.to(engines.device) for name, t in inputs.items()})
