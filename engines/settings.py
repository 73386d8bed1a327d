"""Engine settings (`VSR_ENGINE__*`): which backend and precision, and the TensorRT optimization profile.

Imports nothing heavy (no torch): the API process builds these as part of its settings.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, model_validator

Backend = Literal["auto", "torch", "onnxruntime", "tensorrt"]
PrecisionSetting = Literal["auto", "fp32", "bf16", "fp16"]
DEFAULT_CACHE_DIR = Path("~/.cache/fastvsr/engines")


class ShapeRange(BaseModel):
    """min / opt / max of one dimension; TensorRT tunes kernels for `opt`."""

    min: int = Field(ge=1)
    opt: int = Field(ge=1)
    max: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> ShapeRange:
        if not self.min <= self.opt <= self.max:
            raise ValueError(f"need min <= opt <= max, got {self.min}, {self.opt}, {self.max}")
        return self


def _fill_range(default: tuple[int, int, int], value: Any) -> Any:
    """Complete a partial range from the environment (VSR_ENGINE__FRAMES__MAX=33) with the defaults."""
    if isinstance(value, dict):
        return dict(zip(("min", "opt", "max"), default, strict=True)) | value
    return value


def _range(low: int, opt: int, high: int) -> Any:
    return Annotated[ShapeRange, BeforeValidator(partial(_fill_range, (low, opt, high)))]


FramesRange = _range(1, 9, 17)
HeightRange = _range(8, 180, 1088)
WidthRange = _range(8, 320, 1920)


class EngineSettings(BaseModel):
    """How the worker runs the model's three stages (encoder, denoiser, decoder).

    `auto` picks TensorRT when it imports and a GPU is present, else torch (CUDA or CPU: on the CPU,
    ONNX Runtime measured slower than torch, so it is chosen only explicitly). `precision` auto means
    fp32 on the CPU, bf16 for torch CUDA, fp16 for ONNX/TensorRT on CUDA.
    The profile bounds every chunk on every backend (LR frames per chunk, first-chunk padding included;
    LR height and width before the model's own padding is added): shapes outside it are refused.
    """

    backend: Backend = "auto"
    precision: PrecisionSetting = "auto"
    compile: bool = Field(False, description="torch backend: torch.compile each stage")
    cuda_graphs: bool = Field(False, description="torch backend on CUDA: compile with CUDA graphs")
    threads: int | None = Field(None, ge=1, description="ONNX Runtime intra-op threads; None: its default")
    cache_dir: Path = Field(DEFAULT_CACHE_DIR, description="TensorRT engines and timing cache")
    workspace_gib: float = Field(4.0, gt=0, description="TensorRT builder workspace limit")
    frames: FramesRange = Field(default_factory=dict, validate_default=True)
    height: HeightRange = Field(default_factory=dict, validate_default=True)
    width: WidthRange = Field(default_factory=dict, validate_default=True)

    @model_validator(mode="after")
    def _consistent(self) -> EngineSettings:
        if self.cuda_graphs and not self.compile:
            raise ValueError(
                "cuda_graphs needs compile (CUDA graphs come from torch.compile reduce-overhead)"
            )
        return self
