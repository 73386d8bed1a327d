"""Causal 3D building blocks shared by the encoder and both decoders.

Tensors are (B, C, T, H, W). Every operation is causal in time: frame t of an output never depends on
input frames after t. Normalisation is per frame (GroupNorm over each frame) or per pixel (LayerNorm over
each pixel's channels), so clip length and chunking never change statistics; per-pixel norms also make
a spatial tile's output equal to the same pixels of the whole frame's.

Streaming: every `forward` takes an optional `cache` dict. Passing the same dict for consecutive chunks
of one clip makes the result equal to processing the whole clip at once (causal convs keep their last
k - 1 input frames under their own `cache_key`). `None` means "this chunk is the whole clip".

Fixed-shape streaming (for exported graphs): when the cache holds `FIRST_CHUNK`, every history entry is
present from the first chunk on, with a fixed length (zeros before the stream starts), and the flag picks
first-frame padding on the first chunk. Data decides, not the set of keys, so one graph serves all chunks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor

from models.config import NormKind
from models.resampling import fold_channel_copies


def frames_to_batch(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B*T, C, H, W)."""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


def batch_to_frames(x: torch.Tensor, batch: int) -> torch.Tensor:
    """(B*T, C, H, W) -> (B, C, T, H, W)."""
    bt, c, h, w = x.shape
    return x.reshape(batch, bt // batch, c, h, w).transpose(1, 2)


def onednn_inference(x: torch.Tensor) -> bool:
    """Whether `x` takes the CPU fp32 inference path: convs through oneDNN, activations channels-last.
    Tracing, export, compilation, fake tensors (the memory probe) and training keep the standard calls."""
    return not (
        x.device.type != "cpu"
        or x.dtype != torch.float32
        or torch.is_grad_enabled()
        or not torch.backends.mkldnn.is_available()
        or torch.jit.is_tracing()
        or torch.onnx.is_in_onnx_export()
        or torch.compiler.is_compiling()
        or isinstance(x, FakeTensor)
    )


def conv3d(conv: nn.Conv3d, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """`conv(x)` (with `weight` in place of `conv.weight` if given), but on CPU fp32 inference always
    through oneDNN, in channels-last (N, T, H, W, C) memory order. PyTorch picks its much slower native
    conv3d when N*C*T*H < 20480 (a heuristic written for 2D that ignores W: e.g. 6-12x slower at
    (1, 32, 11, 46, 80)). Channels-last convs are faster in oneDNN, and the per-pixel LayerNorm, the
    per-frame 2D convs and the causal time concatenation then need no layout copies."""
    weight = conv.weight if weight is None else weight
    if not onednn_inference(x):
        return conv._conv_forward(x, weight, conv.bias)
    padding = conv.padding if isinstance(conv.padding, tuple) else (0, 0, 0)
    return torch.ops.aten.mkldnn_convolution(
        x.contiguous(memory_format=torch.channels_last_3d),
        weight.contiguous(memory_format=torch.channels_last_3d),
        conv.bias,
        list(padding),
        list(conv.stride),
        list(conv.dilation),
        conv.groups,
    )


def cat_frames(past: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """`torch.cat([past, x], dim=2)`, channels-last on the oneDNN inference path (`torch.cat` falls
    back to channels-first when its inputs' layouts differ, e.g. for the expanded first-frame padding)."""
    if not onednn_inference(x):
        return torch.cat([past, x], dim=2)
    b, c, t, h, w = x.shape
    size = (b, c, past.shape[2] + t, h, w)
    out = torch.empty(size, dtype=x.dtype, device=x.device, memory_format=torch.channels_last_3d)
    return torch.cat([past, x], dim=2, out=out)


StreamCache = dict[str, torch.Tensor]
FIRST_CHUNK = "stream.first"  # int64 (1,): 1 on a stream's first chunk, else 0 (fixed-shape streaming)
PAST_FRAMES = "stream.past_frames"  # int64 (1,): real latent frames in fixed-length DiT histories


class CausalConv3d(nn.Module):
    """3D convolution padded in time on the past side only: by the previous chunk's last frames when
    streaming, else by repeating the first frame.

    `input_copies=r`: the conv's input is `x.repeat_interleave(r, dim=1)`; it runs on `x` with the copies'
    kernels summed (same result, 1/r of the MACs), and the streaming history holds `x`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.time_pad = kernel_size - 1
        self.cache_key = ""  # set by the owning model to the module's qualified name
        self.conv = nn.Conv3d(
            in_channels, out_channels, kernel_size, padding=(0, kernel_size // 2, kernel_size // 2)
        )

    def forward(
        self, x: torch.Tensor, cache: StreamCache | None = None, input_copies: int = 1
    ) -> torch.Tensor:
        if self.time_pad:
            start = x[:, :, :1].expand(-1, -1, self.time_pad, -1, -1)
            past = cache.get(self.cache_key) if cache is not None else None
            if past is None:
                past = start
            elif cache is not None and FIRST_CHUNK in cache:
                past = first_chunk_select(cache[FIRST_CHUNK], start, past)
            x = cat_frames(past, x)  # (B, C, T + k - 1, H, W)
            if cache is not None:
                cache[self.cache_key] = x[:, :, -self.time_pad :].detach()
        weight = fold_channel_copies(self.conv.weight, input_copies) if input_copies > 1 else None
        return conv3d(self.conv, x, weight)


def first_chunk_select(flag: torch.Tensor, start: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
    """`start` where the int64 (1,) `flag` is set, else `past`. Exported graphs blend with the flag as a
    0/1 float (exact for finite values): ONNX Runtime's broadcasting `Where` is many times slower."""
    if torch.onnx.is_in_onnx_export():
        weight = flag.to(start.dtype).reshape(1, 1, 1, 1, 1)
        return start * weight + past * (1 - weight)
    return torch.where(flag != 0, start, past)


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm computed over each frame separately (statistics never mix frames)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return batch_to_frames(super().forward(frames_to_batch(x)), x.shape[0])


class PixelNorm(nn.Module):
    """LayerNorm over the channels of each pixel (NAFNet's and Restormer's LayerNorm2d). It uses no spatial
    statistics, so a tile is normalised exactly like the same pixels of the whole frame, and training crops
    see the statistics that full frames see. Exports as one ONNX LayerNormalization (kept in fp32)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = x.ndim - 1  # explicit permutations: movedim(-1, 1) exports a Transpose with a negative perm
        channels_last = x.permute(0, *range(2, x.ndim), 1)
        normed = F.layer_norm(channels_last, self.weight.shape, self.weight, self.bias, self.eps)
        return normed.permute(0, last, *range(1, last))


def make_norm(kind: NormKind, groups: int, channels: int) -> nn.Module:
    """The VAE's normalisation layer: `frame_group` (GroupNorm per frame) or `pixel` (see PixelNorm)."""
    if kind == "pixel":
        return PixelNorm(channels)
    return FrameGroupNorm(groups, channels)


class ResBlock3d(nn.Module):
    """Pre-norm residual block: (norm, SiLU, causal conv) x 2 plus a 1x1x1 shortcut when widths change."""

    def __init__(
        self, in_channels: int, out_channels: int, groups: int, norm: NormKind = "frame_group"
    ) -> None:
        super().__init__()
        self.norm1 = make_norm(norm, groups, in_channels)
        self.conv1 = CausalConv3d(in_channels, out_channels)
        self.norm2 = make_norm(norm, groups, out_channels)
        self.conv2 = CausalConv3d(out_channels, out_channels)
        self.shortcut = (
            nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: torch.Tensor, cache: StreamCache | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)), cache)
        h = self.conv2(F.silu(self.norm2(h)), cache)
        shortcut = conv3d(self.shortcut, x) if isinstance(self.shortcut, nn.Conv3d) else x
        return shortcut + h


class Downsample(nn.Module):
    """Halve H and W with a stride-2 conv per frame; optionally halve T by averaging aligned frame pairs."""

    def __init__(self, channels: int, compress_time: bool) -> None:
        super().__init__()
        self.compress_time = compress_time
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor, cache: StreamCache | None = None) -> torch.Tensor:
        b, c, t, h, w = x.shape
        if self.compress_time:
            # frames (2i, 2i+1) -> i; the encoder front-pads so the pairs align with latent frames
            x = x.reshape(b, c, t // 2, 2, h, w).mean(dim=3)
        return batch_to_frames(self.conv(frames_to_batch(x)), b)


class Upsample(nn.Module):
    """Double H and W (nearest + conv per frame); optionally double T by repeating each frame."""

    def __init__(self, channels: int, expand_time: bool) -> None:
        super().__init__()
        self.expand_time = expand_time
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, cache: StreamCache | None = None) -> torch.Tensor:
        b = x.shape[0]
        if self.expand_time:
            x = x.repeat_interleave(2, dim=2)  # (B, C, 2T, H, W)
        frames = F.interpolate(frames_to_batch(x), scale_factor=2.0, mode="nearest")
        return batch_to_frames(self.conv(frames), b)
