"""PyTorch backend: a stage module run eagerly or compiled, in fp32 or under bf16/fp16 autocast.

Autocast keeps GroupNorm/LayerNorm in fp32. `cuda_graphs` compiles with mode="reduce-overhead" (CUDA
graphs); their outputs live in memory the next replay overwrites, so they are cloned before returning.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from engines.base import Engine, EngineIO, EngineUnavailableError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class TorchEngine(Engine):
    backend = "torch"

    def __init__(
        self,
        name: str,
        module: nn.Module,
        io: EngineIO,
        device: torch.device,
        *,
        precision: str = "fp32",
        compile: bool = False,
        cuda_graphs: bool = False,
    ) -> None:
        super().__init__(name, io, device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise EngineUnavailableError("torch backend on cuda: no CUDA GPU is available")
        if precision not in DTYPES or (device.type == "cpu" and precision == "fp16"):
            raise EngineUnavailableError(f"torch backend on {device.type} cannot run precision {precision!r}")
        if cuda_graphs and (device.type != "cuda" or not compile):
            raise EngineUnavailableError("CUDA graphs need the torch backend on cuda with compile")
        self.dtype = DTYPES[precision]
        self.cuda_graphs = cuda_graphs
        self.module = module.to(device).eval()
        mode = "reduce-overhead" if cuda_graphs else None
        self.forward = torch.compile(self.module, mode=mode) if compile else self.module

    def _run(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        args = [inputs[name] for name in self.io.inputs]
        autocast = torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)
        with torch.inference_mode(), autocast:
            if self.cuda_graphs:
                torch.compiler.cudagraph_mark_step_begin()
            outputs = self.forward(*args)
            if self.cuda_graphs:
                outputs = tuple(t.clone() for t in outputs)
        return dict(zip(self.io.outputs, outputs, strict=True))

    def _close(self) -> None:
        del self.forward, self.module
