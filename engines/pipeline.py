"""Three stage engines as one streaming upscaler step, and the factory that picks and loads them.

`EngineSet.upscale_chunk` runs encoder -> denoiser -> decoder on one chunk, keeping every `present.*`
output as the next chunk's `past.*` input (on the engines' device). The first chunk of a stream is
front-padded with tc - 1 copies of its first frame before the encoder and those frames are cropped after
the decoder, exactly what the torch model does inside, so every chunk runs the same graphs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import torch

from engines.base import Engine, EngineIO, EngineUnavailableError
from engines.layout import (
    COMPONENTS,
    ChunkSize,
    Component,
    StreamLayout,
    past_name,
    present_name,
    probe_layout,
)
from engines.profiles import stage_profile
from engines.settings import EngineSettings
from engines.torch_engine import TorchEngine
from models.config import VSRConfig
from models.sr_model import VSRModel

log = logging.getLogger(__name__)
T = TypeVar("T")
StageTimer = Callable[[str, Callable[[], T]], T]
STAGE_OF = {"encoder": "encode", "denoiser": "denoise", "decoder": "decode"}


def _untimed(stage: str, fn: Callable[[], T]) -> T:
    return fn()


@dataclass
class StreamState:
    """One clip's state between chunks: the `past.*` tensors and how far the stream got."""

    caches: dict[str, torch.Tensor] = field(default_factory=dict)
    size: tuple[int, int, int] | None = None  # batch, LR height, LR width
    chunks: int = 0
    past_frames: int = 0  # real latent frames in the denoiser's fixed-length history


class EngineSet:
    """The encoder, denoiser and decoder engines of one model on one device."""

    def __init__(self, config: VSRConfig, layout: StreamLayout, engines: Mapping[Component, Engine]) -> None:
        self.config = config
        self.layout = layout
        self.engines = dict(engines)
        first = self.engines["encoder"]
        self.device = first.device
        self.backend = first.backend
        self.description = f"{first.backend} on {first.device}"

    def new_stream(self) -> StreamState:
        return StreamState()

    def upscale_chunk(
        self, lr: torch.Tensor, stream: StreamState, timer: StageTimer = _untimed
    ) -> torch.Tensor:
        """LR chunk (B, 3, T, H, W) in [0, 1], sizes padded -> SR chunk (B, 3, T, 4H, 4W) in [0, 1]."""
        layout, tc = self.layout, self.layout.temporal_compression
        first = stream.chunks == 0
        if first and tc > 1:
            lr = torch.cat([lr[:, :, :1].expand(-1, -1, tc - 1, -1, -1), lr], dim=2)
        size = ChunkSize(lr.shape[0], lr.shape[2], lr.shape[3], lr.shape[4])
        if first:
            stream.size = (size.batch, size.height, size.width)
            for component in COMPONENTS:
                stream.caches.update(layout.zero_caches(component, size, self.device))
        elif stream.size != (size.batch, size.height, size.width):
            raise ValueError(f"chunk size {tuple(lr.shape)} differs from the stream's {stream.size}")
        flag = torch.tensor([int(first)], device=self.device)
        latent = self._run("encoder", stream, timer, lr=lr, first=flag)["latent"]
        past_frames = torch.tensor([stream.past_frames], device=self.device)
        denoised = self._run("denoiser", stream, timer, latent=latent, past_frames=past_frames)["denoised"]
        video = self._run("decoder", stream, timer, denoised=denoised, lr=lr, first=flag)["video"]
        stream.chunks += 1
        stream.past_frames = min(layout.history_frames, stream.past_frames + latent.shape[2])
        return video[:, :, tc - 1 :] if first and tc > 1 else video

    def _run(
        self, component: Component, stream: StreamState, timer: StageTimer, **inputs: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        entries = self.layout.entries(component)
        feed = inputs | {past_name(e.key): stream.caches[past_name(e.key)] for e in entries}
        outputs = timer(STAGE_OF[component], lambda: self.engines[component].run(feed))
        for entry in entries:
            stream.caches[past_name(entry.key)] = outputs[present_name(entry.key)]
        return outputs

    def close(self) -> None:
        for engine in self.engines.values():
            engine.close()


def resolve_backend(settings: EngineSettings, device: torch.device) -> str:
    """`auto`: TensorRT if it imports and the device is a GPU, else torch on CUDA; torch on the CPU too:
    ONNX Runtime measured slower there (0.58x torch on tcmalloc, bench/results/cpu_engines.json)."""
    from engines.trt_engine import tensorrt_available

    if settings.backend != "auto":
        return settings.backend
    if device.type == "cuda":
        return "tensorrt" if tensorrt_available() else "torch"
    return "torch"


def resolve_precision(settings: EngineSettings, backend: str, device: torch.device) -> str:
    """`auto`: fp32 on the CPU; bf16 for torch on CUDA; fp16 for ONNX Runtime/TensorRT on CUDA."""
    precision = settings.precision
    if precision == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if backend == "torch" else "fp16"
    if backend != "torch" and precision == "bf16":
        raise EngineUnavailableError(
            f"{backend} runs fp32 or fp16 graphs, not bf16 (use fp16 or the torch backend)"
        )
    return precision


def load_engines(model: VSRModel, settings: EngineSettings, device: str | torch.device = "cpu") -> EngineSet:
    """Build the three engines of `model` with the configured backend (load once, run many)."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EngineUnavailableError(f"device {device} requested but no CUDA GPU is available")
    model = model.to(device).eval()
    backend = resolve_backend(settings, device)
    precision = resolve_precision(settings, backend, device)
    if backend == "tensorrt":
        from engines.trt_engine import import_tensorrt

        import_tensorrt()
        if device.type != "cuda":
            raise EngineUnavailableError(f"TensorRT needs a CUDA device, got {device}")
    layout = probe_layout(model)
    engines: dict[Component, Engine] = {}
    for component in COMPONENTS:
        io = EngineIO(
            layout.input_names(component),
            layout.output_names(component),
            layout.input_dtypes(component),
            stage_profile(layout, component, settings),
        )
        engines[component] = _load_engine(model, layout, component, io, backend, precision, settings, device)
    engine_set = EngineSet(model.config, layout, engines)
    engine_set.description = f"{backend} {precision} on {device}" + (
        " (compiled)" if settings.compile else ""
    )
    log.info("engines: %s", engine_set.description)
    return engine_set


def torch_engines(model: VSRModel, device: str | torch.device = "cpu") -> EngineSet:
    """Eager fp32 torch engines with no shape bounds: the reference path for a bare `VSRModel`."""
    from engines.stages import Stage

    device = torch.device(device)
    model = model.to(device).eval()
    layout = probe_layout(model)
    engines: dict[Component, Engine] = {
        c: TorchEngine(
            c,
            Stage(model, layout, c),
            EngineIO(layout.input_names(c), layout.output_names(c), layout.input_dtypes(c)),
            device,
        )
        for c in COMPONENTS
    }
    return EngineSet(model.config, layout, engines)


def _load_engine(
    model: VSRModel,
    layout: StreamLayout,
    component: Component,
    io: EngineIO,
    backend: str,
    precision: str,
    settings: EngineSettings,
    device: torch.device,
) -> Engine:
    from engines.stages import Stage

    if backend == "torch":
        stage = Stage(model, layout, component)
        return TorchEngine(
            component,
            stage,
            io,
            device,
            precision=precision,
            compile=settings.compile,
            cuda_graphs=settings.cuda_graphs,
        )
    onnx_bytes = stage_onnx(model, layout, component, precision)
    if backend == "onnxruntime":
        from engines.ort_engine import OnnxRuntimeEngine

        def output_shapes(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
            return layout.shapes(component, layout.chunk_size(component, dict(shapes)))

        return OnnxRuntimeEngine(component, onnx_bytes, io, device, output_shapes, threads=settings.threads)
    from engines.trt_engine import TensorRTEngine, cached_plan

    cache_dir = settings.cache_dir.expanduser()
    plan = cached_plan(
        component, onnx_bytes, io.profile, precision, device, cache_dir, settings.workspace_gib
    )
    return TensorRTEngine(component, plan, io, device)


def stage_onnx(model: VSRModel, layout: StreamLayout, component: Component, precision: str) -> bytes:
    """One stage exported to ONNX (fp32, or fp16 with fp32 I/O and normalization), serialized."""
    from engines.export import export_stage
    from engines.precision import convert_to_fp16

    proto = export_stage(model, layout, component)
    if precision == "fp16":
        proto = convert_to_fp16(proto)
    return proto.SerializeToString()
