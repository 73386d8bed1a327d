"""Debian's wallpaper photographs as training material: pinned bytes, installed or cached, clear errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from training import debian_photos, sources
from training.debian_photos import DebianPhoto, PhotoUnavailableError


@pytest.fixture
def cached_photo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A real JPEG (scikit-image's coffee) registered as a Debian photo and placed in the cache."""
    from PIL import Image

    monkeypatch.setenv("VSR_DATA_CACHE", str(tmp_path))
    relative = "usr/share/backgrounds/test/Coffee.jpg"
    path = tmp_path / "debian" / "mate-backgrounds" / relative
    path.parent.mkdir(parents=True)
    big = Image.fromarray(sources.load_photo("coffee")).resize((1800, 1200))
    big.save(path, quality=95)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setitem(
        debian_photos.PHOTOS, "test_Coffee", DebianPhoto("mate-backgrounds", relative, digest)
    )
    return "test_Coffee", path


def test_a_cached_photo_with_the_pinned_bytes_loads_shrunk_to_1080(cached_photo: tuple[str, Path]) -> None:
    name, path = cached_photo
    assert debian_photos.photo_file(name) == path
    assert debian_photos.missing_packages([name]) == []
    image = sources.load_photo(name)
    assert image.shape == (1080, 1620, 3) and image.dtype == np.uint8
    assert image.std() > 20  # a real picture, not a fill


def test_changed_bytes_are_refused_with_the_fix(cached_photo: tuple[str, Path]) -> None:
    name, path = cached_photo
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(PhotoUnavailableError, match=r"mate-backgrounds 1\.26\.0-1.*apt-get install"):
        debian_photos.photo_file(name)
    assert debian_photos.missing_packages([name]) == ["mate-backgrounds"]


def test_fetching_without_apt_get_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(PhotoUnavailableError, match="needs apt-get"):
        debian_photos.fetch_packages(["mate-backgrounds"])
    debian_photos.fetch_packages([])  # nothing to fetch: no apt-get needed


def test_photo_sets_hold_out_validation_photos() -> None:
    skimage_training, skimage_validation = sources.photo_set("skimage")
    training, validation = sources.photo_set("all")
    assert set(skimage_training) < set(training) and set(skimage_validation) < set(validation)
    assert not set(training) & set(validation)
    assert all(name in debian_photos.PHOTOS for name in sources.DEBIAN_VALIDATION_PHOTOS)
    assert {p.package for p in debian_photos.PHOTOS.values()} == set(debian_photos.PACKAGES)
    with pytest.raises(ValueError, match="photo set"):
        sources.photo_set("web")


def test_every_source_has_a_licence() -> None:
    listed = sources.sources()
    assert {s.name for s in listed} >= set(debian_photos.PHOTOS)
    assert all(s.licence for s in listed)
