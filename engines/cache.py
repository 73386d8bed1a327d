"""TensorRT engine cache: where a built plan lives and the key that says it fits.

A plan runs only with the TensorRT version and GPU architecture that built it, for the profile and
precision it was built with, so the key hashes exactly those with the ONNX file:
sha256(onnx) + TensorRT version + compute capability + profile + precision. Folders are sharded by
`sm<cc>/trt<version>` so stale engines of another GPU or release are easy to see and delete.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from engines.base import ShapeProfile


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def profile_json(profile: ShapeProfile) -> str:
    """Canonical text of a profile: names sorted, shapes as lists."""
    return json.dumps({name: [list(s) for s in shapes] for name, shapes in sorted(profile.shapes.items())})


@dataclass(frozen=True)
class EngineKey:
    onnx_sha256: str
    trt_version: str
    compute_capability: tuple[int, int]
    profile: ShapeProfile
    precision: str

    @property
    def digest(self) -> str:
        fields = {
            "onnx_sha256": self.onnx_sha256,
            "trt_version": self.trt_version,
            "compute_capability": list(self.compute_capability),
            "profile": profile_json(self.profile),
            "precision": self.precision,
        }
        return sha256_bytes(json.dumps(fields, sort_keys=True).encode())

    def plan_path(self, cache_dir: Path, component: str) -> Path:
        major, minor = self.compute_capability
        return (
            cache_dir
            / f"sm{major}{minor}"
            / f"trt{self.trt_version}"
            / f"{component}-{self.precision}-{self.digest[:24]}.plan"
        )

    def timing_cache_path(self, cache_dir: Path) -> Path:
        """One timing cache per GPU architecture and TensorRT version (it is specific to both)."""
        major, minor = self.compute_capability
        return cache_dir / f"sm{major}{minor}" / f"trt{self.trt_version}" / "timing.cache"

    def metadata(self) -> dict[str, object]:
        return {
            "onnx_sha256": self.onnx_sha256,
            "trt_version": self.trt_version,
            "compute_capability": list(self.compute_capability),
            "profile": json.loads(profile_json(self.profile)),
            "precision": self.precision,
            "key": self.digest,
        }
