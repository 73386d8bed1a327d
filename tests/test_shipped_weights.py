"""The shipped fastvsr-tiny weights: present, small, checksummed, documented, and better than bicubic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from skimage import data

from evaluation.runner import BICUBIC, EvalSettings, evaluate_model
from models.registry import resolve_model, shipped_weights
from vsr.demo import CLIP_SIZE, panned_frames
from worker.upscaler import ClipUpscaler

MAX_WEIGHTS_BYTES = 20 * 1024 * 1024


def test_fastvsr_tiny_ships_trained_weights_with_a_model_card() -> None:
    directory = shipped_weights("fastvsr-tiny")
    assert directory is not None
    assert (directory / "model.safetensors").stat().st_size <= MAX_WEIGHTS_BYTES
    card = (directory / "MODEL_CARD.md").read_text().lower()
    for needle in ("vsr train", "free energy", "lower bound", "sam2_bedroom", "bicubic"):
        assert needle in card, needle
    loaded = resolve_model()
    assert loaded.trained and "shipped weights" in loaded.description


def test_shipped_weights_upscale_the_demo_clip() -> None:
    frames = panned_frames(data.coffee(), 3, CLIP_SIZE)
    model = resolve_model().model
    out = list(ClipUpscaler(model).upscale(frames))
    height, width = frames[0].shape[:2]
    assert [o.shape for o in out] == [(4 * height, 4 * width, 3)] * 3
    lr = torch.from_numpy(frames[1].copy()).permute(2, 0, 1)[None].float() / 255
    bicubic = F.interpolate(lr, scale_factor=4.0, mode="bicubic", align_corners=False).clamp(0, 1)
    bicubic_u8 = (bicubic[0].permute(1, 2, 0) * 255).round().numpy()
    assert np.abs(out[1].astype(float) - bicubic_u8).mean() > 0.5  # the trained head adds detail


def test_shipped_weights_beat_bicubic_on_real_frames(shared_data: Path) -> None:
    report = evaluate_model(
        resolve_model().model,
        shared_data / "sam2_bedroom",
        name="fastvsr-tiny",
        max_frames=5,
        settings=EvalSettings(warp_error=False),
    )
    model, bicubic = report["mean"]["fastvsr-tiny"], report["mean"][BICUBIC]
    assert model["psnr_y"] > bicubic["psnr_y"]
    assert model["ssim_y"] > bicubic["ssim_y"]
