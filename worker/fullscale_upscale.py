"""Upscale a video file with a full-scale (DOVE / CogVideoX1.5) checkpoint: the operator's check.

    python -m worker.fullscale_upscale CHECKPOINT INPUT OUTPUT [--pipeline fastvsr|baseline]
        [--device cuda] [--dtype bfloat16] [--chunk-frames 33] [--crf 18] [--preset medium]

CHECKPOINT is a directory or an s3://bucket/prefix (fetched into --cache-dir with the S3 settings of the
service's environment: VSR_S3_*). Frames are decoded with PyAV, upscaled in chunks of `--chunk-frames`
(8n+1; each chunk on its own, as DOVE does without its overlap option), and written with the input's
timestamps, audio and colour tags through the same atomic writer as `vsr upscale`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from models.fullscale.checkpoint import CheckpointError, load_checkpoint
from models.fullscale.pipeline import FRAME_GROUP, FullScaleVSR, Pipeline
from worker.checkpoint_fetch import FetchError, fetch_checkpoint
from worker.video_io import Frame, VideoError, VideoWriter, iter_frames, probe_video


def chunks(frames: Iterator[Frame], size: int) -> Iterator[list[Frame]]:
    batch: list[Frame] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@torch.inference_mode()
def upscale_chunk(model: FullScaleVSR, images: Sequence[np.ndarray], pipeline: Pipeline) -> list[np.ndarray]:
    """(H, W, 3) uint8 frames -> the 4x frames, same count."""
    parameter = next(model.parameters())
    clip = torch.from_numpy(np.stack(images)).to(parameter.device)
    clip = clip.permute(3, 0, 1, 2).unsqueeze(0).to(parameter.dtype) / 255.0
    out = model(clip, pipeline)[0].permute(1, 2, 3, 0).float()
    return list((out * 255.0).round().clamp(0, 255).to(torch.uint8).cpu().numpy())


def upscale_file(
    model: FullScaleVSR,
    source: Path,
    output: Path,
    *,
    pipeline: Pipeline = "fastvsr",
    chunk_frames: int = 33,
    crf: int = 18,
    preset: str = "medium",
) -> int:
    """Upscale `source` into `output`; the number of frames written."""
    if chunk_frames < 1 or (chunk_frames - 1) % FRAME_GROUP:
        raise VideoError(
            "unsupported_option", f"chunk_frames must be 8n+1 (9, 17, 33, ...), got {chunk_frames}"
        )
    info = probe_video(source)
    with VideoWriter(
        output,
        width=4 * info.width,
        height=4 * info.height,
        fps=info.fps,
        time_base=info.time_base,
        crf=crf,
        preset=preset,
        audio_source=source,
        subtitle_source=source,
        colour=info.colour,
    ) as writer:
        for batch in chunks(iter_frames(source), chunk_frames):
            for frame, image in zip(
                batch, upscale_chunk(model, [f.image for f in batch], pipeline), strict=True
            ):
                writer.write(image, frame.pts)
        return writer.frames_written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--pipeline", choices=["fastvsr", "baseline"], default="fastvsr")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="bfloat16")
    parser.add_argument("--chunk-frames", type=int, default=33)
    parser.add_argument("--crf", type=int, default=18)
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "vsr" / "checkpoints")
    args = parser.parse_args(argv)
    try:
        client = None
        if str(args.checkpoint).startswith("s3://"):
            from service.settings import load_settings
            from service.storage import S3Storage

            settings = load_settings()
            if settings.s3 is None:
                raise FetchError("an s3:// checkpoint needs the VSR_S3_* settings")
            client = S3Storage(settings.s3).client
        directory = fetch_checkpoint(args.checkpoint, args.cache_dir, client)
        model = load_checkpoint(directory, getattr(torch, args.dtype)).to(args.device)
        start = time.perf_counter()
        frames = upscale_file(
            model,
            args.input,
            args.output,
            pipeline=args.pipeline,
            chunk_frames=args.chunk_frames,
            crf=args.crf,
            preset=args.preset,
        )
    except (CheckpointError, FetchError) as exc:
        print(f"vsr: error: bad_checkpoint: {exc}", file=sys.stderr)
        return 1
    except VideoError as exc:
        print(f"vsr: error: {exc.code}: {exc}", file=sys.stderr)
        return 1
    print(f"{args.output}: {frames} frames in {time.perf_counter() - start:.1f} s ({args.pipeline})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
