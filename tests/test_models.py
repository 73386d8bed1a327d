"""The model: shapes, causality, streaming equals whole clip, MACs, asymmetric decoder structure."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from models.blocks import batch_to_frames, conv3d, frames_to_batch
from models.config import ConfigError, VAEConfig, VSRConfig, load_named_config
from models.macs import count_macs
from models.resampling import bicubic_upscale_by_conv, cubic_phase_taps, fold_channel_copies
from models.sr_model import VSRModel, resize_frames
from models.vae import Decoder, Encoder
from tests.conftest import lr_conditioned_model, replace_vae, tiny_config, tiny_model
from worker.upscaler import ClipUpscaler


@pytest.mark.parametrize("pipeline", ["fastvsr", "baseline"])
@pytest.mark.parametrize(("frames", "height", "width"), [(1, 8, 8), (5, 16, 24), (3, 32, 16)])
def test_pipeline_output_is_4x(pipeline: str, frames: int, height: int, width: int) -> None:
    model = tiny_model(pipeline)
    with torch.no_grad():
        out = model(torch.rand(1, 3, frames, height, width))
    assert out.shape == (1, 3, frames, 4 * height, 4 * width)
    assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("pipeline", ["fastvsr", "baseline"])
@pytest.mark.parametrize(("frames", "height", "width"), [(7, 45, 79), (4, 178, 316), (2, 13, 9)])
def test_odd_sizes_are_padded_then_cropped(pipeline: str, frames: int, height: int, width: int) -> None:
    upscaler = ClipUpscaler(tiny_model(pipeline), chunk_frames=3)
    clip = [
        np.random.default_rng(i).integers(0, 256, (height, width, 3), dtype=np.uint8) for i in range(frames)
    ]
    out = list(upscaler.upscale(clip))
    assert len(out) == frames
    assert all(f.shape == (4 * height, 4 * width, 3) and f.dtype == np.uint8 for f in out)


def test_latent_and_decoder_strides() -> None:
    """The encoder is f8; the f16 decoder maps the same latent grid to twice the f8 decoder's size."""
    config = tiny_config().vae
    latent_grid = Encoder(config)(torch.rand(1, 3, 1, 32, 48))[0].shape[-2:]
    assert tuple(latent_grid) == (4, 6)
    latent = torch.rand(1, config.latent_channels, 2, 4, 6)
    assert Decoder(config, "f8")(latent).shape[-2:] == (32, 48)
    assert Decoder(config, "f16")(latent).shape[-2:] == (64, 96)


def test_f16_decoder_warm_starts_from_f8_weights_one_to_one() -> None:
    config = tiny_config().vae
    f8, f16 = Decoder(config, "f8"), Decoder(config, "f16")
    f16.load_state_dict(f8.state_dict(), strict=True)  # identical names and shapes
    latent = torch.rand(1, config.latent_channels, 1, 2, 3)
    with torch.no_grad():
        assert not torch.equal(f8(latent), f16(latent)[..., ::2, ::2])  # the heads differ after the trunk


@pytest.mark.parametrize("temporal_compression", [1, 4])
def test_encoder_is_causal_in_time(temporal_compression: int) -> None:
    """Latent frame j never depends on input frames after j * tc."""
    torch.manual_seed(0)
    encoder = Encoder(replace_vae(tiny_config(), temporal_compression=temporal_compression).vae).eval()
    frames = 1 + 3 * temporal_compression if temporal_compression > 1 else 6
    video = torch.rand(1, 3, frames, 16, 16)
    with torch.no_grad():
        base = encoder(video)[0]
        for cut in range(1, frames):
            changed = video.clone()
            changed[:, :, cut:] = torch.rand_like(changed[:, :, cut:])
            latent = encoder(changed)[0]
            safe = (cut - 1) // temporal_compression + 1  # latent frames j with j * tc < cut
            assert torch.allclose(latent[:, :, :safe], base[:, :, :safe], atol=1e-6), f"cut at {cut}"
            assert not torch.allclose(latent[:, :, safe:], base[:, :, safe:], atol=1e-4)


def test_whole_pipeline_is_causal_without_temporal_compression() -> None:
    model = tiny_model("fastvsr")
    clip = torch.rand(1, 3, 6, 8, 8)
    changed = clip.clone()
    changed[:, :, 4:] = torch.rand_like(changed[:, :, 4:])
    with torch.no_grad():
        a, b = model(clip), model(changed)
    assert torch.allclose(a[:, :, :4], b[:, :, :4], atol=1e-6)
    assert not torch.allclose(a[:, :, 4:], b[:, :, 4:], atol=1e-4)


@pytest.mark.parametrize("pipeline", ["fastvsr", "baseline"])
@pytest.mark.parametrize(
    ("temporal_compression", "frames", "chunk"), [(1, 11, 3), (1, 7, 1), (4, 23, 4), (4, 18, 8)]
)
def test_chunked_processing_equals_whole_clip(
    pipeline: str, temporal_compression: int, frames: int, chunk: int
) -> None:
    model = tiny_model(pipeline, temporal_compression)
    rng = np.random.default_rng(1)
    clip = [rng.integers(0, 256, (12, 20, 3), dtype=np.uint8) for _ in range(frames)]
    whole = np.stack(list(ClipUpscaler(model, chunk_frames=10_000).upscale(clip)))
    chunked = np.stack(list(ClipUpscaler(model, chunk_frames=chunk).upscale(clip)))
    assert whole.shape == chunked.shape == (frames, 48, 80, 3)
    assert np.abs(whole.astype(int) - chunked.astype(int)).max() <= 1  # uint8 rounding of ~1e-6 differences
    assert whole.std() > 10  # the random model produces a non-trivial picture


def test_upscaler_streams_with_bounded_lookahead() -> None:
    """Frames are pulled lazily, one chunk at a time: memory cannot grow with the video's length."""
    pulled = 0

    def endless_video() -> Iterator[np.ndarray]:
        nonlocal pulled
        while True:
            pulled += 1
            yield np.full((8, 8, 3), pulled % 256, dtype=np.uint8)

    upscaler = ClipUpscaler(tiny_model(), chunk_frames=4)
    outputs = list(itertools.islice(upscaler.upscale(endless_video()), 12))
    assert len(outputs) == 12
    assert pulled <= 12 + 4 + 1  # at most one chunk (plus the first chunk's extra frame) ahead


def test_streaming_cache_matches_whole_clip_in_float() -> None:
    model = tiny_model("fastvsr", temporal_compression=4)
    clip = torch.rand(1, 3, 13, 8, 16)
    with torch.no_grad():
        whole = model(clip)
        cache: dict[str, torch.Tensor] = {}
        parts = [model(clip[:, :, :5], cache), model(clip[:, :, 5:9], cache), model(clip[:, :, 9:], cache)]
    assert torch.allclose(torch.cat(parts, dim=2), whole, atol=1e-5)


def test_untrained_default_model_equals_bicubic() -> None:
    """Zero-initialised heads make an untrained model an exact bicubic upscaler (honest demo baseline)."""
    model = VSRModel(load_named_config("fastvsr-tiny")).eval()
    clip = torch.rand(1, 3, 3, 16, 16)
    with torch.no_grad():
        out = model(clip)
        latent = model.encode(clip)
        assert torch.equal(model.denoise(latent), latent)  # the denoiser starts as the identity
    assert torch.allclose(out, resize_frames(clip, 4, "bicubic").clamp(0, 1), atol=1e-6)


def test_fastvsr_needs_far_fewer_macs_than_baseline_at_720p() -> None:
    """Same widths and modules; 180x320 -> 720x1280, 9 frames (LR padded to 184 rows as the upscaler does)."""
    config = load_named_config("fastvsr-tiny")
    fast = count_macs(config, 9, 184, 320)
    base = count_macs(config.with_pipeline("baseline"), 9, 180, 320)
    assert base.total / fast.total >= 3.5
    for component in ("encoder", "denoiser", "decoder"):
        assert getattr(base, component) > 3 * getattr(fast, component), component
    assert fast.total == fast.encoder + fast.denoiser + fast.decoder > 0


def test_macs_scale_with_frames_and_pixels() -> None:
    config = tiny_config()
    one = count_macs(config, 1, 16, 16).total
    assert count_macs(config, 2, 16, 16).total == pytest.approx(2 * one, rel=0.05)
    assert count_macs(config, 1, 32, 32).total == pytest.approx(4 * one, rel=0.15)


def test_decoders_see_the_same_latent_grid_size_ratio() -> None:
    config = tiny_config()
    for pipeline, expected in (("fastvsr", 16), ("baseline", 8)):
        assert config.with_pipeline(pipeline).decoder_stride == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"vae": {"temporal_compression": 2}}, "temporal_compression"),
        ({"vae": {"block_out_channels": [8, 8, 8]}}, "f8 encoder"),
        ({"pipeline": "dove"}, "pipeline"),
        ({"denoiser": {"hidden_size": 30, "num_heads": 4}}, "divisible"),
        ({"colour": "blue"}, "unknown config keys: colour"),
        ({"lr_conditioning_levels": 0}, "lr_conditioning_levels must be between 1 and 4"),
        ({"lr_conditioning_levels": 3, "vae": {"temporal_compression": 4}}, "between 1 and 2"),
        ({"vae": {"norm": "batch"}}, "vae.norm must be one of"),
    ],
)
def test_config_rejects_bad_values(change: dict[str, object], message: str) -> None:
    data = tiny_config().to_dict()
    for key, value in change.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match=message):
        VSRConfig.from_dict(data)


def test_config_accepts_temporal_compression_8_and_round_trips() -> None:
    config = replace_vae(tiny_config(), temporal_compression=8)
    assert VSRConfig.from_json(config.to_json()) == config
    model = VSRModel(config).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 9, 8, 8)).shape == (1, 3, 9, 32, 32)


def test_named_config_unknown() -> None:
    with pytest.raises(ConfigError, match=r"available: .*fastvsr-tiny"):
        load_named_config("nope")


def test_interpolation_matches_torch_bicubic() -> None:
    model = tiny_model()
    clip = torch.rand(1, 3, 2, 8, 8)
    expected = F.interpolate(clip[:, :, 1], scale_factor=2.0, mode="bicubic", align_corners=False) * 2 - 1
    assert torch.allclose(model.interpolate(clip)[:, :, 1], expected)
    assert isinstance(VAEConfig().spatial_compression, int)


@pytest.mark.parametrize("shape", [(1, 32, 11, 46, 80), (1, 3, 11, 92, 160), (2, 8, 5, 16, 24)])
def test_cpu_conv3d_goes_through_onednn_and_equals_the_standard_call(shape: tuple[int, ...]) -> None:
    """Shapes where PyTorch's heuristic would pick its slow native conv3d (N*C*T*H < 20480)."""
    conv = torch.nn.Conv3d(shape[1], 16, 3, padding=(0, 1, 1))
    x = torch.randn(shape)
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as trace:
        fast = conv3d(conv, x)
    kernels = {event.key for event in trace.key_averages()}
    assert "aten::mkldnn_convolution" in kernels and "aten::slow_conv3d_forward" not in kernels
    with torch.no_grad():
        standard = conv(x)
    assert fast.shape == standard.shape
    assert torch.allclose(fast, standard, atol=1e-4, rtol=1e-4)
    y = conv3d(conv, x.requires_grad_())  # training keeps the standard (differentiable) call
    y.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


@pytest.mark.parametrize("norm", ["frame_group", "pixel"])
def test_cpu_inference_runs_channels_last_and_equals_the_standard_path(norm: str) -> None:
    """Streaming inference (no grad) keeps the VAE's activations channels-last; with grad enabled the
    model takes the standard calls; both give the same clip, chunk by chunk."""
    model = lr_conditioned_model(levels=2, seed=3, norm=norm)  # type: ignore[arg-type]
    clip = torch.rand(1, 3, 5, 16, 24)

    def stream() -> torch.Tensor:
        cache: dict[str, torch.Tensor] = {}
        return torch.cat([model(clip[:, :, :2], cache), model(clip[:, :, 2:], cache)], dim=2)

    with torch.no_grad():
        fast = stream()
        first_features = model.encoder.conv_in(model.interpolate(clip))
    with torch.enable_grad():
        standard = stream().detach()
    assert first_features.is_contiguous(memory_format=torch.channels_last_3d)
    assert not first_features.is_contiguous()
    assert torch.allclose(fast, standard, atol=1e-5), (fast - standard).abs().max()


def test_f16_head_equals_the_paper_form_pixel_shuffle_copy_x4_conv_out() -> None:
    """The decoder folds the x4 channel copy into conv_out's kernel; the output is the drawn structure's."""
    torch.manual_seed(0)
    decoder = Decoder(VAEConfig(block_out_channels=(8, 16), latent_channels=4, norm_groups=2), head="f16")
    for parameter in decoder.parameters():
        torch.nn.init.normal_(parameter, std=0.2)
    latent = torch.randn(1, 4, 3, 5, 6)
    captured: list[torch.Tensor] = []
    decoder.norm_out.register_forward_hook(lambda _m, _i, out: captured.append(F.silu(out)))
    with torch.no_grad():
        folded = decoder(latent)
        copied = F.pixel_shuffle(frames_to_batch(captured[0]), 2).repeat_interleave(4, dim=1)
        padded = torch.cat([copied[:1].expand(2, -1, -1, -1), copied])  # causal: first frame repeated
        drawn = decoder.conv_out.conv(batch_to_frames(padded, 1))
    assert folded.shape == drawn.shape == (1, 3, 3, 20, 24)  # two levels: x2, then the head x2
    assert torch.allclose(folded, drawn, atol=1e-5), (folded - drawn).abs().max()
    assert fold_channel_copies(decoder.conv_out.conv.weight, 4).shape == (3, 2, 3, 3, 3)


@pytest.mark.parametrize("factor", [2, 4])
@pytest.mark.parametrize(("height", "width"), [(1, 1), (3, 7), (18, 32)])
def test_bicubic_as_a_conv_equals_torch_interpolate(factor: int, height: int, width: int) -> None:
    """The exported graphs' bicubic (edge pad, phase conv, PixelShuffle) is PyTorch's, borders included."""
    frames = torch.rand(2, 3, height, width) * 2 - 0.5
    expected = F.interpolate(frames, scale_factor=float(factor), mode="bicubic", align_corners=False)
    got = bicubic_upscale_by_conv(frames, factor)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=2e-6), (got - expected).abs().max()
    assert torch.allclose(cubic_phase_taps(factor).sum(1), torch.ones(factor, dtype=torch.float64))


@pytest.mark.parametrize("levels", [2, 4])
def test_multi_level_lr_conditioning_streams_like_the_whole_clip(levels: int) -> None:
    model = lr_conditioned_model(levels)
    assert len(model.decoder.lr_in_deep) == levels - 1
    clip = torch.rand(1, 3, 7, 16, 24)
    with torch.no_grad():
        whole = model(clip)
        cache: dict[str, torch.Tensor] = {}
        parts = [model(clip[:, :, :1], cache), model(clip[:, :, 1:4], cache), model(clip[:, :, 4:], cache)]
        one_level = lr_conditioned_model(1)(clip)
    assert whole.shape == (1, 3, 7, 64, 96)
    assert torch.allclose(torch.cat(parts, dim=2), whole, atol=1e-5)
    assert (whole - one_level).abs().max() > 1e-3  # the coarser levels' guide changes the output


def test_multi_level_lr_conditioning_with_temporal_compression_streams() -> None:
    model = lr_conditioned_model(2, temporal_compression=4)
    clip = torch.rand(1, 3, 9, 8, 16)
    with torch.no_grad():
        whole = model(clip)
        cache: dict[str, torch.Tensor] = {}
        parts = [model(clip[:, :, :5], cache), model(clip[:, :, 5:], cache)]
    assert torch.allclose(torch.cat(parts, dim=2), whole, atol=1e-5)


def test_coarse_guide_reaches_a_level_space_to_depth() -> None:
    """The guide enters the latent-grid level as PixelUnshuffle(8): every encoder-input pixel counts."""
    model = lr_conditioned_model(4)
    clip = torch.rand(1, 3, 1, 16, 16)
    changed = clip.clone()
    changed[..., 5, 3] += 0.5  # one LR pixel
    captured: list[torch.Tensor] = []
    hook = model.decoder.lr_in_deep[0].register_forward_hook(lambda _m, _i, out: captured.append(out))
    with torch.no_grad():
        model(clip), model(changed)
    hook.remove()
    assert captured[0].shape[-2:] == (4, 4)  # 32 / 8: the latent grid
    assert (captured[0] - captured[1]).abs().max() > 1e-4


@pytest.mark.parametrize("norm", ["frame_group", "pixel"])
def test_pixel_norm_makes_encoder_and_decoder_tile_invariant(norm: str) -> None:
    """With per-pixel normalisation a crop's output equals the whole frame's output on the same pixels,
    away from the crop's edge (beyond the convs' reach); per-frame GroupNorm statistics differ."""
    model = lr_conditioned_model(4, norm=norm)  # type: ignore[arg-type]
    clip = torch.rand(1, 3, 3, 32, 96)
    crop = clip[..., :64]  # LR columns 0..64: latent columns 0..16 (the encoder sees the LR x2)
    with torch.no_grad():
        latent, latent_crop = model.encode(clip), model.encode(crop)
        video, video_crop = model.decode(latent, clip), model.decode(latent[..., :16], crop)
    kept_latent, kept_video = 4, 4 * 16  # columns far enough from the crop's right edge
    latent_gap = (latent[..., :kept_latent] - latent_crop[..., :kept_latent]).abs().max()
    video_gap = (video[..., :kept_video] - video_crop[..., :kept_video]).abs().max()
    if norm == "pixel":
        assert latent_gap < 1e-5 and video_gap < 1e-5, (latent_gap, video_gap)
    else:
        assert latent_gap > 1e-3 and video_gap > 1e-3, (latent_gap, video_gap)
