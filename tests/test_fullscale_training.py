"""training.fullscale_f16 on a tiny random DOVE-layout checkpoint: it learns, it runs under torchrun
(gloo, 2 ranks), gradient checkpointing changes no gradient, and bad input fails clearly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLCogVideoX
from safetensors.torch import load_file

from models.fullscale.checkpoint import F16_FILE, CheckpointError, load_checkpoint
from models.fullscale.configs import TINY_VAE
from models.fullscale.f16_decoder import CogVideoXF16Decoder
from tests.media import make_test_clip
from tests.support.fullscale import make_tiny_checkpoint
from tests.support.ports import free_port
from training.fullscale_f16 import (
    LOG_FILE,
    ClipStream,
    F16Head,
    InputError,
    enable_gradient_checkpointing,
    guided_loss,
    load_models,
    main,
    parse_args,
    train,
)
from worker.video_io import iter_frames

REPO = Path(__file__).resolve().parents[1]
FRAMES, CROP = 9, 32
DISTRIBUTED_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_test_clip(
        tmp_path_factory.mktemp("video") / "hr.mp4", frames=24, width=48, height=48, audio=False
    )


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    return make_tiny_checkpoint(tmp_path / "dove")


@pytest.fixture
def single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in DISTRIBUTED_ENV:
        monkeypatch.delenv(name, raising=False)


def arguments(checkpoint: Path, video: Path, *extra: str) -> list[str]:
    return [
        "--checkpoint", str(checkpoint), "--videos", str(video), "--clip-frames", str(FRAMES),
        "--crop", str(CROP), "--batch", "1", "--workers", "0", "--shuffle-buffer", "4", *extra,
    ]  # fmt: skip


def held_batch(video: Path) -> torch.Tensor:
    """The video's first 9 frames, centre crop: (1, 3, 9, 32, 32) in [0, 1]."""
    frames = [frame.image for _, frame in zip(range(FRAMES), iter_frames(video), strict=False)]
    clip = np.stack(frames)[:, 8 : 8 + CROP, 8 : 8 + CROP]
    return torch.from_numpy(clip).permute(3, 0, 1, 2)[None].float() / 255.0


def hr_loss(vae: AutoencoderKLCogVideoX, decoder: CogVideoXF16Decoder, hr: torch.Tensor) -> float:
    with torch.no_grad():
        return guided_loss(vae, F16Head(decoder, vae.num_latent_frames_batch_size), hr, 0.0).item()


def test_a_few_steps_lower_the_loss_and_save_a_loadable_decoder(
    checkpoint: Path, video: Path, single_process: None
) -> None:
    start = load_models(checkpoint)
    hr = held_batch(video)
    before = hr_loss(start.vae, start.head.decoder, hr)
    argv = arguments(checkpoint, video, "--steps", "6", "--lr", "3e-3", "--guidance-fraction", "0.5")
    assert main(argv) == 0

    trained = load_checkpoint(checkpoint)  # --out defaults to the checkpoint: it loads as a whole
    after = hr_loss(trained.vae, trained.f16_decoder, hr)
    assert after < 0.95 * before, (before, after)
    warm = start.head.decoder.state_dict()
    assert any(not torch.equal(v, warm[k]) for k, v in trained.f16_decoder.state_dict().items())
    records = [json.loads(line) for line in (checkpoint / LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(6))
    assert records[0]["guidance_weight"] == 1.0 and records[-1]["guidance_weight"] == 0.0
    assert all(np.isfinite(r["loss"]) and r["seconds"] > 0 for r in records)
    assert not list(checkpoint.glob(".f16_decoder.*"))  # the staging directory is gone


def test_torchrun_two_ranks_with_gloo(checkpoint: Path, video: Path, tmp_path: Path) -> None:
    out = tmp_path / "trained"
    env = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_ENV}
    env |= {"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_port", str(free_port()), "-m", "training.fullscale_f16",
        *arguments(checkpoint, video, "--steps", "2", "--out", str(out), "--bf16",
                   "--gradient-checkpointing", "--save-every", "1"),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    records = [json.loads(line) for line in (out / LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1]  # rank 0 only
    assert done.stdout.count("saved ") == 1
    decoder = load_models(checkpoint).head.decoder
    warm = {k: v.clone() for k, v in decoder.state_dict().items()}
    decoder.load_state_dict(load_file(str(out / F16_FILE)), strict=True)
    assert any(not torch.equal(v, warm[k]) for k, v in decoder.state_dict().items())


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    torch.manual_seed(0)
    vae = AutoencoderKLCogVideoX(**TINY_VAE)
    plain = CogVideoXF16Decoder.from_f8(vae.decoder, dict(vae.config)).train()
    checkpointed = CogVideoXF16Decoder.from_f8(vae.decoder, dict(vae.config)).train()
    enable_gradient_checkpointing(checkpointed)
    calls: list[str] = []
    recompute = checkpointed._gradient_checkpointing_func

    def counted(block: torch.nn.Module, *args: object) -> object:
        calls.append(type(block).__name__)
        return recompute(block, *args)

    checkpointed._gradient_checkpointing_func = counted
    z = torch.randn(1, TINY_VAE["latent_channels"], 3, 2, 2)
    target = torch.rand(1, 3, FRAMES, CROP, CROP) * 2 - 1
    for decoder in (plain, checkpointed):
        (F16Head(decoder, 2)(z) - target).abs().mean().backward()
    assert len(calls) == 1 + len(checkpointed.up_blocks)  # the mid block and every up block
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters(), strict=True):
        assert a.grad is not None and b.grad is not None, name
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_ranks_draw_different_clips(video: Path) -> None:
    first = [next(iter(ClipStream([video], FRAMES, CROP, seed=0, rank=r, world=2, buffer=4))) for r in (0, 1)]
    assert first[0].shape == (FRAMES, CROP, CROP, 3) and first[0].dtype == np.uint8
    assert not np.array_equal(first[0], first[1])
    again = next(iter(ClipStream([video], FRAMES, CROP, seed=0, rank=0, world=2, buffer=4)))
    assert np.array_equal(first[0], again)  # reproducible from (seed, rank)


@pytest.mark.parametrize("frames", ["8", "10", "0"])
def test_clip_frames_must_be_8n_plus_1(
    checkpoint: Path, video: Path, frames: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*arguments(checkpoint, video, "--steps", "1"), "--clip-frames", frames]) == 2
    assert f"--clip-frames must be 8n+1 (9, 17, 25, ...), got {frames}" in capsys.readouterr().err


def test_missing_checkpoint_parts_raise_checkpoint_error(tmp_path: Path, video: Path) -> None:
    with pytest.raises(CheckpointError, match="not a directory"):
        train(parse_args(arguments(tmp_path / "absent", video)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"missing vae/config\.json"):
        train(parse_args(arguments(tmp_path / "empty", video)))


def test_bad_videos_are_named(checkpoint: Path, tmp_path: Path, video: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    with pytest.raises(InputError, match=r"broken\.mp4: not a readable video"):
        train(parse_args(arguments(checkpoint, broken)))
    with pytest.raises(InputError, match=r"missing\.mp4: no such video file"):
        train(parse_args(arguments(checkpoint, tmp_path / "missing.mp4")))
    with pytest.raises(InputError, match="smaller than the 64 px crop"):
        train(parse_args([*arguments(checkpoint, video), "--crop", "64"]))
