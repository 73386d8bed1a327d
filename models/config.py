"""Model configuration: frozen dataclasses that round-trip through config.json.

Every width, depth, channel count and compression factor lives here, so a full-scale configuration
compatible with CogVideoX1.5 / DOVE checkpoints can slot in later without code changes.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal, get_args

PipelineKind = Literal["fastvsr", "baseline"]
NormKind = Literal["frame_group", "pixel"]
NORM_KINDS: tuple[NormKind, ...] = get_args(NormKind)

SUPPORTED_TEMPORAL_COMPRESSION = (1, 4, 8)
OUTPUT_SCALE = 4


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range."""


@dataclass(frozen=True)
class VAEConfig:
    """Causal 3D VAE. `block_out_channels[i]` is the width at spatial level i (level 0 = full size)."""

    in_channels: int = 3
    latent_channels: int = 16
    block_out_channels: tuple[int, ...] = (16, 32, 32, 64)  # len - 1 spatial x2 steps -> f8
    layers_per_block: int = 1
    norm_groups: int = 8
    norm: NormKind = "frame_group"  # GroupNorm per frame, or "pixel": tile-invariant (blocks.PixelNorm)
    temporal_compression: int = 1  # 1, 4 (CogVideoX) or 8 (later work)
    scaling_factor: float = 1.0  # latent = mean * scaling_factor (CogVideoX1.5 uses 0.7)

    @property
    def spatial_compression(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    @property
    def temporal_downsamples(self) -> int:
        return self.temporal_compression.bit_length() - 1

    def validate(self) -> None:
        if self.temporal_compression not in SUPPORTED_TEMPORAL_COMPRESSION:
            raise ConfigError(
                f"vae.temporal_compression must be one of {SUPPORTED_TEMPORAL_COMPRESSION}, "
                f"got {self.temporal_compression}"
            )
        if self.spatial_compression != 8:
            raise ConfigError(
                f"vae.block_out_channels must have 4 entries (f8 encoder), got {len(self.block_out_channels)}"
            )
        if self.temporal_downsamples > len(self.block_out_channels) - 1:
            raise ConfigError("vae.temporal_compression needs more down blocks than block_out_channels gives")
        if self.norm not in NORM_KINDS:
            raise ConfigError(f"vae.norm must be one of {NORM_KINDS}, got {self.norm!r}")
        for width in self.block_out_channels:
            if self.norm == "frame_group" and width % self.norm_groups:
                raise ConfigError(f"vae width {width} is not divisible by norm_groups={self.norm_groups}")
        if self.block_out_channels[0] % 4:
            raise ConfigError("vae.block_out_channels[0] must be divisible by 4 (PixelShuffle(2) head)")


@dataclass(frozen=True)
class DenoiserConfig:
    """One-step diffusion transformer over 2x2-patchified latent tokens."""

    patch_size: int = 2
    hidden_size: int = 96
    depth: int = 2
    num_heads: int = 4
    mlp_ratio: float = 2.0
    temporal_window: int = 4  # latent frames each token sees, itself included (causal)
    timestep: int = 399  # the fixed diffusion timestep of the one-step model (DOVE uses 399)

    def validate(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ConfigError("denoiser.hidden_size must be divisible by denoiser.num_heads")
        if self.temporal_window < 1:
            raise ConfigError("denoiser.temporal_window must be >= 1")
        if self.patch_size < 1:
            raise ConfigError("denoiser.patch_size must be >= 1")


@dataclass(frozen=True)
class VSRConfig:
    """A whole super-resolution pipeline: interpolate -> encode -> denoise -> decode.

    `fastvsr` interpolates x2 and decodes with the f16 decoder; `baseline` (DOVE-style) interpolates x4
    and decodes with the symmetric f8 decoder. Both have exactly the same modules and widths.
    """

    pipeline: PipelineKind = "fastvsr"
    vae: VAEConfig = field(default_factory=VAEConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    interpolation: Literal["bicubic", "bilinear"] = "bicubic"
    bicubic_skip: bool = True  # output = bicubic x4 of the input + decoder output
    # The decoder also sees the interpolated low-res clip (the encoder input) at its last level, as
    # FlashVSR's conditional decoder does; the VAE's own reconstruction path never gets it.
    lr_conditioning: bool = False
    # How many decoder levels, counted back from the last, receive that clip (coarser ones as
    # space-to-depth); 1 is the last level alone. Only levels at the full frame rate can take it.
    lr_conditioning_levels: int = 1
    zero_init_output: bool = True  # untrained model = bicubic (skip) and identity denoiser

    @property
    def input_upscale(self) -> int:
        """Interpolation factor applied to the low-res clip before the encoder."""
        return 2 if self.pipeline == "fastvsr" else 4

    @property
    def decoder_stride(self) -> int:
        """Output pixels per latent cell: 16 for the asymmetric decoder, 8 for the symmetric one."""
        return self.vae.spatial_compression * OUTPUT_SCALE // self.input_upscale

    @property
    def lr_multiple(self) -> int:
        """Low-res sizes are padded to a multiple of this so every stage divides evenly."""
        cell = self.vae.spatial_compression * self.denoiser.patch_size  # encoder-input pixels per token
        return max(1, cell // self.input_upscale)

    def with_pipeline(self, pipeline: PipelineKind) -> VSRConfig:
        return dataclasses.replace(self, pipeline=pipeline)

    def validate(self) -> None:
        if self.pipeline not in ("fastvsr", "baseline"):
            raise ConfigError(f"pipeline must be 'fastvsr' or 'baseline', got {self.pipeline!r}")
        if self.interpolation not in ("bicubic", "bilinear"):
            raise ConfigError(f"interpolation must be 'bicubic' or 'bilinear', got {self.interpolation!r}")
        self.vae.validate()
        self.denoiser.validate()
        full_rate_levels = len(self.vae.block_out_channels) - self.vae.temporal_downsamples
        if not 1 <= self.lr_conditioning_levels <= full_rate_levels:
            raise ConfigError(
                f"lr_conditioning_levels must be between 1 and {full_rate_levels} (decoder levels at the "
                f"full frame rate), got {self.lr_conditioning_levels}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VSRConfig:
        data = dict(data)
        try:
            vae = _build(VAEConfig, data.pop("vae", {}), "vae")
            denoiser = _build(DenoiserConfig, data.pop("denoiser", {}), "denoiser")
            config = _build(cls, data, "config", vae=vae, denoiser=denoiser)
        except TypeError as exc:
            raise ConfigError(str(exc)) from exc
        config.validate()
        return config

    @classmethod
    def from_json(cls, text: str) -> VSRConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError("config must be a JSON object")
        return cls.from_dict(data)


def _build(kind: type, values: dict[str, Any], where: str, **extra: Any) -> Any:
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown {where} keys: {', '.join(unknown)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return kind(**values, **extra)


def load_named_config(name: str) -> VSRConfig:
    """A configuration shipped with the package, e.g. `fastvsr-tiny`."""
    path = resources.files("models") / "configs" / f"{name}.json"
    if not path.is_file():
        available = sorted(
            p.name.removesuffix(".json") for p in (resources.files("models") / "configs").iterdir()
        )
        raise ConfigError(f"unknown model config {name!r}; available: {', '.join(available)}")
    return VSRConfig.from_json(path.read_text())
