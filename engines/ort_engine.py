"""ONNX Runtime backend: CPU, or the CUDA execution provider where the installed build has it.

Inputs and outputs are bound in place with IOBinding (torch tensors' memory, same code on CPU and CUDA);
output shapes come from the stream layout, so ONNX Runtime writes straight into torch tensors. On CUDA
the session runs on torch's current stream.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from engines.base import Engine, EngineIO, EngineLoadError, EngineUnavailableError, Shape

OutputShapes = Callable[[Mapping[str, Shape]], Mapping[str, Shape]]
NUMPY_DTYPES = {torch.float32: np.float32, torch.float16: np.float16, torch.int64: np.int64}


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise EngineUnavailableError(f"onnxruntime is not installed: {exc}") from exc
    return onnxruntime


def cuda_provider_available() -> bool:
    try:
        return "CUDAExecutionProvider" in import_onnxruntime().get_available_providers()
    except EngineUnavailableError:
        return False


def cpu_graph(model: bytes) -> bytes:
    """The graph as the CPU provider runs it fastest (`engines.ort_rewrite`)."""
    import onnx

    from engines.ort_rewrite import group_norm_as_instance_norm

    return group_norm_as_instance_norm(onnx.load_from_string(model)).SerializeToString()


@functools.cache
def share_cpu_arena(ort: Any) -> None:
    """Register one CPU memory arena for every session of this process (once).

    Without an arena each run allocates and page-faults its intermediates afresh (about 1.5x slower at
    720p output, measured); with one arena per session, each stage keeps its own peak. The shared arena
    holds the largest stage's peak and grows by what is requested, not to the next power of two.
    """
    memory = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(memory, ort.OrtArenaCfg({"arena_extend_strategy": 1}))


class OnnxRuntimeEngine(Engine):
    backend = "onnxruntime"

    def __init__(
        self,
        name: str,
        model: bytes,
        io: EngineIO,
        device: torch.device,
        output_shapes: OutputShapes,
        *,
        threads: int | None = None,
    ) -> None:
        super().__init__(name, io, device)
        ort = import_onnxruntime()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if device.type == "cpu":
            share_cpu_arena(ort)
            options.add_session_config_entry("session.use_env_allocators", "1")
            # idle worker threads sleep instead of spinning: the stages' neighbours (torch, the decode and
            # encode threads) share these cores; no slowdown of the stages was measurable
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads is not None:
            options.intra_op_num_threads = threads
        if device.type == "cuda":
            if not (torch.cuda.is_available() and cuda_provider_available()):
                raise EngineUnavailableError("onnxruntime on cuda needs a GPU and onnxruntime-gpu")
            stream = torch.cuda.current_stream(device).cuda_stream
            cuda = {"device_id": device.index or 0, "user_compute_stream": str(stream)}
            providers: list[Any] = [("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        try:
            graph = cpu_graph(model) if device.type == "cpu" else model
            self.session = ort.InferenceSession(graph, options, providers=providers)
        except Exception as exc:  # ORT raises its own exception types from C++
            raise EngineLoadError(f"{name}: onnxruntime could not load the model: {exc}") from exc
        self.output_shapes = output_shapes
        self.output_dtypes = {o.name: _torch_dtype(o.type) for o in self.session.get_outputs()}

    def _run(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        binding = self.session.io_binding()
        device_type, device_id = self.device.type, self.device.index or 0
        tensors = {name: inputs[name].contiguous() for name in self.io.inputs}
        for name, tensor in tensors.items():
            binding.bind_input(
                name,
                device_type,
                device_id,
                NUMPY_DTYPES[tensor.dtype],
                tuple(tensor.shape),
                tensor.data_ptr(),
            )
        shapes = self.output_shapes({name: tuple(t.shape) for name, t in tensors.items()})
        outputs = {}
        for name in self.io.outputs:
            out = torch.empty(shapes[name], dtype=self.output_dtypes[name], device=self.device)
            binding.bind_output(
                name, device_type, device_id, NUMPY_DTYPES[out.dtype], tuple(out.shape), out.data_ptr()
            )
            outputs[name] = out
        self.session.run_with_iobinding(binding)
        return outputs

    def _close(self) -> None:
        del self.session


def _torch_dtype(onnx_type: str) -> torch.dtype:
    types = {"tensor(float)": torch.float32, "tensor(float16)": torch.float16, "tensor(int64)": torch.int64}
    return types[onnx_type]
