"""Output encoding choices, importable without PyAV or torch (the API validates against them)."""

from __future__ import annotations

ENCODERS = {"h264": "libx264", "h265": "libx265"}
_FAST_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast")
PRESETS = (*_FAST_PRESETS, "medium", "slow", "slower", "veryslow", "placebo")
CONTAINER_FORMATS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov"}
