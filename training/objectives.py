"""Training objectives: the VAE's free energy, the lower-bound-guided f16 decoder loss, pixel fidelity and
the warped temporal term.

Free energy (negative ELBO) of the VAE, per data value:
    F(x) = E_q(z|x)[-log p(x|z)] + KL(q(z|x) || N(0, I)),
with a Laplace decoder of fixed scale b, -log p(x|z) = |x - D(z)| / b + log 2b (the constant dropped),
and the Gaussian posterior's closed-form KL. Minimising F maximises the evidence lower bound.

Lower-bound-guided f16 decoder. The f16 decoder D16 must turn the latent z of an HR clip's x2-downscaled
version into the HR clip. A simpler objective bounds how well it can do: the trained f8 path decodes the
same z to the x2-downscaled clip, D8(z), and bicubic x2 of that is an HR estimate the f16 decoder must at
least match (it has the same trunk and sees the same z). The guided loss is
    L = |D16(z) - HR| + w(s) * |D16(z) - up2(D8(z))|,
where w decays linearly from `weight` to 0 over the first `fraction` of the stage's steps: early on the
easy, always-reachable bound steers the re-headed decoder; later only the HR target counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from models.sr_model import resize_frames

LAPLACE_SCALE = 0.05  # b, on the [-1, 1] data range


@dataclass(frozen=True)
class FreeEnergy:
    total: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor


def free_energy(
    x: torch.Tensor,
    reconstruction: torch.Tensor,
    mean: torch.Tensor,
    logvar: torch.Tensor,
    scale: float = LAPLACE_SCALE,
    kl_weight: float = 1.0,
) -> FreeEnergy:
    """Negative ELBO per data value (both terms summed over the clip, divided by x.numel())."""
    nll = (x - reconstruction).abs().sum() / scale
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum()
    values = x.numel()
    return FreeEnergy(total=(nll + kl_weight * kl) / values, reconstruction=nll / values, kl=kl / values)


def sample_posterior(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Reparameterised draw z = mean + sigma * eps."""
    return mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)


def guidance_weight(step: int, steps: int, weight: float, fraction: float) -> float:
    """w(s): `weight` at step 0, falling linearly to 0 at `fraction` of the stage."""
    if weight <= 0 or fraction <= 0:
        return 0.0
    return weight * max(0.0, 1.0 - step / (fraction * steps))


def guided_decoder_loss(
    output: torch.Tensor, hr: torch.Tensor, bound: torch.Tensor, weight: float
) -> torch.Tensor:
    """|D16(z) - HR| + w |D16(z) - bound| (means over values; `bound` carries no gradient)."""
    loss = (output - hr).abs().mean()
    if weight > 0:
        loss = loss + weight * (output - bound.detach()).abs().mean()
    return loss


def upsample_bound(f8_video: torch.Tensor) -> torch.Tensor:
    """The f8 path's output (B, 3, T, h, w) in [0, 1] -> bicubic x2 (B, 3, T, 2h, 2w)."""
    return resize_frames(f8_video, 2, "bicubic").clamp(0, 1)


def warped_residual_loss(
    output: torch.Tensor, hr: torch.Tensor, grid: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """Flicker of the error along the HR clip's motion: mean |W(E_{t-1}) - E_t| over valid pixels.

    E_t = O_t - HR_t for (B, C, T, H, W) clips; W warps frame t-1 onto t with `grid` (B, T-1, H, W, 2)
    (bilinear, as E_warp's warp) and `valid` (B, T-1, H, W) masks occlusions and motion boundaries.
    An exact output costs 0, and so does an error that moves with the scene; an error that changes
    from frame to frame (flicker, detail that swims or sticks to the pixel grid) costs.
    """
    error = output - hr
    batch, channels, frames, height, width = error.shape
    previous = error[:, :, :-1].transpose(1, 2).reshape(-1, channels, height, width)
    warped = F.grid_sample(
        previous,
        grid.reshape(-1, height, width, 2),
        mode="bilinear",
        padding_mode="border",
        align_corners=True,
    ).reshape(batch, frames - 1, channels, height, width)
    current = error[:, :, 1:].transpose(1, 2)
    mask = valid[:, :, None].to(error.dtype)
    kept = mask.sum() * channels
    return ((warped - current).abs() * mask).sum() / kept.clamp(min=1.0)


def psnr(output: torch.Tensor, target: torch.Tensor) -> float:
    """RGB PSNR in dB of [0, 1] tensors (a training log metric; evaluation uses the Y channel)."""
    mse = F.mse_loss(output.clamp(0, 1), target).item()
    return float("inf") if mse == 0 else -10.0 * torch.log10(torch.tensor(mse)).item()
