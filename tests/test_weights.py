"""Model directories: save/load round trip, checksum verification, strict name and shape checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from models.registry import resolve_model
from models.weights import MANIFEST_FILE, WEIGHTS_FILE, WeightsError, load_model, save_model, sha256_file
from tests.conftest import tiny_model


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return save_model(tiny_model(seed=3), tmp_path / "model")


def rewrite_weights(directory: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Replace the weights and refresh the manifest, as a careless export would."""
    save_file(tensors, str(directory / WEIGHTS_FILE))
    manifest = directory / MANIFEST_FILE
    lines = [
        f"{sha256_file(directory / WEIGHTS_FILE)}  {WEIGHTS_FILE}" if line.endswith(WEIGHTS_FILE) else line
        for line in manifest.read_text().splitlines()
    ]
    manifest.write_text("\n".join(lines) + "\n")


def test_round_trip_gives_identical_outputs(saved: Path) -> None:
    original = tiny_model(seed=3)
    loaded = load_model(saved)
    assert loaded.config == original.config
    clip = torch.rand(1, 3, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(clip), original(clip))
    assert sorted(p.name for p in saved.iterdir()) == ["config.json", "model.safetensors", "sha256sums.txt"]


def test_registry_loads_a_model_directory(saved: Path) -> None:
    loaded = resolve_model(saved)
    assert loaded.trained and str(saved) in loaded.description and "sha256" in loaded.description


def test_wrong_shape_is_named(saved: Path) -> None:
    tensors = load_file(str(saved / WEIGHTS_FILE))
    tensors["decoder.conv_out.conv.weight"] = torch.zeros(3, 4, 3, 3, 3)
    rewrite_weights(saved, tensors)
    with pytest.raises(
        WeightsError, match=r"1 shape mismatch: decoder\.conv_out\.conv\.weight: expected \[3, 8,"
    ):
        load_model(saved)


def test_missing_and_unexpected_tensors_are_named(saved: Path) -> None:
    tensors = load_file(str(saved / WEIGHTS_FILE))
    del tensors["encoder.conv_in.conv.bias"]
    tensors["encoder.extra"] = torch.zeros(1)
    rewrite_weights(saved, tensors)
    with pytest.raises(WeightsError) as caught:
        load_model(saved)
    message = str(caught.value)
    assert "1 missing: encoder.conv_in.conv.bias" in message
    assert "1 unexpected: encoder.extra" in message


def refresh_manifest(directory: Path) -> None:
    lines = [f"{sha256_file(directory / name)}  {name}\n" for name in ("config.json", WEIGHTS_FILE)]
    (directory / MANIFEST_FILE).write_text("".join(lines))


def test_weights_for_another_config_are_rejected(saved: Path) -> None:
    config = json.loads((saved / "config.json").read_text())
    config["denoiser"]["hidden_size"] = 64
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match=r"config\.json: sha256 does not match"):
        load_model(saved)  # an edited config is caught by the manifest first
    refresh_manifest(saved)
    with pytest.raises(WeightsError, match=r"weights do not match config: \d+ shape mismatch: denoiser\."):
        load_model(saved)


def test_corrupt_file_fails_checksum(saved: Path) -> None:
    data = bytearray((saved / WEIGHTS_FILE).read_bytes())
    data[-1] ^= 0xFF
    (saved / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"model\.safetensors: sha256 does not match"):
        load_model(saved)


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors", "sha256sums.txt"])
def test_missing_file_is_named(saved: Path, missing: str) -> None:
    (saved / missing).unlink()
    with pytest.raises(WeightsError, match=f"missing {missing}"):
        load_model(saved)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="model directory not found"):
        load_model(tmp_path / "nope")


def test_bad_config_value_is_reported_with_its_file(saved: Path) -> None:
    config = json.loads((saved / "config.json").read_text())
    config["vae"]["temporal_compression"] = 3
    (saved / "config.json").write_text(json.dumps(config))
    refresh_manifest(saved)
    with pytest.raises(WeightsError, match=r"config\.json: vae\.temporal_compression must be one of"):
        load_model(saved)
