"""`make demo`: make a low-res clip from a real photograph, upscale it 4x, and compare with bicubic.

The clip pans a 320x176 window across scikit-image's `coffee` photograph (public domain, shipped inside
the scikit-image wheel), so nothing is downloaded.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from models.registry import resolve_model
from worker.upscale_file import UpscaleOptions, upscale_video
from worker.video_io import VideoWriter, iter_frames

CLIP_SIZE = (320, 176)  # (width, height) of the low-res clip
CLIP_FRAMES = 24
CLIP_FPS = Fraction(24)
LABEL_HEIGHT = 28


def panned_frames(photo: np.ndarray, frames: int, size: tuple[int, int]) -> list[np.ndarray]:
    """A smooth synthetic camera pan (with a slight drift and zoom) over `photo`, sub-pixel accurate."""
    image = Image.fromarray(photo)
    width, height = size
    span_x, span_y = image.width - width * 1.06, image.height - height * 1.06
    clip = []
    for i in range(frames):
        phase = i / max(frames - 1, 1)
        zoom = 1.0 + 0.05 * phase
        x0 = span_x * (0.15 + 0.7 * phase)
        y0 = span_y * (0.5 + 0.35 * math.sin(2 * math.pi * phase))
        affine = (zoom, 0.0, x0, 0.0, zoom, y0)  # output (x, y) samples input (zoom*x + x0, zoom*y + y0)
        frame = image.transform(size, Image.Transform.AFFINE, affine, resample=Image.Resampling.BICUBIC)
        clip.append(np.asarray(frame))
    return clip


def write_sample_clip(path: Path) -> Path:
    from skimage import data

    with VideoWriter(
        path, width=CLIP_SIZE[0], height=CLIP_SIZE[1], fps=CLIP_FPS, time_base=1 / CLIP_FPS, crf=12
    ) as writer:
        for index, frame in enumerate(panned_frames(data.coffee(), CLIP_FRAMES, CLIP_SIZE)):
            writer.write(frame, index)
    return path


def comparison_png(lr_clip: Path, sr_clip: Path, out: Path, frame_index: int, model_label: str) -> Path:
    """Side by side: bicubic x4 of the low-res frame (left) and the model output (right), labelled."""
    lr = next(f.image for i, f in enumerate(iter_frames(lr_clip)) if i == frame_index)
    sr = next(f.image for i, f in enumerate(iter_frames(sr_clip)) if i == frame_index)
    height, width = sr.shape[:2]
    bicubic = Image.fromarray(lr).resize((width, height), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (2 * width, height + LABEL_HEIGHT), "white")
    canvas.paste(bicubic, (0, LABEL_HEIGHT))
    canvas.paste(Image.fromarray(sr), (width, LABEL_HEIGHT))
    draw = ImageDraw.Draw(canvas)
    draw.text((8, 8), f"bicubic x4 (frame {frame_index})", fill="black")
    draw.text((width + 8, 8), f"{model_label} (frame {frame_index})", fill="black")
    canvas.save(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="demo_output", help="directory for the demo files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    lr_clip = write_sample_clip(out / "sample_lr.mp4")
    loaded = resolve_model()
    print(f"model: {loaded.description}")
    result = upscale_video(lr_clip, out / "sample_x4.mp4", loaded.model, UpscaleOptions(preset="fast"))
    label = "FastVSR x4" if loaded.trained else "FastVSR x4, UNTRAINED (= bicubic)"
    png = comparison_png(lr_clip, result.output, out / "comparison.png", CLIP_FRAMES // 2, label)
    seconds = result.stats.seconds
    print(f"input clip:  {lr_clip} ({CLIP_SIZE[0]}x{CLIP_SIZE[1]}, {CLIP_FRAMES} frames)")
    print(f"output clip: {result.output} ({result.width}x{result.height}, {result.frames} frames)")
    print(f"comparison:  {png} (left bicubic, right model)")
    print("stage seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in seconds.items()))
    print(f"MACs: {result.stats.macs['total'] / result.frames / 1e9:.2f} GMACs per output frame")
    return 0


if __name__ == "__main__":
    sys.exit(main())
