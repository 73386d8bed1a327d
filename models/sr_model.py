"""The FastVSR and baseline pipelines as one torch module: interpolate -> encode -> denoise -> decode.

    fastvsr:  LR -> interpolate x2 -> f8 encoder -> one-step DiT -> f16 decoder -> 4x output
    baseline: LR -> interpolate x4 -> f8 encoder -> one-step DiT -> f8 decoder  -> 4x output

Inputs are low-res clips (B, 3, T, H, W) in [0, 1] whose sizes are already padded: H and W multiples of
`config.lr_multiple`, and T = 1 + k * tc for a whole clip or a first chunk (later chunks: T = k * tc).
`models.padding` pads and crops arbitrary sizes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.blocks import StreamCache, batch_to_frames, frames_to_batch
from models.config import OUTPUT_SCALE, VSRConfig
from models.denoiser import OneStepDenoiser
from models.resampling import bicubic_upscale_by_conv
from models.vae import Decoder, Encoder


def resize_frames(clip: torch.Tensor, factor: int, mode: str) -> torch.Tensor:
    """Per-frame interpolation of (B, C, T, H, W) by an integer factor. Exported graphs compute bicubic as
    a conv (`models.resampling`): the same values, several times faster in ONNX Runtime than `Resize`."""
    frames = frames_to_batch(clip)
    if mode == "bicubic" and torch.onnx.is_in_onnx_export():
        frames = bicubic_upscale_by_conv(frames, factor)
    else:
        frames = F.interpolate(frames, scale_factor=float(factor), mode=mode, align_corners=False)
    return batch_to_frames(frames, clip.shape[0])


class VSRModel(nn.Module):
    """A 4x video super-resolution pipeline built from a `VSRConfig`; config in, tensors out."""

    def __init__(self, config: VSRConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.encoder = Encoder(config.vae)
        self.denoiser = OneStepDenoiser(config.denoiser, config.vae.latent_channels)
        self.decoder = Decoder(
            config.vae,
            head="f16" if config.pipeline == "fastvsr" else "f8",
            lr_conditioning=config.lr_conditioning,
            lr_levels=config.lr_conditioning_levels,
        )
        for name, module in self.named_modules():
            if hasattr(module, "cache_key"):
                module.cache_key = name
        if config.zero_init_output:
            nn.init.zeros_(self.decoder.conv_out.conv.weight)
            nn.init.zeros_(self.decoder.conv_out.conv.bias)
            self.denoiser.zero_init_output()

    def interpolate(self, lr: torch.Tensor) -> torch.Tensor:
        """LR (B, 3, T, H, W) in [0, 1] -> encoder input (B, 3, T, sH, sW) in [-1, 1], s = 2 or 4."""
        return resize_frames(lr, self.config.input_upscale, self.config.interpolation) * 2.0 - 1.0

    def encode(self, lr: torch.Tensor, cache: StreamCache | None = None) -> torch.Tensor:
        """LR clip -> scaled latent mean (B, Z, n, sH/8, sW/8); the mean keeps inference deterministic."""
        mean, _ = self.encoder(self.interpolate(lr), cache)
        return mean * self.config.vae.scaling_factor

    def denoise(self, latent: torch.Tensor, cache: StreamCache | None = None) -> torch.Tensor:
        return self.denoiser(latent, cache)

    def decode(
        self, latent: torch.Tensor, lr: torch.Tensor, cache: StreamCache | None = None
    ) -> torch.Tensor:
        """Clean latent (+ the LR clip for the bicubic skip) -> SR clip (B, 3, T, 4H, 4W) in [0, 1]."""
        guide = self.interpolate(lr) if self.config.lr_conditioning else None
        video = self.decoder(latent / self.config.vae.scaling_factor, cache, guide) * 0.5  # [-1, 1] -> +-0.5
        if self.config.bicubic_skip:
            video = video + resize_frames(lr, OUTPUT_SCALE, "bicubic")
        else:
            video = video + 0.5
        return video.clamp(0.0, 1.0)

    def forward(self, lr: torch.Tensor, cache: StreamCache | None = None) -> torch.Tensor:
        return self.decode(self.denoise(self.encode(lr, cache), cache), lr, cache)
