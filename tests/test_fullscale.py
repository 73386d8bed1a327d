"""Full-scale FastVSR on CogVideoX modules, with tiny random configurations saved in diffusers layout:
loading (local and S3), the f8 path against diffusers' own CogVideoX pipeline, the f16 decoder built from
the f8 one, shapes, and ONNX export of the components."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from diffusers import CogVideoXPipeline
from safetensors.torch import load_file, save_file

from bench.fullscale import main as fullscale_bench_main
from models.fullscale.checkpoint import (
    PROMPT_FILE,
    CheckpointError,
    load_checkpoint,
    save_f16_decoder,
    save_prompt_embedding,
)
from models.fullscale.export import (
    DenoiserStage,
    EncoderStage,
    F16DecoderStage,
    export_components,
    stage_inputs,
)
from models.fullscale.f16_decoder import CogVideoXF16Decoder, shuffle_and_copy
from models.fullscale.pipeline import TIMESTEP, FullScaleVSR, decode_latents
from models.fullscale.prompt_embedding import main as embed_prompt_main
from tests.media import make_test_clip
from tests.support.fullscale import add_tiny_text_encoder, make_tiny_checkpoint
from tests.support.s3_server import S3Server
from worker.checkpoint_fetch import FetchError, fetch_checkpoint
from worker.fullscale_upscale import main as fullscale_upscale_main
from worker.video_io import iter_frames, probe_video


@pytest.fixture(scope="module", params=["cogvideox-1.5", "cogvideox-1.0"])
def checkpoint(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp(request.param)
    return make_tiny_checkpoint(directory, cogvideox_1_5=request.param == "cogvideox-1.5")


@pytest.fixture(scope="module")
def model(checkpoint: Path) -> FullScaleVSR:
    return load_checkpoint(checkpoint)


def _copy(checkpoint: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(checkpoint, tmp_path / "ckpt"))


def _diffusers_reference(model: FullScaleVSR, lr: torch.Tensor) -> torch.Tensor:
    """DOVE's process_video on diffusers' CogVideoXPipeline (x4 bilinear, f8 encode/decode)."""
    pipe = CogVideoXPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=model.vae,
        transformer=model.transformer,
        scheduler=model.scheduler,
    )
    frames = lr.shape[2]
    up = F.interpolate(lr.permute(0, 2, 1, 3, 4).flatten(0, 1), scale_factor=4, mode="bilinear")
    video = up.unflatten(0, (1, frames)).permute(0, 2, 1, 3, 4) * 2 - 1
    latent = model.vae.encode(video).latent_dist.mode() * model.vae.config.scaling_factor
    patch_t = model.transformer.config.patch_size_t
    copies = latent.shape[2] % patch_t if patch_t else 0
    latent = torch.cat([latent[:, :, :1].repeat(1, 1, copies, 1, 1), latent], dim=2).permute(0, 2, 1, 3, 4)
    _, latent_frames, _, height, width = latent.shape
    rotary = (
        pipe._prepare_rotary_positional_embeddings(height * 8, width * 8, latent_frames, latent.device)
        if model.transformer.config.use_rotary_positional_embeddings
        else None
    )
    timestep = torch.full((1,), TIMESTEP, dtype=torch.long)
    velocity = model.transformer(
        hidden_states=latent,
        encoder_hidden_states=model.prompt_embedding,
        timestep=timestep,
        image_rotary_emb=rotary,
        return_dict=False,
    )[0]
    x0 = pipe.scheduler.get_velocity(velocity, latent, timestep)[:, copies:]
    return (pipe.decode_latents(x0) * 0.5 + 0.5).clamp(0, 1)


@torch.no_grad()
def test_the_f8_baseline_equals_diffusers_cogvideox_pipeline(model: FullScaleVSR) -> None:
    lr = torch.rand(1, 3, 9, 16, 24, generator=torch.Generator().manual_seed(1))
    ours = model(lr, "baseline")
    reference = _diffusers_reference(model, lr)
    assert ours.shape == reference.shape == (1, 3, 9, 64, 96)
    assert (ours - reference).abs().max() < 1e-5
    assert reference.std() > 0.01  # random weights, but not a constant picture


@pytest.mark.parametrize("latent_frames", [3, 4])
@torch.no_grad()
def test_decode_latents_equals_the_vae_decode(model: FullScaleVSR, latent_frames: int) -> None:
    z = torch.randn(1, 4, latent_frames, 4, 6, generator=torch.Generator().manual_seed(2))
    assert torch.equal(decode_latents(model.vae.decoder, z), model.vae.decode(z).sample)


@torch.no_grad()
def test_the_f16_decoder_is_the_f8_trunk_with_a_pixel_shuffle_head(model: FullScaleVSR) -> None:
    f8, f16 = model.vae.decoder, model.f16_decoder
    assert isinstance(f16, CogVideoXF16Decoder)
    assert f16.state_dict().keys() == f8.state_dict().keys()
    assert all(
        torch.equal(a, b) for a, b in zip(f16.state_dict().values(), f8.state_dict().values(), strict=True)
    )
    seen: list[torch.Tensor] = []
    hook = f8.conv_out.register_forward_hook(lambda _m, args, _o: seen.append(args[0]))
    z = torch.randn(1, 4, 2, 4, 6, generator=torch.Generator().manual_seed(3))
    f8_video, _ = f8(z)
    hook.remove()
    trunk, _ = f16.trunk(z)
    assert torch.equal(trunk, seen[0])  # the trunk's features are the f8 decoder's, exactly
    f16_video, _ = f16(z)
    assert f16_video.shape[:3] == f8_video.shape[:3]
    assert f16_video.shape[3:] == (2 * f8_video.shape[3], 2 * f8_video.shape[4])


def test_shuffle_and_copy_rearranges_then_replicates() -> None:
    x = torch.arange(2 * 8 * 3 * 2 * 5, dtype=torch.float32).reshape(2, 8, 3, 2, 5)
    y = shuffle_and_copy(x)
    assert y.shape == (2, 8, 3, 4, 10)
    for c in range(2):
        for a in range(2):
            for b in range(2):  # PixelShuffle: out[c, 2i + a, 2j + b] = in[4c + 2a + b, i, j]
                assert torch.equal(y[:, c, :, a::2, b::2], x[:, 4 * c + 2 * a + b])
    assert torch.equal(y[:, :2], y[:, 2:4]) and torch.equal(y[:, :2], y[:, 6:])  # copied x4
    with pytest.raises(ValueError, match="multiple of 4"):
        shuffle_and_copy(torch.zeros(1, 6, 1, 2, 2))


@torch.no_grad()
def test_fastvsr_pads_crops_and_uses_a_quarter_of_the_tokens(model: FullScaleVSR) -> None:
    tokens: dict[str, tuple[int, ...]] = {}
    lr = torch.rand(1, 3, 6, 21, 30, generator=torch.Generator().manual_seed(4))  # odd size, 6 frames
    for pipeline in ("fastvsr", "baseline"):
        hook = model.transformer.register_forward_pre_hook(
            lambda _m, _a, kw, p=pipeline: tokens.__setitem__(p, tuple(kw["hidden_states"].shape)),
            with_kwargs=True,
        )
        out = model(lr, pipeline)
        hook.remove()
        assert out.shape == (1, 3, 6, 84, 120)
        assert out.min() >= 0.0 and out.max() <= 1.0
    fast, base = tokens["fastvsr"], tokens["baseline"]
    assert fast[:3] == base[:3]  # same frames and channels
    assert base[3] * base[4] == 4 * fast[3] * fast[4]  # 4x fewer latent positions


def test_a_trained_f16_decoder_is_loaded(checkpoint: Path, model: FullScaleVSR, tmp_path: Path) -> None:
    directory = _copy(checkpoint, tmp_path)
    trained = CogVideoXF16Decoder.from_f8(model.vae.decoder, dict(model.vae.config))
    with torch.no_grad():
        trained.conv_out.conv.weight.mul_(-1.0)
    save_f16_decoder(directory, trained)
    loaded = load_checkpoint(directory)
    assert torch.equal(loaded.f16_decoder.conv_out.conv.weight, trained.conv_out.conv.weight)
    lr = torch.rand(1, 3, 1, 8, 8)
    with torch.no_grad():
        assert not torch.allclose(loaded(lr), model(lr))
        assert torch.equal(loaded(lr, "baseline"), model(lr, "baseline"))  # the f8 path is untouched
    tensors = load_file(str(directory / "f16_decoder" / "model.safetensors"))
    tensors.pop("conv_out.conv.bias")
    save_file(tensors, str(directory / "f16_decoder" / "model.safetensors"))
    with pytest.raises(CheckpointError, match="does not match the VAE's decoder"):
        load_checkpoint(directory)


def test_broken_checkpoints_say_what_is_wrong(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a directory"):
        load_checkpoint(tmp_path / "nowhere")
    directory = _copy(checkpoint, tmp_path)
    (directory / PROMPT_FILE).unlink()
    with pytest.raises(CheckpointError, match=r"missing prompt_embedding.safetensors; make it once with"):
        load_checkpoint(directory)
    save_prompt_embedding(directory, torch.zeros(1, 8, 7))
    with pytest.raises(CheckpointError, match=r"shape \(1, 8, 7\), expected \(1, tokens, 32\)"):
        load_checkpoint(directory)
    (directory / "vae" / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"missing vae/config\.json"):
        load_checkpoint(directory)


@pytest.mark.parametrize(("frames", "height", "width"), [(9, 16, 24), (5, 12, 20)])
def test_onnx_export_of_the_components(
    model: FullScaleVSR, tmp_path: Path, frames: int, height: int, width: int
) -> None:
    paths = export_components(model, tmp_path, frames, height, width)
    inputs = stage_inputs(model, frames, height, width)
    g = torch.Generator().manual_seed(5)
    stages = {
        "encoder": EncoderStage(model),
        "denoiser": DenoiserStage(model),
        "f16_decoder": F16DecoderStage(model),
    }
    for name, stage in stages.items():
        example = [torch.randn(t.shape, generator=g) if i == 0 else t for i, t in enumerate(inputs[name])]
        session = ort.InferenceSession(str(paths[name]), providers=["CPUExecutionProvider"])
        feeds = {arg.name: t.numpy() for arg, t in zip(session.get_inputs(), example, strict=True)}
        (got,) = session.run(None, feeds)
        with torch.no_grad():  # diffusers' own modules, eager, with no export-time substitutions
            want = stage(*example).numpy()
        assert got.shape == want.shape
        assert np.abs(got - want).max() < 1e-4 * max(1.0, float(np.abs(want).max())), name
        assert np.abs(want).max() > 0, name


def test_checkpoint_from_s3(
    checkpoint: Path, model: FullScaleVSR, s3_server: S3Server, tmp_path: Path
) -> None:
    client = s3_server.client()
    bucket = f"ckpt-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    for path in checkpoint.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), bucket, f"dove/tiny/{path.relative_to(checkpoint)}")
    cache = tmp_path / "cache"
    local = fetch_checkpoint(f"s3://{bucket}/dove/tiny", cache, client)
    assert local == cache / bucket / "dove" / "tiny"
    lr = torch.rand(1, 3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(load_checkpoint(local)(lr), model(lr))
    weights = local / "vae" / "diffusion_pytorch_model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert fetch_checkpoint(f"s3://{bucket}/dove/tiny/", cache, client) == local
    assert weights.stat().st_mtime_ns == stamp  # already there: not downloaded again
    assert not list(local.rglob("*.part"))
    assert fetch_checkpoint(checkpoint, cache) == checkpoint  # a local path is used as it is
    with pytest.raises(FetchError, match="no objects under this prefix"):
        fetch_checkpoint(f"s3://{bucket}/missing", cache, client)
    with pytest.raises(FetchError, match="cannot list the checkpoint"):
        fetch_checkpoint("s3://no-such-bucket-here/x", cache, client)
    with pytest.raises(FetchError, match="not an s3://bucket/prefix"):
        fetch_checkpoint("s3://UPPER/x", cache, client)


def test_the_empty_prompt_embedding_is_made_once_and_stored(checkpoint: Path, tmp_path: Path) -> None:
    from transformers import T5EncoderModel

    directory = _copy(checkpoint, tmp_path)
    (directory / PROMPT_FILE).unlink()
    with pytest.raises(CheckpointError, match="missing text_encoder"):
        embed_prompt_main([str(directory)])
    add_tiny_text_encoder(directory)
    embed_prompt_main([str(directory)])
    stored = load_file(str(directory / PROMPT_FILE))["prompt_embedding"]
    ids = torch.tensor([[1, 0, 0, 0, 0, 0, 0, 0]])  # "" -> </s>, then padding to max_text_seq_length
    with torch.no_grad():
        expected = T5EncoderModel.from_pretrained(directory / "text_encoder").eval()(ids)[0]
    assert stored.shape == (1, 8, 32) and torch.allclose(stored, expected)
    loaded = load_checkpoint(directory)
    assert torch.equal(loaded.prompt_embedding, stored)


def test_operator_upscale_of_a_video_file(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = make_test_clip(tmp_path / "in.mp4", frames=11, width=24, height=16)
    output, bad = tmp_path / "out.mp4", tmp_path / "bad.mp4"
    common = ["--device", "cpu", "--dtype", "float32", "--preset", "ultrafast"]
    run = [str(checkpoint), str(source)]
    assert fullscale_upscale_main([*run, str(output), "--chunk-frames", "9", *common]) == 0
    info = probe_video(output)
    assert (info.width, info.height) == (96, 64)
    assert [f.image.shape for f in iter_frames(output)] == [(64, 96, 3)] * 11  # two chunks: 9 + 2 frames
    assert info.audio_codecs == probe_video(source).audio_codecs != ()
    assert "11 frames" in capsys.readouterr().out
    assert fullscale_upscale_main([*run, str(bad), "--chunk-frames", "8", *common]) == 1
    assert "chunk_frames must be 8n+1" in capsys.readouterr().err and not bad.exists()
    assert fullscale_upscale_main([str(tmp_path / "none"), str(source), str(bad), *common]) == 1
    assert "bad_checkpoint" in capsys.readouterr().err and not bad.exists()


def test_the_gpu_benchmark_script_runs_tiny_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "fullscale.json"
    sizes = ["--frames", "9", "--height", "16", "--width", "24", "--repeats", "1"]
    fullscale_bench_main(["--device", "cpu", "--dtype", "float32", "--tiny", *sizes, "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["output"] == [9, 64, 96]
    assert set(result["median_s"]) == {"fastvsr", "baseline"} and result["ratio"] > 0
    assert set(result["runs"]["fastvsr"][0]) == {"encode", "denoise", "decode", "total"}
