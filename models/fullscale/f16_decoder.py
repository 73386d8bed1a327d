"""The f16 decoder built from a CogVideoX decoder (the paper's Fig. c).

The trunk (conv_in, mid block, up blocks, norm_out) is CogVideoX's, parameter for parameter, so an f8
decoder's weights load 1:1. After the trunk, at the f8 output grid with 4C channels, each frame is
PixelShuffled by 2 (4C -> C channels, twice the size), the C channels are copied 4 times (back to 4C),
and the f8 decoder's own causal conv_out maps them to RGB. norm_out stays before the shuffle (the figure
does not show its place; before it, the whole trunk runs at the f8 grid). Every output pixel is thus 16x
its latent's, with one conv at full resolution.
"""

from __future__ import annotations

import torch
from diffusers.models.autoencoders.autoencoder_kl_cogvideox import CogVideoXDecoder3D
from torch import nn

SHUFFLE = 2


def shuffle_and_copy(hidden: torch.Tensor) -> torch.Tensor:
    """(B, 4C, T, H, W) -> PixelShuffle(2) per frame -> (B, C, T, 2H, 2W) -> copy x4 -> (B, 4C, T, 2H, 2W)."""
    batch, channels, frames, height, width = hidden.shape
    if channels % (SHUFFLE * SHUFFLE):
        raise ValueError(f"the trunk's last width ({channels}) must be a multiple of {SHUFFLE * SHUFFLE}")
    per_frame = hidden.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, height, width)
    shuffled = nn.functional.pixel_shuffle(per_frame, SHUFFLE)
    shuffled = shuffled.reshape(batch, frames, channels // 4, SHUFFLE * height, SHUFFLE * width)
    return shuffled.permute(0, 2, 1, 3, 4).repeat(1, SHUFFLE * SHUFFLE, 1, 1, 1)


class CogVideoXF16Decoder(CogVideoXDecoder3D):
    """CogVideoX's decoder with PixelShuffle(2) + copy x4 before conv_out: 16x spatial, same parameters."""

    @classmethod
    def from_f8(cls, decoder: CogVideoXDecoder3D, config: dict) -> CogVideoXF16Decoder:
        """A new f16 decoder with `decoder`'s weights copied 1:1 (strict), built from the VAE's config."""
        f16 = cls(
            in_channels=config["latent_channels"],
            out_channels=config["out_channels"],
            up_block_types=tuple(config["up_block_types"]),
            block_out_channels=tuple(config["block_out_channels"]),
            layers_per_block=config["layers_per_block"],
            act_fn=config["act_fn"],
            norm_eps=config["norm_eps"],
            norm_num_groups=config["norm_num_groups"],
            temporal_compression_ratio=config["temporal_compression_ratio"],
        )
        f16.load_state_dict(decoder.state_dict(), strict=True)
        return f16.to(next(decoder.parameters()).dtype)

    def trunk(
        self, sample: torch.Tensor, conv_cache: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """conv_in -> mid -> up blocks -> norm_out -> SiLU, at the f8 grid (identical to CogVideoX's)."""
        cache = conv_cache or {}
        new: dict[str, torch.Tensor] = {}
        hidden, new["conv_in"] = self.conv_in(sample, conv_cache=cache.get("conv_in"))
        run = (
            self._gradient_checkpointing_func
            if torch.is_grad_enabled() and self.gradient_checkpointing
            else None
        )
        blocks = [("mid_block", self.mid_block)] + [
            (f"up_block_{i}", b) for i, b in enumerate(self.up_blocks)
        ]
        for key, block in blocks:
            args = (hidden, None, sample, cache.get(key))
            hidden, new[key] = run(block, *args) if run is not None else block(*args[:3], conv_cache=args[3])
        hidden, new["norm_out"] = self.norm_out(hidden, sample, conv_cache=cache.get("norm_out"))
        return self.conv_act(hidden), new

    def forward(
        self,
        sample: torch.Tensor,
        temb: torch.Tensor | None = None,
        conv_cache: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Same signature and streaming cache as CogVideoXDecoder3D.forward; 2x its output size."""
        hidden, new = self.trunk(sample, conv_cache)
        cache = conv_cache or {}
        hidden, new["conv_out"] = self.conv_out(shuffle_and_copy(hidden), conv_cache=cache.get("conv_out"))
        return hidden, new
