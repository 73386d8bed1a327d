"""Synthetic test media: small H.264 mp4 clips with optional AAC audio, written with PyAV."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

AUDIO_RATE = 44100
AUDIO_CHUNK = 1024


def make_frame(index: int, width: int, height: int) -> np.ndarray:
    """Smooth moving RGB pattern for frame `index`: (height, width, 3) uint8."""
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    phase = index / 12.0
    r = 128 + 100 * np.sin(2 * np.pi * (x + phase)) + 0 * y
    g = 128 + 100 * np.cos(2 * np.pi * (y - phase)) + 0 * x
    b = 64 + 128 * (x * y) + 8 * (index % 4)
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


def make_test_clip(
    path: str | Path,
    *,
    frames: int,
    width: int,
    height: int,
    fps: int | Fraction = 24,
    audio: bool = True,
    vfr_pts: Sequence[int] | None = None,
) -> Path:
    """Write an H.264 mp4 of `make_frame` frames (plus a mono AAC sine tone of the same length).

    `vfr_pts`, if given, are the frames' presentation times in milliseconds (one per frame,
    increasing); otherwise frames are spaced 1/fps apart. Sizes must be even.
    """
    path = Path(path)
    fps = Fraction(fps)
    if vfr_pts is not None:
        if len(vfr_pts) != frames:
            raise ValueError("vfr_pts needs one entry per frame")
        time_base = Fraction(1, 1000)
        pts_list = [int(p) for p in vfr_pts]
        duration = Fraction(pts_list[-1], 1000) + 1 / fps
    else:
        time_base = 1 / fps
        pts_list = list(range(frames))
        duration = frames / fps
    with av.open(str(path), mode="w") as out:
        video = out.add_stream("libx264", rate=fps, time_base=time_base, options={"crf": "12"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = out.add_stream("aac", rate=AUDIO_RATE, layout="mono") if audio else None
        for i, pts in enumerate(pts_list):
            frame = av.VideoFrame.from_ndarray(make_frame(i, width, height), format="rgb24")
            frame.pts, frame.time_base = pts, time_base
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            total = round(duration * AUDIO_RATE)
            t = np.arange(total, dtype=np.float32) / AUDIO_RATE
            samples = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
            for start in range(0, total, AUDIO_CHUNK):
                chunk = samples[None, start : start + AUDIO_CHUNK]
                aframe = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                aframe.sample_rate, aframe.pts = AUDIO_RATE, start
                aframe.time_base = Fraction(1, AUDIO_RATE)
                out.mux(sound.encode(aframe))
            out.mux(sound.encode(None))
    return path
