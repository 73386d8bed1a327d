"""Train the f16 decoder of a full-scale (DOVE / CogVideoX1.5) checkpoint with the lower-bound guidance.

The recipe is the tiny model's (training.objectives): an HR clip's x2-downscaled version is encoded by the
frozen VAE (the posterior mean z); the f16 decoder maps z to the HR clip, guided early on by the bound
up2(D8(z)), the frozen f8 decoder's output upsampled x2:
    L = |D16(z) - HR| + w(s) |D16(z) - up2(D8(z))|,  w falling linearly to 0 over `--guidance-fraction`.
Only the f16 decoder trains (warm-started from the f8 decoder, or from DIR/f16_decoder/ if present).
Only the VAE is loaded (the DiT is not needed). Clips are random `--crop` px crops of `--clip-frames`
consecutive frames, decoded with PyAV; each rank (and loader worker) reads its own share of the videos
with its own seed.

Eight GPUs on one node:

    torchrun --nproc_per_node 8 -m training.fullscale_f16 --checkpoint DIR --videos HR_VIDEO_DIR \
        --steps 10000 --batch 1 --clip-frames 9 --crop 64 --lr 5e-6 --bf16 --gradient-checkpointing \
        --guidance-weight 1.0 --guidance-fraction 0.5 --seed 0

`python -m training.fullscale_f16 ...` runs the same single-process. Rank 0 appends JSON lines to
OUT/f16_training_log.jsonl and writes OUT/f16_decoder/model.safetensors (atomically; every
`--save-every` steps and at the end), which `models.fullscale.checkpoint.load_checkpoint` loads.
OUT defaults to DIR. The optimiser state is not saved: a rerun restarts AdamW from the saved weights.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from diffusers import AutoencoderKLCogVideoX
from safetensors.torch import load_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.checkpoint import checkpoint
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from models.fullscale.checkpoint import F16_FILE, CheckpointError, save_f16_decoder
from models.fullscale.f16_decoder import CogVideoXF16Decoder
from models.fullscale.pipeline import decode_latents
from training.objectives import guidance_weight, guided_decoder_loss, upsample_bound
from training.recipe import downscale2
from worker.video_io import VideoError, iter_frames, probe_video

LOG_FILE = "f16_training_log.jsonl"
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".y4m"})
SIZE_MULTIPLE = 16  # HR crop: x2 down, then the VAE's f8


class InputError(ValueError):
    """A bad argument or video; the message names it."""


# --- arguments --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="training.fullscale_f16", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="diffusers-layout DOVE directory")
    parser.add_argument("--videos", type=Path, nargs="+", required=True, help="HR video files or dirs")
    parser.add_argument("--out", type=Path, default=None, help="where f16_decoder/ goes (default: DIR)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1, help="clips per rank per step")
    parser.add_argument("--clip-frames", type=int, default=9, help="8n+1 consecutive frames")
    parser.add_argument("--crop", type=int, default=64, help="HR crop size, a multiple of 16")
    parser.add_argument("--lr", type=float, default=5e-6)
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (weights stay fp32)")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="recompute the trunk")
    parser.add_argument("--guidance-weight", type=float, default=1.0)
    parser.add_argument("--guidance-fraction", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-every", type=int, default=0, help="also save every S steps (0: at the end)")
    parser.add_argument("--log-every", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="data loader processes per rank")
    parser.add_argument("--shuffle-buffer", type=int, default=64, help="clips mixed before batching")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = args.checkpoint
    return args


def check_settings(args: argparse.Namespace) -> None:
    """Raise InputError naming the first bad number."""
    if args.clip_frames < 1 or (args.clip_frames - 1) % 8:
        raise InputError(f"--clip-frames must be 8n+1 (9, 17, 25, ...), got {args.clip_frames}")
    if args.crop < SIZE_MULTIPLE or args.crop % SIZE_MULTIPLE:
        raise InputError(f"--crop must be a positive multiple of {SIZE_MULTIPLE}, got {args.crop}")
    positive = {"--steps": args.steps, "--batch": args.batch, "--lr": args.lr, "--log-every": args.log_every}
    positive["--shuffle-buffer"] = args.shuffle_buffer
    for name, value in positive.items():
        if value <= 0:
            raise InputError(f"{name} must be positive, got {value}")
    for name, value in {"--save-every": args.save_every, "--workers": args.workers}.items():
        if value < 0:
            raise InputError(f"{name} must be >= 0, got {value}")
    if args.guidance_weight < 0:
        raise InputError(f"--guidance-weight must be >= 0, got {args.guidance_weight}")
    if not 0 <= args.guidance_fraction <= 1:
        raise InputError(f"--guidance-fraction must be in [0, 1], got {args.guidance_fraction}")


def check_checkpoint(directory: Path) -> None:
    """The parts training reads: the VAE's config and weights (CheckpointError otherwise)."""
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: not a directory")
    vae = directory / "vae"
    if not (vae / "config.json").is_file():
        raise CheckpointError(f"{directory}: missing vae/config.json (expected the diffusers layout)")
    if not any(vae.glob("diffusion_pytorch_model*.safetensors")) and not any(vae.glob("*.bin")):
        raise CheckpointError(f"{directory}: missing vae/diffusion_pytorch_model.safetensors")


def list_videos(paths: Sequence[Path]) -> list[Path]:
    """Files as given, directories expanded to their video files (sorted); InputError if none."""
    videos: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise InputError(f"{path}: no video files ({', '.join(sorted(VIDEO_SUFFIXES))})")
            videos.extend(found)
        elif path.is_file():
            videos.append(path)
        else:
            raise InputError(f"{path}: no such video file or directory")
    return videos


def check_video(path: Path, frames: int, crop: int) -> None:
    """InputError naming `path` if PyAV cannot read it or it is too small or too short for a clip."""
    try:
        info = probe_video(path)
    except VideoError as exc:
        raise InputError(f"{path}: not a readable video: {exc}") from exc
    if min(info.width, info.height) < crop:
        raise InputError(f"{path}: {info.width}x{info.height} is smaller than the {crop} px crop")
    if info.frames_estimate is not None and info.frames_estimate < frames:
        raise InputError(f"{path}: about {info.frames_estimate} frames, fewer than --clip-frames {frames}")


# --- data -------------------------------------------------------------------------------------------


def random_window(recent: Sequence[np.ndarray], crop: int, rng: np.random.Generator) -> np.ndarray:
    """The same random `crop` x `crop` window of every frame: (T, crop, crop, 3) uint8."""
    height, width = recent[0].shape[:2]
    y, x = int(rng.integers(0, height - crop + 1)), int(rng.integers(0, width - crop + 1))
    return np.stack([frame[y : y + crop, x : x + crop] for frame in recent])


def video_clips(path: Path, frames: int, crop: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """One sequential decode of `path`: a random crop of `frames` consecutive frames every 1..frames."""
    recent: deque[np.ndarray] = deque(maxlen=frames)
    wait = int(rng.integers(1, frames + 1))
    for frame in iter_frames(path):
        recent.append(frame.image)
        wait -= 1
        if len(recent) == frames and wait <= 0:
            yield random_window(recent, crop, rng)
            wait = int(rng.integers(1, frames + 1))


def endless_clips(
    videos: Sequence[Path], frames: int, crop: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Pass after pass over `videos`, in a fresh random order each pass."""
    while True:
        produced = 0
        for index in rng.permutation(len(videos)):
            for clip in video_clips(videos[int(index)], frames, crop, rng):
                produced += 1
                yield clip
        if not produced:
            names = ", ".join(str(v) for v in videos)
            raise InputError(f"no {frames}-frame clip of {crop} px in any of: {names}")


def shuffled(source: Iterator[np.ndarray], size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """A shuffle buffer of `size` clips, so that a batch mixes windows from far apart."""
    buffer = [next(source) for _ in range(size)]
    while True:
        index = int(rng.integers(size))
        yield buffer[index]
        buffer[index] = next(source)


def shard(videos: Sequence[Path], index: int, count: int) -> list[Path]:
    """Every `count`-th video from `index` (DistributedSampler-like), or all if there are too few."""
    return list(videos[index::count]) if len(videos) >= count else list(videos)


class ClipStream(IterableDataset):
    """Endless HR clips (T, crop, crop, 3) uint8; each (rank, worker) its own videos and seed."""

    def __init__(
        self, videos: Sequence[Path], frames: int, crop: int, seed: int, rank: int, world: int, buffer: int
    ) -> None:
        super().__init__()
        self.videos, self.frames, self.crop = list(videos), frames, crop
        self.seed, self.rank, self.world, self.buffer = seed, rank, world, buffer

    def __iter__(self) -> Iterator[np.ndarray]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rng = np.random.default_rng([self.seed, self.rank, worker])
        mine = shard(self.videos, self.rank * workers + worker, self.world * workers)
        return shuffled(endless_clips(mine, self.frames, self.crop, rng), self.buffer, rng)


def to_video_tensor(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(B, T, H, W, 3) uint8 -> (B, 3, T, H, W) float in [0, 1] on `device`."""
    return batch.to(device, non_blocking=True).permute(0, 4, 1, 2, 3).float().div(255.0)


# --- model ------------------------------------------------------------------------------------------


class F16Head(nn.Module):
    """decode_latents with the f16 decoder as one module call, so DDP sees one forward per step."""

    def __init__(self, decoder: CogVideoXF16Decoder, frames_per_batch: int) -> None:
        super().__init__()
        self.decoder = decoder
        self.frames_per_batch = frames_per_batch

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return decode_latents(self.decoder, z, self.frames_per_batch)


@dataclass
class Models:
    vae: AutoencoderKLCogVideoX  # frozen: encoder and f8 decoder
    head: F16Head  # the trained part (DDP-wrapped in `train`)


def load_models(directory: Path) -> Models:
    """The frozen VAE and the f16 decoder (DIR/f16_decoder/ if present, else the f8's copy), fp32, CPU."""
    check_checkpoint(directory)
    try:
        vae = AutoencoderKLCogVideoX.from_pretrained(directory / "vae", torch_dtype=torch.float32)
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{directory}: cannot load the VAE: {exc}") from exc
    decoder = CogVideoXF16Decoder.from_f8(vae.decoder, dict(vae.config))
    saved = directory / F16_FILE
    if saved.exists():
        try:
            decoder.load_state_dict(load_file(str(saved)), strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{saved}: does not match the VAE's decoder: {exc}") from exc
    vae.requires_grad_(False).eval()
    return Models(vae=vae, head=F16Head(decoder.train(), vae.num_latent_frames_batch_size))


def enable_gradient_checkpointing(decoder: CogVideoXF16Decoder) -> None:
    """What diffusers' ModelMixin.enable_gradient_checkpointing sets up, for this plain nn.Module."""
    decoder.gradient_checkpointing = True
    decoder._gradient_checkpointing_func = functools.partial(checkpoint, use_reentrant=False)


def to_unit(video: torch.Tensor) -> torch.Tensor:
    return video.float() * 0.5 + 0.5


def guided_loss(
    vae: AutoencoderKLCogVideoX, head: nn.Module, hr: torch.Tensor, weight: float, bf16: bool = False
) -> torch.Tensor:
    """HR (B, 3, T, H, W) in [0, 1] -> |D16(z) - HR| + w |D16(z) - up2(D8(z))|, z = E(down2(HR))."""
    autocast = torch.autocast(hr.device.type, dtype=torch.bfloat16, enabled=bf16)
    with torch.no_grad(), autocast:
        z = vae.encode(downscale2(hr)).latent_dist.mode()
        f8 = decode_latents(vae.decoder, z, vae.num_latent_frames_batch_size)
    bound = upsample_bound(to_unit(f8).clamp(0, 1))
    with autocast:
        output = to_unit(head(z))
    if output.shape != hr.shape:
        raise RuntimeError(f"the f16 decoder gave {tuple(output.shape)} for HR {tuple(hr.shape)}")
    return guided_decoder_loss(output, hr, bound, weight)


# --- distributed, logging, saving -------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    rank: int
    world: int
    device: torch.device


def start_distributed() -> Placement:
    """torchrun's environment -> a process group (nccl on CUDA, else gloo); plain python -> one rank."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if "WORLD_SIZE" not in os.environ:
        return Placement(rank=0, world=1, device=device)
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return Placement(rank=dist.get_rank(), world=dist.get_world_size(), device=device)


def mean_over_ranks(value: torch.Tensor) -> float:
    value = value.detach().float().clone()
    if dist.is_initialized():
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return float(value.item())


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, DistributedDataParallel) else module


def save_atomically(out: Path, decoder: CogVideoXF16Decoder) -> Path:
    """Write OUT/f16_decoder/model.safetensors via a temporary file in OUT and a rename."""
    target = out / F16_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".f16_decoder.", dir=out))
    try:
        os.replace(save_f16_decoder(staging, decoder), target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def log_record(path: Path, record: dict[str, float | int]) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


# --- training ---------------------------------------------------------------------------------------


def prepare(args: argparse.Namespace) -> list[Path]:
    """Every check that needs no process group (all ranks fail alike); the video list."""
    check_settings(args)
    check_checkpoint(args.checkpoint)
    videos = list_videos(args.videos)
    for video in videos:
        check_video(video, args.clip_frames, args.crop)
    return videos


def build_loader(args: argparse.Namespace, videos: list[Path], place: Placement) -> Iterator[torch.Tensor]:
    stream = ClipStream(
        videos, args.clip_frames, args.crop, args.seed, place.rank, place.world, args.shuffle_buffer
    )
    loader = DataLoader(
        stream, batch_size=args.batch, num_workers=args.workers, pin_memory=place.device.type == "cuda"
    )
    return iter(loader)


def wrap(head: F16Head, place: Placement) -> nn.Module:
    head = head.to(place.device)
    if not dist.is_initialized():
        return head
    device_ids = [place.device.index] if place.device.type == "cuda" else None
    return DistributedDataParallel(head, device_ids=device_ids)


def train(args: argparse.Namespace) -> Path | None:
    """Run the whole stage; returns the saved weights' path on rank 0 (None elsewhere)."""
    videos = prepare(args)
    place = start_distributed()
    try:
        return run_steps(args, videos, place)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_steps(args: argparse.Namespace, videos: list[Path], place: Placement) -> Path | None:
    torch.manual_seed(args.seed)
    models = load_models(args.checkpoint)
    vae = models.vae.to(place.device)
    if args.gradient_checkpointing:
        enable_gradient_checkpointing(models.head.decoder)
    head = wrap(models.head, place)
    parameters = [p for p in head.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=0.0)
    batches = build_loader(args, videos, place)
    leader = place.rank == 0
    if leader:
        args.out.mkdir(parents=True, exist_ok=True)
    saved: Path | None = None
    started = time.perf_counter()
    for step in range(args.steps):
        began = time.perf_counter()
        weight = guidance_weight(step, args.steps, args.guidance_weight, args.guidance_fraction)
        loss = guided_loss(vae, head, to_video_tensor(next(batches), place.device), weight, args.bf16)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(parameters, 1.0)
        optimiser.step()
        last = step == args.steps - 1
        if step % args.log_every == 0 or last:
            mean_loss = mean_over_ranks(loss)  # every rank joins the all-reduce
            if leader:
                seconds, elapsed = time.perf_counter() - began, time.perf_counter() - started
                record = {"step": step, "loss": mean_loss, "guidance_weight": weight}
                log_record(args.out / LOG_FILE, record | {"seconds": seconds, "elapsed_s": elapsed})
        if leader and (last or (args.save_every and (step + 1) % args.save_every == 0)):
            saved = save_atomically(args.out, unwrap(head).decoder)
    return saved


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        saved = train(args)
    except (InputError, CheckpointError) as exc:
        print(f"training.fullscale_f16: error: {exc}", file=sys.stderr)
        return 2
    if saved is not None:
        print(f"saved {saved}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
