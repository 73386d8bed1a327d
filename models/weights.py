"""Model directories: `config.json` + `model.safetensors` + `sha256sums.txt` (sha256sum format).

Loading verifies the checksums, then the tensor names and shapes strictly, and raises `WeightsError`
with a message that names what is wrong.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from models.config import ConfigError, VSRConfig
from models.sr_model import VSRModel

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "sha256sums.txt"
MAX_LISTED = 5


class WeightsError(ValueError):
    """A model directory is missing, corrupt or does not match its configuration."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_model(model: VSRModel, directory: str | Path) -> Path:
    """Write the model directory (created if needed) and return its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(model.config.to_json())
    tensors = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items()}
    save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    lines = [f"{sha256_file(directory / name)}  {name}\n" for name in (CONFIG_FILE, WEIGHTS_FILE)]
    (directory / MANIFEST_FILE).write_text("".join(lines))
    return directory


def verify_manifest(directory: Path) -> None:
    manifest = directory / MANIFEST_FILE
    if not manifest.is_file():
        raise WeightsError(f"{directory}: missing {MANIFEST_FILE}")
    listed: dict[str, str] = {}
    for line in manifest.read_text().splitlines():
        digest, _, name = line.partition("  ")
        if not name:
            raise WeightsError(f"{manifest}: malformed line {line!r}")
        listed[name] = digest
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        path = directory / name
        if not path.is_file():
            raise WeightsError(f"{directory}: missing {name}")
        if name not in listed:
            raise WeightsError(f"{manifest}: no checksum for {name}")
        if sha256_file(path) != listed[name]:
            raise WeightsError(f"{path}: sha256 does not match {MANIFEST_FILE} (file corrupt or edited)")


def load_config(directory: str | Path) -> VSRConfig:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise WeightsError(f"{directory}: missing {CONFIG_FILE}")
    try:
        return VSRConfig.from_json(path.read_text())
    except ConfigError as exc:
        raise WeightsError(f"{path}: {exc}") from exc


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> VSRModel:
    """Build the model from `config.json` and load its weights, checking names and shapes strictly."""
    directory = Path(directory)
    if not directory.is_dir():
        raise WeightsError(f"model directory not found: {directory}")
    verify_manifest(directory)
    model = VSRModel(load_config(directory))
    try:
        tensors = load_file(str(directory / WEIGHTS_FILE), device=str(device))
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"{directory / WEIGHTS_FILE}: unreadable safetensors file: {exc}") from exc
    check_state_dict(model, tensors)
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval()


def check_state_dict(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in tensors.items()}
    problems = []
    missing = sorted(expected.keys() - found.keys())
    unexpected = sorted(found.keys() - expected.keys())
    mismatched = [
        f"{name}: expected {list(expected[name])}, found {list(found[name])}"
        for name in sorted(expected.keys() & found.keys())
        if expected[name] != found[name]
    ]
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if items:
            more = f" (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
            problems.append(f"{len(items)} {label}: {'; '.join(items[:MAX_LISTED])}{more}")
    if problems:
        raise WeightsError("weights do not match config: " + " | ".join(problems))


def describe(directory: str | Path) -> str:
    """One line naming a model directory and its weights checksum."""
    directory = Path(directory)
    digest = sha256_file(directory / WEIGHTS_FILE)[:12]
    config = json.loads((directory / CONFIG_FILE).read_text())
    return f"{directory} (pipeline {config.get('pipeline')}, weights sha256 {digest})"
