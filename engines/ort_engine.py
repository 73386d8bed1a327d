"""ONNX Runtime backend: CPU, or the CUDA execution provider where the installed build has it.

Inputs and outputs are bound in place with IOBinding (torch tensors' memory, same code on CPU and CUDA);
output shapes come from the stream layout, so ONNX Runtime writes straight into torch tensors. On CUDA
the session runs on torch's current stream.
"""

from __future__ import annotations

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
        options.enable_cpu_mem_arena = False  # the arena keeps each stage's peak (GBs at 720p) for good
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
            self.session = ort.InferenceSession(model, options, providers=providers)
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
