"""TensorRT backend (written for TensorRT 10.x and 11.x): build strongly typed engines, run them by name.

- Build: `STRONGLY_TYPED` network (precision comes from the ONNX graph: fp32, or fp16 from
  `engines.precision`), one optimization profile from settings, a timing cache kept next to the engines.
- Run: `set_input_shape` / `set_tensor_address` / `execute_async_v3` on torch's current stream, on torch
  tensors (no host copies between stages).
- Load: a plan that does not deserialize is an error (the worker refuses to start), never a silent rebuild.

TensorRT cannot be installed on the development machines (no GPU, no NVIDIA index): the import is
guarded and everything around it (keys, profiles, fp16 graphs) is tested without it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from engines.base import (
    Engine,
    EngineError,
    EngineIO,
    EngineLoadError,
    EngineUnavailableError,
    ShapeOutOfProfileError,
    ShapeProfile,
)
from engines.cache import EngineKey, sha256_bytes

log = logging.getLogger(__name__)


def import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError as exc:
        raise EngineUnavailableError(
            f"TensorRT is not installed ({exc}); install NVIDIA's tensorrt wheel (10.x or 11.x) or pick "
            "another backend (VSR_ENGINE__BACKEND=torch or onnxruntime)"
        ) from exc
    return tensorrt


def tensorrt_available() -> bool:
    try:
        import_tensorrt()
    except EngineUnavailableError:
        return False
    return torch.cuda.is_available()


def _make_logger(trt: Any) -> Any:
    """A TensorRT logger that forwards to `logging` and keeps errors (checked after deserializing)."""
    severity = trt.ILogger.Severity
    errors = (severity.INTERNAL_ERROR, severity.ERROR)

    class Logger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, level: Any, msg: str) -> None:
            if level in errors:
                self.errors.append(msg)
                log.error("TensorRT: %s", msg)
            elif level == severity.WARNING:
                log.warning("TensorRT: %s", msg)

    return Logger()


def engine_key(onnx_bytes: bytes, profile: ShapeProfile, precision: str, device: torch.device) -> EngineKey:
    trt = import_tensorrt()
    return EngineKey(
        onnx_sha256=sha256_bytes(onnx_bytes),
        trt_version=trt.__version__,
        compute_capability=torch.cuda.get_device_capability(device),
        profile=profile,
        precision=precision,
    )


def build_plan(onnx_bytes: bytes, profile: ShapeProfile, timing_cache: Path, workspace_gib: float) -> bytes:
    """Build a serialized engine from an ONNX model; the timing cache is read and updated in place."""
    trt = import_tensorrt()
    logger = _make_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT could not parse the ONNX model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 1024**3))
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    optimization = builder.create_optimization_profile()
    for name, (low, opt, high) in profile.shapes.items():
        optimization.set_shape(name, low, opt, high)
    config.add_optimization_profile(optimization)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineError("TensorRT failed to build the engine: " + "; ".join(logger.errors))
    timing_cache.parent.mkdir(parents=True, exist_ok=True)
    timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(plan)


def cached_plan(
    component: str,
    onnx_bytes: bytes,
    profile: ShapeProfile,
    precision: str,
    device: torch.device,
    cache_dir: Path,
    workspace_gib: float,
) -> Path:
    """The plan for this ONNX/profile/precision on this GPU and TensorRT: from the cache, else built."""
    key = engine_key(onnx_bytes, profile, precision, device)
    path = key.plan_path(cache_dir, component)
    if not path.is_file():
        log.info("building TensorRT engine %s (key %s)", path.name, key.digest[:12])
        plan = build_plan(onnx_bytes, profile, key.timing_cache_path(cache_dir), workspace_gib)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")  # workers may build the same plan at once
        partial.write_bytes(plan)
        partial.replace(path)  # a crash never leaves a truncated plan under the final name
        path.with_suffix(".json").write_text(json.dumps(key.metadata(), indent=2) + "\n")
    return path


class TensorRTEngine(Engine):
    backend = "tensorrt"

    def __init__(self, name: str, plan_path: Path, io: EngineIO, device: torch.device) -> None:
        super().__init__(name, io, device)
        trt = import_tensorrt()
        if device.type != "cuda" or not torch.cuda.is_available():
            raise EngineUnavailableError("TensorRT needs a CUDA GPU")
        self._trt = trt
        self.plan_path = plan_path
        self.logger = _make_logger(trt)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(plan_path.read_bytes())
        if self.engine is None or self.logger.errors:
            raise EngineLoadError(
                f"{name}: TensorRT {trt.__version__} could not deserialize {plan_path} "
                f"({'; '.join(self.logger.errors) or 'no engine returned'}). It was built by another "
                "TensorRT version or GPU, or the file is damaged: delete it so it is rebuilt, or run "
                "`vsr export trt` on this machine"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = {n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT}
        if inputs != set(io.inputs) or set(names) - inputs != set(io.outputs):
            raise EngineLoadError(f"{name}: engine tensors {sorted(names)} do not match the model's layout")

    def _torch_dtype(self, name: str) -> torch.dtype:
        trt = self._trt
        types = {
            trt.float32: torch.float32,
            trt.float16: torch.float16,
            trt.bfloat16: torch.bfloat16,
            trt.int64: torch.int64,
            trt.int32: torch.int32,
        }
        return types[self.engine.get_tensor_dtype(name)]

    def _run(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        stream = torch.cuda.current_stream(self.device)
        bound = {}
        for name in self.io.inputs:
            tensor = inputs[name].to(self._torch_dtype(name)).contiguous()
            if not self.context.set_input_shape(name, tuple(tensor.shape)):
                raise ShapeOutOfProfileError(
                    f"{self.name}: TensorRT refused shape {tuple(tensor.shape)} for {name!r}"
                )
            self.context.set_tensor_address(name, tensor.data_ptr())
            bound[name] = tensor  # alive until the call returns; later reuse is ordered on the same stream
        outputs = {}
        for name in self.io.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            out = torch.empty(shape, dtype=self._torch_dtype(name), device=self.device)
            self.context.set_tensor_address(name, out.data_ptr())
            outputs[name] = out
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise EngineError(f"{self.name}: TensorRT execution failed")
        return outputs

    def _close(self) -> None:
        del self.context, self.engine, self.runtime
