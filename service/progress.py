"""Frames per second and time to finish of a running attempt, from its frames done and seconds elapsed.

The rate is the attempt's average since its upscale started (total frames / total seconds, not a
moving window): frames leave the model a chunk at a time, so a short window would swing between a
burst and a pause, while the running average settles within a few chunks.
"""

from __future__ import annotations


def progress_rate(done: int, total: int | None, elapsed_s: float) -> tuple[float | None, float | None]:
    """(fps, eta_s) after `done` frames in `elapsed_s` seconds; `total` is the expected frame count.

    fps is None before the first frame; eta_s (remaining frames / fps) is None while fps or `total`
    is unknown, and 0 once `done` reaches `total`.
    """
    if done <= 0 or elapsed_s <= 0:
        return None, None
    fps = done / elapsed_s
    if total is None:
        return round(fps, 3), None
    return round(fps, 3), round(max(total - done, 0) / fps, 2)
