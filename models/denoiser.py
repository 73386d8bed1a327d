"""One-step denoiser: a small diffusion transformer (DiT) over patchified latent tokens.

It maps the latent of the interpolated low-res clip, read as x_t at a fixed timestep, to a clean latent in
one forward pass (x0 = x_t + f(x_t)). Each block attends over space (all tokens of a latent frame) and over
time (the same token position across the last `temporal_window` latent frames, causally), then applies an
MLP; all three are modulated by the timestep embedding (adaLN-Zero). Positions are encoded by a depthwise
convolution and a relative temporal bias, so the model works at any size and is shift-invariant in time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.blocks import PAST_FRAMES, StreamCache
from models.config import DenoiserConfig

TIMESTEP_FREQUENCIES = 128


def timestep_features(timestep: torch.Tensor, dim: int = TIMESTEP_FREQUENCIES) -> torch.Tensor:
    """Sinusoidal features of a scalar timestep: () -> (dim,)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    angles = timestep.float() * freqs.to(timestep.device)
    return torch.cat([torch.cos(angles), torch.sin(angles)])


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class Attention(nn.Module):
    """Multi-head attention over the second-to-last axis: (N, L, D) -> (N, L, D).

    With `past` (N, P, D), the L queries also attend to P earlier positions (keys and values only).
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, bias: torch.Tensor | None = None, past: torch.Tensor | None = None
    ) -> torch.Tensor:
        n, length, dim = x.shape
        context = x if past is None else torch.cat([past, x], dim=1)  # (N, P + L, D)
        qkv = self.qkv(context).reshape(n, context.shape[1], 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 x (N, heads, P + L, d)
        out = F.scaled_dot_product_attention(q[:, :, -length:], k, v, attn_mask=bias)  # (N, heads, L, d)
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


class DiTBlock(nn.Module):
    """Space attention, causal windowed time attention and an MLP, each gated by adaLN-Zero."""

    def __init__(self, config: DenoiserConfig) -> None:
        super().__init__()
        dim = config.hidden_size
        self.position = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm_space = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn_space = Attention(dim, config.num_heads)
        self.norm_time = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn_time = Attention(dim, config.num_heads)
        self.time_bias = nn.Parameter(torch.zeros(config.num_heads, config.temporal_window))
        self.norm_mlp = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * config.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.modulation = nn.Linear(dim, 9 * dim)
        self.cache_key = ""  # set by the owning model; streaming keeps the last window - 1 frames here

    def temporal_mask(
        self, queries: int, keys: int, device: torch.device, past_frames: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Additive attention bias (1, heads, Q, K) for the last Q of K frames: learned per offset inside
        the causal window, -inf outside. With `past_frames`, only that many of the K - Q past frames
        (the latest) are real; the others are padding of a fixed-length history and are masked."""
        key_index = torch.arange(keys, device=device)
        offset = key_index[-queries:, None] - key_index[None, :]  # query frame - key frame
        window = self.time_bias.shape[1]
        inside = (offset >= 0) & (offset < window)
        if past_frames is not None:
            inside = inside & (key_index >= keys - queries - past_frames)[None, :]
        bias = self.time_bias[:, offset.clamp(0, window - 1)]  # (heads, T, T)
        return bias.masked_fill(~inside, float("-inf")).unsqueeze(0)

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor, grid: tuple[int, int], cache: StreamCache | None = None
    ) -> torch.Tensor:
        b, t, s, d = x.shape  # (B, T, S, D) with S = gh * gw tokens per latent frame
        gh, gw = grid
        mods = self.modulation(F.silu(cond)).chunk(9, dim=-1)  # 9 x (D,)

        planes = x.reshape(b * t, gh, gw, d).permute(0, 3, 1, 2)
        x = x + self.position(planes).permute(0, 2, 3, 1).reshape(b, t, s, d)

        h = modulate(self.norm_space(x), mods[0], mods[1]).reshape(b * t, s, d)
        x = x + mods[2] * self.attn_space(h).reshape(b, t, s, d)

        h = modulate(self.norm_time(x), mods[3], mods[4]).transpose(1, 2).reshape(b * s, t, d)
        past = cache.get(self.cache_key) if cache is not None else None
        keys = t + (0 if past is None else past.shape[1])
        if cache is not None and self.time_bias.shape[1] > 1:
            history = h if past is None else torch.cat([past, h], dim=1)
            cache[self.cache_key] = history[:, -(self.time_bias.shape[1] - 1) :].detach()
        past_frames = cache.get(PAST_FRAMES) if cache is not None else None
        h = self.attn_time(h, self.temporal_mask(t, keys, x.device, past_frames), past)
        x = x + mods[5] * h.reshape(b, s, t, d).transpose(1, 2)

        return x + mods[8] * self.mlp(modulate(self.norm_mlp(x), mods[6], mods[7]))


class OneStepDenoiser(nn.Module):
    """Latent (B, Z, T, h, w) -> clean latent of the same shape, in one forward pass."""

    def __init__(self, config: DenoiserConfig, latent_channels: int) -> None:
        super().__init__()
        self.config = config
        p, dim = config.patch_size, config.hidden_size
        token_features = latent_channels * p * p
        self.register_buffer("timestep", torch.tensor(float(config.timestep)), persistent=False)
        self.time_embed = nn.Sequential(nn.Linear(TIMESTEP_FREQUENCIES, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.patch_in = nn.Linear(token_features, dim)
        self.blocks = nn.ModuleList(DiTBlock(config) for _ in range(config.depth))
        self.norm_out = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.out_modulation = nn.Linear(dim, 2 * dim)
        self.patch_out = nn.Linear(dim, token_features)

    def zero_init_output(self) -> None:
        """adaLN-Zero: gates and the output projection start at zero, so the denoiser starts as identity."""
        for block in self.blocks:
            nn.init.zeros_(block.modulation.weight)
            nn.init.zeros_(block.modulation.bias)
        nn.init.zeros_(self.patch_out.weight)
        nn.init.zeros_(self.patch_out.bias)

    def forward(self, latent: torch.Tensor, cache: StreamCache | None = None) -> torch.Tensor:
        b, z, t, h, w = latent.shape
        p = self.config.patch_size
        gh, gw = h // p, w // p
        tokens = latent.reshape(b, z, t, gh, p, gw, p).permute(0, 2, 3, 5, 1, 4, 6)
        x = self.patch_in(tokens.reshape(b, t, gh * gw, z * p * p))  # (B, T, S, D)

        cond = self.time_embed(timestep_features(self.timestep))  # (D,), the fixed timestep embedded once
        for block in self.blocks:
            x = block(x, cond, (gh, gw), cache)

        shift, scale = self.out_modulation(F.silu(cond)).chunk(2, dim=-1)
        x = self.patch_out(modulate(self.norm_out(x), shift, scale))  # (B, T, S, Z*p*p)
        x = x.reshape(b, t, gh, gw, z, p, p).permute(0, 4, 1, 2, 5, 3, 6).reshape(b, z, t, h, w)
        return latent + x
