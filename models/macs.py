"""Multiply-accumulate counts per component, from PyTorch's own FLOP counter (MACs = FLOPs / 2).

Counting runs on the meta device, so it costs no memory or time even at 720p.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from models.config import VSRConfig
from models.sr_model import VSRModel
from models.vae import continuing_cache


@dataclass(frozen=True)
class MacCount:
    encoder: int
    denoiser: int
    decoder: int

    @property
    def total(self) -> int:
        return self.encoder + self.denoiser + self.decoder

    def as_dict(self) -> dict[str, int]:
        return {
            "encoder": self.encoder,
            "denoiser": self.denoiser,
            "decoder": self.decoder,
            "total": self.total,
        }


def _macs(fn: Callable[..., torch.Tensor], *args: object) -> tuple[int, torch.Tensor]:
    with FlopCounterMode(display=False) as counter:
        out = fn(*args)
    return counter.get_total_flops() // 2, out


def count_macs(config: VSRConfig, frames: int, height: int, width: int, first_chunk: bool = True) -> MacCount:
    """MACs to upscale one padded low-res clip of (frames, height, width); see `VSRModel` for sizes.

    `first_chunk=False` counts a chunk that continues a stream (T a multiple of the temporal compression).
    """
    with torch.device("meta"):
        model = VSRModel(config)
        lr = torch.empty(1, 3, frames, height, width)
        cache = None if first_chunk else continuing_cache()
    with torch.no_grad():
        enc, latent = _macs(model.encode, lr, cache)
        den, clean = _macs(model.denoise, latent, cache)
        dec, _ = _macs(model.decode, clean, lr, cache)
    return MacCount(encoder=enc, denoiser=den, decoder=dec)
