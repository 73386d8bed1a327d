"""ONNX export of the full-scale components for one clip shape (static shapes, TensorRT-ready).

    python -m models.fullscale.export CHECKPOINT_DIR --out ONNX_DIR [--frames 33 --height 180 --width 320]

writes encoder.onnx (x2-interpolated clip in [-1, 1] -> the posterior's moments), denoiser.onnx
(scaled latent (B, F, C, h, w) [+ rotary cos, sin] -> v-prediction) and f16_decoder.onnx (one batch of
latent frames -> RGB, 16x). The TorchScript exporter loses diffusers' in-place `.data` write that
builds CogVideoX 1.0's sincos positional table for a new size, so `static_positional_embedding` puts
that table, computed eagerly, in place for the export (tests prove the export equals diffusers).
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from diffusers import CogVideoXTransformer3DModel
from torch import nn

from models.fullscale.checkpoint import load_checkpoint
from models.fullscale.pipeline import TIMESTEP, FullScaleVSR, pad_clip, rotary_embedding

OPSET = 18


@contextmanager
def static_positional_embedding(
    transformer: CogVideoXTransformer3DModel, latent_frames: int, height: int, width: int
) -> Iterator[None]:
    """Within: the patch embedding's table is the one for this latent shape, read from a buffer."""
    embed = transformer.patch_embed
    if not embed.use_positional_embeddings or embed.use_learned_positional_embeddings:
        yield
        return
    saved = (embed.sample_height, embed.sample_width, embed.sample_frames, embed.pos_embedding)
    frames = (latent_frames - 1) * embed.temporal_compression_ratio + 1
    embed.sample_height, embed.sample_width, embed.sample_frames = height, width, frames
    embed.pos_embedding = embed._get_positional_embeddings(height, width, frames)
    try:
        yield
    finally:
        embed.sample_height, embed.sample_width, embed.sample_frames, embed.pos_embedding = saved


class EncoderStage(nn.Module):
    def __init__(self, model: FullScaleVSR) -> None:
        super().__init__()
        self.encoder = model.vae.encoder

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.encoder(video)[0]


class DenoiserStage(nn.Module):
    def __init__(self, model: FullScaleVSR) -> None:
        super().__init__()
        self.transformer = model.transformer
        self.register_buffer("prompt", model.prompt_embedding)

    def forward(self, latent: torch.Tensor, *rotary: torch.Tensor) -> torch.Tensor:
        timestep = torch.full((latent.shape[0],), TIMESTEP, dtype=torch.long, device=latent.device)
        return self.transformer(
            hidden_states=latent,
            encoder_hidden_states=self.prompt.expand(latent.shape[0], -1, -1),
            timestep=timestep,
            image_rotary_emb=tuple(rotary) or None,
            return_dict=False,
        )[0]


class F16DecoderStage(nn.Module):
    def __init__(self, model: FullScaleVSR) -> None:
        super().__init__()
        self.decoder = model.f16_decoder

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(latent)[0]


def stage_inputs(
    model: FullScaleVSR, frames: int, height: int, width: int
) -> dict[str, tuple[torch.Tensor, ...]]:
    """Example inputs of each stage for an LR clip of frames x height x width (padded as inference pads)."""
    lr, _ = pad_clip(torch.zeros(1, 3, frames, height, width), 2)
    clip = torch.zeros(1, 3, lr.shape[2], 2 * lr.shape[3], 2 * lr.shape[4])
    latent_frames = (clip.shape[2] - 1) // model.vae.config.temporal_compression_ratio + 1
    patch_t = model.transformer.config.patch_size_t
    dit_frames = latent_frames + (latent_frames % patch_t if patch_t else 0)
    h, w = clip.shape[3] // 8, clip.shape[4] // 8
    latent = torch.zeros(1, dit_frames, model.vae.config.latent_channels, h, w)
    rotary = rotary_embedding(model.transformer, dit_frames, h, w) or ()
    batch = model.vae.num_latent_frames_batch_size
    return {
        "encoder": (clip,),
        "denoiser": (latent, *rotary),
        "f16_decoder": (torch.zeros(1, model.vae.config.latent_channels, batch, h, w),),
    }


def export_components(
    model: FullScaleVSR, out: Path, frames: int, height: int, width: int
) -> dict[str, Path]:
    """encoder.onnx, denoiser.onnx and f16_decoder.onnx under `out`, for this LR clip shape."""
    out.mkdir(parents=True, exist_ok=True)
    inputs = stage_inputs(model, frames, height, width)
    stages = {
        "encoder": EncoderStage(model),
        "denoiser": DenoiserStage(model),
        "f16_decoder": F16DecoderStage(model),
    }
    paths = {}
    latent = inputs["denoiser"][0]
    with static_positional_embedding(model.transformer, latent.shape[1], latent.shape[3], latent.shape[4]):
        for name, stage in stages.items():
            names = ["input", "rotary_cos", "rotary_sin"][: len(inputs[name])]
            paths[name] = out / f"{name}.onnx"
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # TracerWarnings on diffusers' shape checks
                torch.onnx.export(
                    stage.eval(),
                    inputs[name],
                    str(paths[name]),
                    opset_version=OPSET,
                    dynamo=False,
                    input_names=names,
                    output_names=["output"],
                )
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--height", type=int, default=180, help="LR height")
    parser.add_argument("--width", type=int, default=320, help="LR width")
    args = parser.parse_args(argv)
    for path in export_components(
        load_checkpoint(args.checkpoint), args.out, args.frames, args.height, args.width
    ).values():
        print(path)


if __name__ == "__main__":
    main()
