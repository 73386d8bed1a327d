"""The engine interface: load once, run many times on named tensors, close.

Inputs and outputs are torch tensors on the engine's device, so the stages pass tensors to one another
without copies. `run` checks names and shapes before any backend sees them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType

import torch

Shape = tuple[int, ...]


class EngineError(RuntimeError):
    """An engine cannot be built, loaded or run."""


class EngineUnavailableError(EngineError):
    """The backend is not installed, or the device it needs is missing."""


class EngineLoadError(EngineError):
    """A built engine cannot be loaded (for TensorRT: the plan did not deserialize)."""


class ShapeOutOfProfileError(EngineError, ValueError):
    """An input shape lies outside the engine's optimization profile."""


@dataclass(frozen=True)
class ShapeProfile:
    """Per input name: (min, opt, max) shapes. Inputs not listed have a static shape."""

    shapes: Mapping[str, tuple[Shape, Shape, Shape]] = field(default_factory=dict)

    def check(self, engine: str, name: str, shape: Shape) -> None:
        if name not in self.shapes:
            return
        low, _, high = self.shapes[name]
        inside = len(shape) == len(low) and all(a <= s <= b for a, s, b in zip(low, shape, high, strict=True))
        if not inside:
            raise ShapeOutOfProfileError(
                f"{engine}: input {name!r} has shape {tuple(shape)}, outside the engine's profile "
                f"{low} .. {high} (VSR_ENGINE__FRAMES/HEIGHT/WIDTH set the profile)"
            )


@dataclass(frozen=True)
class EngineIO:
    """Names (in order), dtypes and profile of one engine's tensors."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    input_dtypes: Mapping[str, torch.dtype]
    profile: ShapeProfile = field(default_factory=ShapeProfile)


class Engine(ABC):
    """One loaded model stage. Subclasses implement `_run` (and `_close` if they hold resources)."""

    backend = ""

    def __init__(self, name: str, io: EngineIO, device: torch.device) -> None:
        self.name = name
        self.io = io
        self.device = device
        self.closed = False

    def run(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Named inputs on `device` -> named outputs on `device`."""
        if self.closed:
            raise EngineError(f"{self.name} ({self.backend}) is closed")
        if set(inputs) != set(self.io.inputs):
            missing, extra = set(self.io.inputs) - set(inputs), set(inputs) - set(self.io.inputs)
            raise EngineError(f"{self.name}: missing inputs {sorted(missing)}, unexpected {sorted(extra)}")
        for name in self.io.inputs:
            tensor = inputs[name]
            if tensor.dtype != self.io.input_dtypes[name] or tensor.device.type != self.device.type:
                raise EngineError(
                    f"{self.name}: input {name!r} is {tensor.dtype} on {tensor.device}, "
                    f"expected {self.io.input_dtypes[name]} on {self.device}"
                )
            self.io.profile.check(self.name, name, tuple(tensor.shape))
        return self._run(inputs)

    @abstractmethod
    def _run(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

    def close(self) -> None:
        """Release the backend's resources; `run` fails afterwards."""
        if not self.closed:
            self.closed = True
            self._close()

    def _close(self) -> None:
        return None

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
