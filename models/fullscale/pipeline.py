"""DOVE's one-step recipe on CogVideoX modules, with FastVSR's f16 decoder or the f8 baseline.

Both pipelines: pad frames to 8n+1 (last frame repeated) and the interpolated size to a multiple of 16
(replicate), bilinear upsampling, [-1, 1], VAE encode (the posterior mean, so inference is
deterministic; DOVE draws a sample), x scaling_factor, the DiT once at timestep 399 with the empty-prompt
embedding, v-prediction -> x0, decode, crop. FastVSR interpolates x2 and decodes with the f16 decoder
(4x fewer latent tokens); the DOVE-style baseline interpolates x4 and decodes with the f8 decoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLCogVideoX, CogVideoXDPMScheduler, CogVideoXTransformer3DModel
from diffusers.models.autoencoders.autoencoder_kl_cogvideox import CogVideoXDecoder3D
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid
from torch import nn

from models.fullscale.f16_decoder import CogVideoXF16Decoder

TIMESTEP = 399
FRAME_GROUP = 8  # frames padded to 8n + 1 (the VAE's 1 + 4k latent layout, in DOVE's stricter form)
SIZE_MULTIPLE = 16  # the interpolated input's height and width
Pipeline = Literal["fastvsr", "baseline"]
INTERPOLATION = {"fastvsr": 2, "baseline": 4}


def decode_latents(decoder: CogVideoXDecoder3D, z: torch.Tensor, frames_per_batch: int = 2) -> torch.Tensor:
    """Decode (B, C, F, h, w) latents `frames_per_batch` latent frames at a time, threading the causal
    conv cache, exactly as AutoencoderKLCogVideoX._decode does (first batch takes the remainder)."""
    frames = z.shape[2]
    batches = max(frames // frames_per_batch, 1)
    remainder = frames % frames_per_batch
    cache = None
    out = []
    for i in range(batches):
        start = frames_per_batch * i + (0 if i == 0 else remainder)
        piece, cache = decoder(z[:, :, start : frames_per_batch * (i + 1) + remainder], conv_cache=cache)
        out.append(piece)
    return torch.cat(out, dim=2)


def rotary_embedding(
    transformer: CogVideoXTransformer3DModel, frames: int, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """CogVideoX's 3D rotary embedding for a (frames, height, width) latent, as diffusers' CogVideoX
    pipeline builds it (1.5, DOVE's base: sliced from the training grid; 1.0: a resize-crop region)."""
    config = transformer.config
    if not config.use_rotary_positional_embeddings:
        return None
    patch, patch_t = config.patch_size, config.patch_size_t
    grid = (height // patch, width // patch)
    base = (config.sample_height // patch, config.sample_width // patch)
    if patch_t is None:
        crops = get_resize_crop_region_for_grid(grid, base[1], base[0])
        return get_3d_rotary_pos_embed(
            config.attention_head_dim, crops, grid, frames, device=transformer.device
        )
    if grid[0] > base[0] or grid[1] > base[1]:
        base = (max(grid[0], base[0]), max(grid[1], base[1]))  # slicing a larger grid keeps the same values
    return get_3d_rotary_pos_embed(
        embed_dim=config.attention_head_dim,
        crops_coords=None,
        grid_size=grid,
        temporal_size=(frames + patch_t - 1) // patch_t,
        grid_type="slice",
        max_size=base,
        device=transformer.device,
    )


@dataclass(frozen=True)
class Padding:
    frames: int
    height: int
    width: int


def pad_clip(lr: torch.Tensor, scale: int) -> tuple[torch.Tensor, Padding]:
    """(B, 3, F, H, W): frames to 8n+1, H and W so that scale x them is a multiple of 16."""
    frames, height, width = lr.shape[2:]
    pad_f = (-(frames - 1)) % FRAME_GROUP
    multiple = SIZE_MULTIPLE // scale
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_f:
        lr = torch.cat([lr, lr[:, :, -1:].expand(-1, -1, pad_f, -1, -1)], dim=2)
    if pad_h or pad_w:
        lr = F.pad(lr, (0, pad_w, 0, pad_h, 0, 0), mode="replicate")
    return lr, Padding(pad_f, pad_h, pad_w)


class FullScaleVSR(nn.Module):
    """LR clip (B, 3, F, H, W) in [0, 1] -> 4x clip (B, 3, F, 4H, 4W) in [0, 1]."""

    def __init__(
        self,
        vae: AutoencoderKLCogVideoX,
        transformer: CogVideoXTransformer3DModel,
        scheduler: CogVideoXDPMScheduler,
        prompt_embedding: torch.Tensor,
        f16_decoder: CogVideoXF16Decoder | None = None,
    ) -> None:
        super().__init__()
        self.vae = vae
        self.transformer = transformer
        self.scheduler = scheduler
        self.f16_decoder = f16_decoder or CogVideoXF16Decoder.from_f8(vae.decoder, dict(vae.config))
        self.register_buffer("prompt_embedding", prompt_embedding, persistent=False)

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """[-1, 1] (B, 3, F, H, W) -> scaled latent (B, 16, F', H/8, W/8), the posterior mean."""
        return self.vae.encode(video).latent_dist.mode() * self.scaling_factor

    def denoise(self, latent: torch.Tensor) -> torch.Tensor:
        """One DiT step at t = 399 on the scaled latent; the v-prediction turned into x0."""
        patch_t = self.transformer.config.patch_size_t
        copies = latent.shape[2] % patch_t if patch_t else 0  # DOVE's rule: repeat the first frame
        if copies:
            latent = torch.cat([latent[:, :, :1].expand(-1, -1, copies, -1, -1), latent], dim=2)
        x_t = latent.permute(0, 2, 1, 3, 4)  # (B, F, C, h, w)
        batch, frames, _, height, width = x_t.shape
        timestep = torch.full((batch,), TIMESTEP, dtype=torch.long, device=x_t.device)
        velocity = self.transformer(
            hidden_states=x_t,
            encoder_hidden_states=self.prompt_embedding.to(x_t.dtype).expand(batch, -1, -1),
            timestep=timestep,
            image_rotary_emb=rotary_embedding(self.transformer, frames, height, width),
            return_dict=False,
        )[0]
        x0 = self.scheduler.get_velocity(velocity, x_t, timestep)  # sqrt(a) x_t - sqrt(1 - a) v
        return x0[:, copies:].permute(0, 2, 1, 3, 4)

    def decode(self, latent: torch.Tensor, pipeline: Pipeline) -> torch.Tensor:
        decoder = self.f16_decoder if pipeline == "fastvsr" else self.vae.decoder
        return decode_latents(decoder, latent / self.scaling_factor, self.vae.num_latent_frames_batch_size)

    def forward(self, lr: torch.Tensor, pipeline: Pipeline = "fastvsr") -> torch.Tensor:
        scale = INTERPOLATION[pipeline]
        frames, height, width = lr.shape[2:]
        padded, _ = pad_clip(lr, scale)
        per_frame = padded.permute(0, 2, 1, 3, 4).flatten(0, 1)
        up = F.interpolate(per_frame, scale_factor=scale, mode="bilinear", align_corners=False)
        up = up.unflatten(0, (padded.shape[0], padded.shape[2])).permute(0, 2, 1, 3, 4)
        latent = self.denoise(self.encode(up * 2.0 - 1.0))
        video = self.decode(latent, pipeline)
        return (video * 0.5 + 0.5).clamp(0, 1)[:, :, :frames, : 4 * height, : 4 * width]
