"""Where a model comes from: a model directory, or a named configuration shipped with the package."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from models.config import load_named_config
from models.sr_model import VSRModel
from models.weights import describe, load_model

DEFAULT_MODEL = "fastvsr-tiny"
INIT_SEED = 0


@dataclass(frozen=True)
class LoadedModel:
    model: VSRModel
    description: str  # says plainly which weights are in use
    trained: bool


def shipped_weights(name: str) -> Path | None:
    """The packaged model directory for `name`, if trained weights ship with the package."""
    path = Path(str(resources.files("models"))) / "weights" / name
    return path if (path / "model.safetensors").is_file() else None


def resolve_model(model_dir: str | Path | None = None, name: str = DEFAULT_MODEL) -> LoadedModel:
    """Load `model_dir`, else the shipped weights of `name`, else an untrained initialisation of it."""
    if model_dir is not None:
        return LoadedModel(load_model(model_dir), f"weights from {describe(model_dir)}", trained=True)
    shipped = shipped_weights(name)
    if shipped is not None:
        return LoadedModel(load_model(shipped), f"shipped weights {describe(shipped)}", trained=True)
    torch.manual_seed(INIT_SEED)
    model = VSRModel(load_named_config(name)).eval()
    note = (
        f"UNTRAINED {name} (seed {INIT_SEED}, no trained weights ship yet): the zero-initialised output head "
        "makes the result equal to bicubic x4 upscaling"
    )
    if not model.config.zero_init_output:
        note = f"UNTRAINED {name} (seed {INIT_SEED}, random weights): the output is not meaningful"
    return LoadedModel(model, note, trained=False)
