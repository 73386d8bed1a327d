"""The three model stages as modules with explicit tensor inputs and outputs (the exported graphs).

Each wraps the shared `VSRModel` and maps the named `past.*` inputs to its fixed-shape stream cache and
the cache back to `present.*` outputs, in the order of `StreamLayout.input_names/output_names`. First-chunk
frame padding and cropping happen outside (see `engines.pipeline`), so every chunk runs the same graph.
"""

from __future__ import annotations

import torch
from torch import nn

from engines.layout import Component, StreamLayout
from models.blocks import FIRST_CHUNK, PAST_FRAMES, StreamCache
from models.sr_model import VSRModel
from models.vae import continuing_cache


class Stage(nn.Module):
    """One component of `model`: (primary inputs..., flag, past caches...) -> (output, present caches...)."""

    def __init__(self, model: VSRModel, layout: StreamLayout, component: Component) -> None:
        super().__init__()
        self.model = model
        self.component = component
        self.keys = [entry.key for entry in layout.entries(component)]

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        heads = 3 if self.component == "decoder" else 2
        cache: StreamCache = continuing_cache()  # no in-graph first-chunk padding or cropping
        cache.update(zip(self.keys, inputs[heads:], strict=True))
        if self.component == "encoder":
            lr, cache[FIRST_CHUNK] = inputs[:2]
            out = self.model.encode(lr, cache)
        elif self.component == "denoiser":
            latent, cache[PAST_FRAMES] = inputs[:2]
            out = self.model.denoise(latent, cache)
        else:
            denoised, lr, cache[FIRST_CHUNK] = inputs[:3]
            out = self.model.decode(denoised, lr, cache)
        outputs = (out, *(cache[k] for k in self.keys))
        return tuple(t if t.dtype == torch.float32 else t.float() for t in outputs)  # no Cast in fp32 graphs
