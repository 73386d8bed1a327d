"""Causal 3D VAE: an f8 encoder, the symmetric f8 decoder and the asymmetric f16 decoder.

The f16 decoder (FastVSR, Fig. c) is the f8 decoder's trunk, which ends at the encoder-input grid, then
PixelShuffle(2), a channel copy x4 and conv_out: stride 16 against the encoder's 8 (r = 2). Both decoders
have identical parameter names and shapes, so f8 weights warm-start the f16 decoder 1:1. The copy is
folded into conv_out's kernel (copies' kernels summed), which gives the same output at 1/4 of its MACs.

Time: a clip of T = k * tc + 1 frames (tc = temporal compression) is front-padded with tc - 1 copies of
its first frame, so latent frame j summarises input frames up to j * tc and the first latent frame holds
frame 0 alone (the CogVideoX layout). Decoders return the same T frames. When streaming (a `cache` dict
shared by consecutive chunks), only the first chunk has the 1 + k * tc layout; later chunks hold a
multiple of tc frames.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.blocks import (
    CausalConv3d,
    Downsample,
    ResBlock3d,
    StreamCache,
    Upsample,
    batch_to_frames,
    frames_to_batch,
    make_norm,
)
from models.config import VAEConfig

DecoderHead = Literal["f8", "f16"]
HEAD_COPIES = 4  # the f16 head's channel copy: PixelShuffle(2) leaves C / 4 channels, conv_out reads C
LOGVAR_RANGE = (-30.0, 20.0)
_STARTED = "started"


def is_first_chunk_peek(cache: StreamCache | None, owner: str) -> bool:
    """True for a whole clip or the first chunk of a stream (the stream is not marked as started)."""
    return cache is None or f"{owner}.{_STARTED}" not in cache


def is_first_chunk(cache: StreamCache | None, owner: str) -> bool:
    """True for a whole clip or the first chunk of a stream; marks the stream as started."""
    first = is_first_chunk_peek(cache, owner)
    if cache is not None:
        cache[f"{owner}.{_STARTED}"] = torch.ones(())
    return first


def pad_first_frame(video: torch.Tensor, tc: int) -> torch.Tensor:
    """(B, C, 1 + k * tc, H, W) front-padded with tc - 1 copies of frame 0: (B, C, (k + 1) * tc, H, W)."""
    return torch.cat([video[:, :, :1].expand(-1, -1, tc - 1, -1, -1), video], dim=2)


def continuing_cache() -> StreamCache:
    """A cache for a chunk that continues a stream (no first-chunk padding), with no history kept yet."""
    return {f"{owner}.{_STARTED}": torch.ones(()) for owner in ("encoder", "decoder")}


def run_blocks(blocks: nn.ModuleList, x: torch.Tensor, cache: StreamCache | None) -> torch.Tensor:
    for block in blocks:
        x = block(x, cache)
    return x


def _mid_block(width: int, config: VAEConfig) -> nn.ModuleList:
    return nn.ModuleList([ResBlock3d(width, width, config.norm_groups, config.norm) for _ in range(2)])


def _resolution_ladder(
    widths: tuple[int, ...], config: VAEConfig, resample: Callable[[int, bool], nn.Module]
) -> nn.ModuleList:
    """Residual blocks per level, with `resample(width, change_time)` between consecutive levels."""
    blocks: list[nn.Module] = []
    width = widths[0]
    for level, out_width in enumerate(widths):
        for _ in range(config.layers_per_block):
            blocks.append(ResBlock3d(width, out_width, config.norm_groups, config.norm))
            width = out_width
        if level < len(widths) - 1:
            blocks.append(resample(width, level < config.temporal_downsamples))
    return nn.ModuleList(blocks)


class Encoder(nn.Module):
    """Video (B, 3, T, H, W) in [-1, 1] -> latent mean and log-variance (B, Z, 1 + (T-1)/tc, H/8, W/8)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        widths = config.block_out_channels
        width = widths[-1]
        self.conv_in = CausalConv3d(config.in_channels, widths[0])
        self.down = _resolution_ladder(widths, config, Downsample)
        self.mid = _mid_block(width, config)
        self.norm_out = make_norm(config.norm, config.norm_groups, width)
        self.conv_out = CausalConv3d(width, 2 * config.latent_channels)

    def forward(
        self, video: torch.Tensor, cache: StreamCache | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        tc = self.config.temporal_compression
        if tc > 1 and is_first_chunk(cache, "encoder"):
            video = pad_first_frame(video, tc)  # (B, 3, n * tc, H, W)
        h = run_blocks(self.down, self.conv_in(video, cache), cache)
        h = run_blocks(self.mid, h, cache)
        h = self.conv_out(F.silu(self.norm_out(h)), cache)  # (B, 2Z, n, H/8, W/8)
        mean, logvar = h.chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)


class Decoder(nn.Module):
    """Latent (B, Z, n, h, w) -> video (B, 3, (n-1)*tc + 1, 8h, 8w) for f8 or (..., 16h, 16w) for f16."""

    def __init__(
        self, config: VAEConfig, head: DecoderHead, lr_conditioning: bool = False, lr_levels: int = 1
    ) -> None:
        super().__init__()
        if head not in ("f8", "f16"):
            raise ValueError(f"decoder head must be 'f8' or 'f16', got {head!r}")
        self.config = config
        self.head = head
        widths = tuple(reversed(config.block_out_channels))
        self.conv_in = CausalConv3d(config.latent_channels, widths[0])
        self.mid = _mid_block(widths[0], config)
        self.up = _resolution_ladder(widths, config, Upsample)
        self.norm_out = make_norm(config.norm, config.norm_groups, widths[-1])  # 4C at the encoder-input grid
        self.conv_out = CausalConv3d(widths[-1], config.in_channels)
        # The guide (the encoder-input clip) is added to the features entering the last `lr_levels`
        # resolution levels: `lr_in` at the last level, `lr_in_deep[i]` at the coarser ones, where it
        # arrives space-to-depth (PixelUnshuffle), so no pixel of it is lost. All are zero-initialised,
        # so f8 weights (which have no such inputs) warm-start the decoder exactly.
        self.lr_in: CausalConv3d | None = None
        self.lr_in_deep = nn.ModuleList()
        if lr_conditioning:
            self.lr_in = _zero_conv(config.in_channels, widths[-2])
            levels = len(widths)
            for level in range(levels - lr_levels, levels - 1):
                entering = widths[max(level - 1, 0)]
                factor = 2 ** (levels - 1 - level)
                self.lr_in_deep.append(_zero_conv(config.in_channels * factor * factor, entering))

    def forward(
        self, latent: torch.Tensor, cache: StreamCache | None = None, guide: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`guide`: the encoder-input clip (B, 3, T, 8h, 8w) for an LR-conditioned decoder, else None."""
        h = run_blocks(self.mid, self.conv_in(latent, cache), cache)
        tc = self.config.temporal_compression
        if self.lr_in is None:
            guide = None  # an unconditioned decoder ignores any guide
        elif guide is not None and tc > 1 and is_first_chunk_peek(cache, "decoder"):
            guide = pad_first_frame(guide, tc)
        per_level = self.config.layers_per_block + 1  # residual blocks, then the upsampler
        levels = len(self.config.block_out_channels)
        first_guided = levels - 1 - len(self.lr_in_deep)
        for level in range(levels):
            if guide is not None and level >= first_guided:
                if level == levels - 1:
                    h = h + self.lr_in(guide, cache)
                else:
                    factor = 2 ** (levels - 1 - level)
                    h = h + self.lr_in_deep[level - first_guided](
                        pixel_unshuffle_frames(guide, factor), cache
                    )
            h = run_blocks(self.up[level * per_level : (level + 1) * per_level], h, cache)
        h = F.silu(self.norm_out(h))  # (B, 4C, n * tc, 8h, 8w)
        if self.head == "f16":
            # PixelShuffle(2), then conv_out over the channels copied x4 (folded into its kernel)
            video = self.conv_out(pixel_shuffle_frames(h), cache, input_copies=HEAD_COPIES)
        else:
            video = self.conv_out(h, cache)
        if is_first_chunk(cache, "decoder"):
            video = video[:, :, self.config.temporal_compression - 1 :]
        return video


def _zero_conv(in_channels: int, out_channels: int) -> CausalConv3d:
    conv = CausalConv3d(in_channels, out_channels)
    nn.init.zeros_(conv.conv.weight)
    nn.init.zeros_(conv.conv.bias)
    return conv


def pixel_unshuffle_frames(x: torch.Tensor, factor: int) -> torch.Tensor:
    """PixelUnshuffle per frame: (B, C, T, H, W) -> (B, C * factor^2, T, H / factor, W / factor)."""
    return batch_to_frames(F.pixel_unshuffle(frames_to_batch(x), factor), x.shape[0])


def pixel_shuffle_frames(x: torch.Tensor) -> torch.Tensor:
    """PixelShuffle(2) per frame: (B, 4C, T, H, W) -> (B, C, T, 2H, 2W)."""
    return batch_to_frames(F.pixel_shuffle(frames_to_batch(x), 2), x.shape[0])
