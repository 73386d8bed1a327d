"""`make demo`: the whole service path on embedded defaults.

It makes a low-res clip from a real photograph, starts the service (API + one in-process worker, an
in-process Redis substitute and local storage), submits the clip over HTTP, follows the job, downloads
the 4x result and compares a frame with bicubic. The clip pans a 320x176 window across scikit-image's
`coffee` photograph (public domain, shipped inside the scikit-image wheel), so nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import socket
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image, ImageDraw

from models.registry import shipped_weights
from service.settings import load_settings
from vsr.serve import ServiceThreads, with_local_tenant
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


def write_sample_clip(path: Path, frames: int = CLIP_FRAMES) -> Path:
    from skimage import data

    with VideoWriter(
        path, width=CLIP_SIZE[0], height=CLIP_SIZE[1], fps=CLIP_FPS, time_base=1 / CLIP_FPS, crf=12
    ) as writer:
        for index, frame in enumerate(panned_frames(data.coffee(), frames, CLIP_SIZE)):
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_job(service: ServiceThreads, key: str, clip: Path, result: Path) -> dict[str, Any]:
    """Submit `clip` over HTTP, print progress until the job ends, download the result."""
    headers = {"Authorization": f"Bearer {key}"}
    with clip.open("rb") as handle:
        response = httpx.post(
            f"{service.url}/v1/jobs",
            headers=headers,
            files={"file": (clip.name, handle, "video/mp4")},
            data={"params": json.dumps({"preset": "fast", "crf": 18})},
        )
    response.raise_for_status()
    job = response.json()
    print(f"submitted job {job['id']} ({response.status_code} {job['status']})")
    shown = ""
    while job["status"] not in ("succeeded", "failed", "canceled"):
        time.sleep(0.5)
        job = httpx.get(job["urls"]["get"], headers=headers).raise_for_status().json()
        done, total = job["progress"]["frames_done"], job["progress"]["frames_total"]
        line = f"  {job['status']}: {done}/{total or '?'} frames"
        if line != shown:
            print(line, flush=True)
            shown = line
    if job["status"] != "succeeded":
        raise SystemExit(f"demo job {job['status']}: {job['error']}")
    download = httpx.get(job["urls"]["result"], headers=headers, follow_redirects=True).raise_for_status()
    result.write_bytes(download.content)
    return dict(job)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="demo_output", help="directory for the demo files")
    parser.add_argument(
        "--frames", type=int, default=CLIP_FRAMES, help=f"frames in the sample clip (default {CLIP_FRAMES})"
    )
    args = parser.parse_args(argv)
    if args.frames < 1:
        parser.error("--frames must be >= 1")
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    lr_clip = write_sample_clip(out / "sample_lr.mp4", args.frames)
    # Embedded defaults, whatever VSR_* variables this shell has: no Redis server, local storage.
    settings, key = with_local_tenant(
        load_settings(redis_url=None, s3=None, tenants=[], data_dir=out / "service-data")
    )
    assert key is not None
    service = ServiceThreads(settings, port=free_port()).start()
    print(f"service: {service.url} (embedded: in-process Redis substitute, local storage, one worker)")
    try:
        job = run_job(service, key, lr_clip, out / "sample_x4.mp4")
    finally:
        service.stop()
    trained = shipped_weights(settings.default_model) is not None
    label = "FastVSR x4" if trained else "FastVSR x4, UNTRAINED (= bicubic)"
    png = comparison_png(lr_clip, out / "sample_x4.mp4", out / "comparison.png", args.frames // 2, label)
    output, macs = job["output"], job["macs"]
    print(
        f"model:       {job['params']['model']}" + ("" if trained else " (UNTRAINED: output equals bicubic)")
    )
    print(f"input clip:  {lr_clip} ({CLIP_SIZE[0]}x{CLIP_SIZE[1]}, {args.frames} frames)")
    size = f"{output['width']}x{output['height']}, {output['frames']} frames, {output['bytes']} bytes"
    print(f"output clip: {out / 'sample_x4.mp4'} ({size})")
    print(f"comparison:  {png} (left bicubic, right model)")
    print("job stage seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in job["timings"].items()))
    per_frame = macs["total"] / output["frames"] / 1e9
    print(f"job MACs: {macs['total'] / 1e9:.1f} G total, {per_frame:.2f} G per output frame")
    return 0


if __name__ == "__main__":
    sys.exit(main())
