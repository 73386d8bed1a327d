"""The staged CPU recipe that produces the shipped weights.

    (a) VAE: encoder + f8 decoder on the x2-downscaled HR clips, minimising the free energy.
    (c) f16 decoder: warm-started from the f8 decoder (trunk 1:1), reconstructs the HR clip from the
        latent of its x2-downscaled version, with the lower-bound guidance (training.objectives);
        optionally trained twice, with and without guidance, from the same start (the ablation).
    (b) one-step denoiser: maps the latent of the x2-interpolated LR clip to the latent of the
        x2-downscaled HR clip at the fixed timestep, then is fine-tuned with the decoder in pixel space
        through the whole pipeline (encoder frozen); a last, short stage of that fine-tune adds the
        warped temporal term (training.objectives.warped_residual_loss) against flicker.

Every stage logs to a JSON-lines file; validation uses clips of held-out photographs.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.blocks import batch_to_frames, frames_to_batch
from models.config import VSRConfig
from models.sr_model import VSRModel, resize_frames
from models.vae import Decoder
from training import sources
from training.data import ClipPool, build_pool
from training.degrade import Degradation
from training.objectives import (
    free_energy,
    guidance_weight,
    guided_decoder_loss,
    psnr,
    sample_posterior,
    upsample_bound,
    warped_residual_loss,
)

WARMUP_STEPS = 50
Batch = tuple[torch.Tensor, torch.Tensor]  # (LR, HR), (B, 3, T, H, W) in [0, 1]


@dataclass(frozen=True)
class TrainSettings:
    """Everything that decides the result; recorded in the model card and the log."""

    config: VSRConfig
    degradation: Degradation = "mixed"
    seed: int = 0
    clip_frames: int = 3
    clip_size: int = 96  # HR pixels; LR is a quarter
    pool_size: int = 2000
    validation_size: int = 48
    batch_size: int = 8
    steps_vae: int = 500
    steps_decoder: int = 400
    steps_denoiser: int = 300
    steps_finetune: int = 2400
    steps_temporal: int = 600  # after the fine-tune: L1 + temporal_weight x warped_residual_loss
    learning_rate: float = 1e-3
    temporal_weight: float = 1.0  # 0: no temporal stage
    kl_weight: float = 1.0
    guidance: float = 1.0  # initial weight of the lower-bound term
    guidance_fraction: float = 0.5  # of the decoder stage, after which the weight is 0
    ablation: bool = True  # also train the f16 decoder without guidance (same start, same steps)
    log_every: int = 100
    photos: tuple[str, ...] = tuple(p for p in sources.PHOTOS if p not in sources.VALIDATION_PHOTOS)
    validation_photos: tuple[str, ...] = sources.VALIDATION_PHOTOS
    videos: tuple[str, ...] = tuple(sources.VIDEOS)

    def scaled(self, factor: float) -> TrainSettings:
        """The same recipe with every stage's steps (and the pool) multiplied by `factor`."""
        return dataclasses.replace(
            self,
            steps_vae=max(1, round(self.steps_vae * factor)),
            steps_decoder=max(1, round(self.steps_decoder * factor)),
            steps_denoiser=max(1, round(self.steps_denoiser * factor)),
            steps_finetune=max(1, round(self.steps_finetune * factor)),
            steps_temporal=max(1, round(self.steps_temporal * factor)),
            pool_size=max(self.batch_size, round(self.pool_size * min(1.0, factor * 2))),
            validation_size=max(4, round(self.validation_size * min(1.0, factor * 2))),
        )

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["config"] = self.config.to_dict()
        return data


@dataclass
class TrainResult:
    model: VSRModel
    seconds: dict[str, float] = field(default_factory=dict)
    validation: dict[str, float] = field(default_factory=dict)
    ablation: dict[str, list[dict[str, float]]] = field(default_factory=dict)


class Logger:
    """JSON lines to a file (and a short line to `echo`)."""

    def __init__(self, path: Path | None, echo: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.echo = echo
        self.started = time.perf_counter()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")

    def __call__(self, **record: Any) -> None:
        record["elapsed_s"] = round(time.perf_counter() - self.started, 1)
        if self.path is not None:
            with self.path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
        if self.echo is not None:
            self.echo(
                " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
            )


def downscale2(hr: torch.Tensor) -> torch.Tensor:
    """HR (B, 3, T, H, W) -> the encoder-input grid (x2 down, antialiased bicubic), in [-1, 1]."""
    frames = F.interpolate(
        frames_to_batch(hr), scale_factor=0.5, mode="bicubic", antialias=True, align_corners=False
    )
    return batch_to_frames(frames, hr.shape[0]).clamp(0, 1) * 2.0 - 1.0


def batches(pool: ClipPool, batch_size: int, rng: np.random.Generator) -> Iterable[Batch]:
    while True:
        yield pool.batch(rng.integers(0, len(pool), size=batch_size))


def optimise(
    parameters: list[nn.Parameter],
    steps: int,
    learning_rate: float,
    loss_at: Callable[[int], tuple[torch.Tensor, dict[str, float]]],
    log: Logger,
    stage: str,
    log_every: int,
    validate: Callable[[], dict[str, float]] | None = None,
) -> list[dict[str, float]]:
    """AdamW, linear warm-up then cosine schedule, gradient clipping; returns the validation curve."""
    optimiser = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0)
    warmup = min(WARMUP_STEPS, max(1, steps // 10))  # Adam's first steps would jolt a trained module
    schedule = torch.optim.lr_scheduler.SequentialLR(
        optimiser,
        [
            torch.optim.lr_scheduler.LinearLR(optimiser, start_factor=0.05, total_iters=warmup),
            torch.optim.lr_scheduler.CosineAnnealingLR(
                optimiser, T_max=max(1, steps - warmup), eta_min=learning_rate / 20
            ),
        ],
        milestones=[warmup],
    )
    curve: list[dict[str, float]] = []
    for step in range(steps):
        loss, parts = loss_at(step)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(parameters, 1.0)
        optimiser.step()
        schedule.step()
        last = step == steps - 1
        if step % log_every == 0 or last:
            record: dict[str, Any] = {"stage": stage, "step": step, "loss": loss.item(), **parts}
            if validate is not None and (step % (log_every * 5) == 0 or last):
                metrics = validate()
                record.update(metrics)
                curve.append({"step": float(step), **metrics})
            log(**record)
    return curve


def set_trainable(module: nn.Module, trainable: bool) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(trainable)


def train_vae(
    model: VSRModel, f8: Decoder, pool: ClipPool, settings: TrainSettings, rng, log: Logger
) -> None:
    """(a) Encoder + f8 decoder on HR/2 clips, minimising the free energy."""
    source = batches(pool, settings.batch_size, rng)
    parameters = [*model.encoder.parameters(), *f8.parameters()]

    def loss_at(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        x = downscale2(next(source)[1])
        mean, logvar = model.encoder(x)
        energy = free_energy(
            x, f8(sample_posterior(mean, logvar)), mean, logvar, kl_weight=settings.kl_weight
        )
        return energy.total, {"reconstruction": energy.reconstruction.item(), "kl": energy.kl.item()}

    optimise(parameters, settings.steps_vae, settings.learning_rate, loss_at, log, "vae", settings.log_every)


def warm_start_f16(model: VSRModel, f8: Decoder) -> None:
    """Copy the f8 decoder into the f16 decoder (same names and shapes; `lr_in` stays zero).

    With a bicubic skip the decoder predicts a residual, not the image, so its output conv restarts at 0.
    """
    missing, unexpected = model.decoder.load_state_dict(f8.state_dict(), strict=False)
    if unexpected or any(not name.startswith(("lr_in.", "lr_in_deep.")) for name in missing):
        raise RuntimeError(f"f8 -> f16 warm start mismatch: missing {missing}, unexpected {unexpected}")
    if model.config.bicubic_skip:
        nn.init.zeros_(model.decoder.conv_out.conv.weight)
        nn.init.zeros_(model.decoder.conv_out.conv.bias)


def encode_mean(model: VSRModel, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.encoder(x)[0] * model.config.vae.scaling_factor


def train_decoder(
    model: VSRModel,
    f8: Decoder,
    pool: ClipPool,
    settings: TrainSettings,
    guidance: float,
    seed: int,
    log: Logger,
    validate: Callable[[], dict[str, float]],
    stage: str,
) -> list[dict[str, float]]:
    """(c) The f16 decoder from the latent of HR/2 to HR, with the lower-bound term weighted by `guidance`."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    source = batches(pool, settings.batch_size, rng)
    steps = settings.steps_decoder

    def loss_at(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        lr, hr = next(source)
        latent = encode_mean(model, downscale2(hr))
        with torch.no_grad():
            bound = upsample_bound(f8(latent / model.config.vae.scaling_factor) * 0.5 + 0.5)
        weight = guidance_weight(step, steps, guidance, settings.guidance_fraction)
        output = model.decode(latent, lr)
        return guided_decoder_loss(output, hr, bound, weight), {"guidance": weight}

    return optimise(
        list(model.decoder.parameters()),
        steps,
        settings.learning_rate,
        loss_at,
        log,
        stage,
        settings.log_every,
        validate,
    )


def train_denoiser(model: VSRModel, pool: ClipPool, settings: TrainSettings, rng, log: Logger) -> None:
    """(b, first part) Latent of interpolated LR -> latent of HR/2, at the fixed timestep."""
    source = batches(pool, settings.batch_size, rng)

    def loss_at(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        lr, hr = next(source)
        target = encode_mean(model, downscale2(hr))
        with torch.no_grad():
            latent = model.encode(lr)
        return F.mse_loss(model.denoise(latent), target), {}

    optimise(
        list(model.denoiser.parameters()),
        settings.steps_denoiser,
        settings.learning_rate,
        loss_at,
        log,
        "denoiser",
        settings.log_every,
    )


def finetune_pixels(
    model: VSRModel,
    pool: ClipPool,
    settings: TrainSettings,
    rng,
    log: Logger,
    validate: Callable[[], dict[str, float]],
    temporal: bool = False,
) -> list[dict[str, float]]:
    """(b, second part) Denoiser and decoder through the whole pipeline against HR (encoder frozen),
    for `settings.steps_finetune` steps; with `temporal`, the temporal stage instead:
    `settings.steps_temporal` steps with the warped temporal term (the pool then carries motion)."""
    temporal_weight = settings.temporal_weight if temporal else 0.0
    motion = pool.motion if temporal_weight > 0 else None
    if temporal_weight > 0 and motion is None:
        raise ValueError("the temporal term needs a pool built with motion=True")

    def loss_at(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        indices = rng.integers(0, len(pool), size=settings.batch_size)
        lr, hr = pool.batch(indices)
        with torch.no_grad():
            latent = model.encode(lr)
        output = model.decode(model.denoise(latent), lr)
        pixels = (output - hr).abs().mean()
        if motion is None:
            return pixels, {}
        temporal = warped_residual_loss(output, hr, *motion.batch(indices))
        parts = {"pixels": pixels.item(), "temporal": temporal.item()}
        return pixels + temporal_weight * temporal, parts

    parameters = [*model.denoiser.parameters(), *model.decoder.parameters()]
    return optimise(
        parameters,
        settings.steps_temporal if temporal else settings.steps_finetune,
        settings.learning_rate / 2,
        loss_at,
        log,
        "temporal" if temporal else "finetune",
        settings.log_every,
        validate,
    )


def validation_metrics(model: VSRModel, pool: ClipPool, reconstruct: bool) -> dict[str, float]:
    """Mean RGB PSNR over the validation pool, and bicubic's, for the full pipeline or the decoder task."""
    lr, hr = pool.batch(np.arange(len(pool)))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        output = model.decode(encode_mean(model, downscale2(hr)), lr) if reconstruct else model(lr)
    model.train(was_training)
    bicubic = resize_frames(lr, 4, "bicubic").clamp(0, 1)
    return {"val_psnr": psnr(output, hr), "val_bicubic_psnr": psnr(bicubic, hr)}


def train(
    settings: TrainSettings, log_path: Path | None = None, echo: Callable[[str], None] | None = None
) -> TrainResult:
    """Run every stage; returns the trained model, seconds per stage and the validation numbers."""
    log = Logger(log_path, echo)
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    sources.ensure_photos(settings.photos + settings.validation_photos, echo)
    pool = build_pool(
        settings.pool_size,
        settings.clip_frames,
        settings.clip_size,
        settings.degradation,
        settings.seed,
        settings.photos,
        settings.videos,
        motion=settings.temporal_weight > 0,
    )
    validation = build_pool(
        settings.validation_size,
        settings.clip_frames,
        settings.clip_size,
        settings.degradation,
        settings.seed + 1,
        settings.validation_photos,
    )
    seconds["data"] = time.perf_counter() - start
    log(stage="data", clips=len(pool), validation_clips=len(validation), seconds=seconds["data"])

    model = VSRModel(settings.config).train()
    f8 = Decoder(settings.config.vae, head="f8").train()
    result = TrainResult(model=model, seconds=seconds)

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        began = time.perf_counter()
        out = fn()
        seconds[name] = time.perf_counter() - began
        return out

    timed("vae", lambda: train_vae(model, f8, pool, settings, rng, log))
    set_trainable(model.encoder, False)
    set_trainable(f8, False)
    warm_start_f16(model, f8)

    def decoder_validation() -> dict[str, float]:
        return validation_metrics(model, validation, reconstruct=True)

    start_state = copy.deepcopy(model.decoder.state_dict())
    if settings.ablation:
        unguided = timed(
            "decoder_unguided",
            lambda: train_decoder(
                model, f8, pool, settings, 0.0, settings.seed + 2, log, decoder_validation, "decoder_unguided"
            ),
        )
        result.ablation["unguided"] = unguided
        model.decoder.load_state_dict(start_state)
    guided = timed(
        "decoder",
        lambda: train_decoder(
            model,
            f8,
            pool,
            settings,
            settings.guidance,
            settings.seed + 2,
            log,
            decoder_validation,
            "decoder",
        ),
    )
    result.ablation["guided"] = guided
    timed("denoiser", lambda: train_denoiser(model, pool, settings, rng, log))

    def pipeline_validation() -> dict[str, float]:
        return validation_metrics(model, validation, reconstruct=False)

    timed("finetune", lambda: finetune_pixels(model, pool, settings, rng, log, pipeline_validation))
    if settings.temporal_weight > 0:
        timed("temporal", lambda: finetune_pixels(model, pool, settings, rng, log, pipeline_validation, True))
    model.eval()
    set_trainable(model, True)
    result.validation = validation_metrics(model, validation, reconstruct=False)
    seconds["total"] = time.perf_counter() - start
    log(stage="done", **result.validation, seconds=seconds["total"])
    return result
