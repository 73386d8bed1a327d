"""Photographs shipped in Debian packages (wallpapers), fetched and checked for training.

Each photo is a file of a pinned package version, named with its sha256. A file is read from the
installed package when its bytes match (`apt-get install mate-backgrounds plasma-workspace-wallpapers`),
else from a cache that `fetch_packages` fills with `apt-get download` + `dpkg-deb -x` (no root needed).
Only photographs are listed: the packages' drawn and abstract wallpapers are left out. Licences are the
packages' debian/copyright: GPL-2+ for every file listed here.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

PACKAGES: dict[str, str] = {  # package -> the pinned version (Debian 12 "bookworm")
    "mate-backgrounds": "1.26.0-1",
    "plasma-workspace-wallpapers": "4:5.27.5-2",
}
LICENCES: dict[str, str] = {
    "mate-backgrounds": "GPL-2+ (MATE Backgrounds; per-file authors in debian/copyright)",
    "plasma-workspace-wallpapers": "GPL-2+ (KDE Visual Design Group)",
}


@dataclass(frozen=True)
class DebianPhoto:
    package: str
    path: str  # inside the package, without the leading /
    sha256: str


PHOTOS: dict[str, DebianPhoto] = {
    "kde_BytheWater": DebianPhoto(
        "plasma-workspace-wallpapers",
        "usr/share/wallpapers/BytheWater/contents/images/2560x1600.jpg",
        "c272434ef39f2abf1ed48a15a8910088020f3165329a5092f3940ec9464bc05f",
    ),
    "kde_ColdRipple": DebianPhoto(
        "plasma-workspace-wallpapers",
        "usr/share/wallpapers/ColdRipple/contents/images/2560x1600.jpg",
        "05bef6722fc0ed81292cceb3ed026c38d17e510f3c84be7d68610c2b1a723c3f",
    ),
    "kde_ColorfulCups": DebianPhoto(
        "plasma-workspace-wallpapers",
        "usr/share/wallpapers/ColorfulCups/contents/images/2560x1600.jpg",
        "6e0f3a72feb5a4a9fec191b77e34874c3c69e2d93040deb3f07773e73385023d",
    ),
    "kde_EveningGlow": DebianPhoto(
        "plasma-workspace-wallpapers",
        "usr/share/wallpapers/EveningGlow/contents/images/2560x1600.jpg",
        "586682dcb362b9f620068f10138f87d0d3649939aef238adc5807cb951976a7a",
    ),
    "kde_FallenLeaf": DebianPhoto(
        "plasma-workspace-wallpapers",
        "usr/share/wallpapers/FallenLeaf/contents/images/2560x1600.jpg",
        "95603a6560c7e8d50e0e03b3f4adbe39c5258c72528e74e4ecaea1daf4e499de",
    ),
    "kde_Grey": DebianPhoto(
        "plasma-workspace-wallpapers",
        "usr/share/wallpapers/Grey/contents/images/2560x1600.jpg",
        "88c31d8944b7e6935d1b9a296654c692f0772cb512491713eb30a972a604c0ed",
    ),
    "kde_Kite": DebianPhoto(
        "plasma-workspace-wallpapers",
        "usr/share/wallpapers/Kite/contents/images/2560x1600.jpg",
        "bdca288ce296a981e80659c021cf707caddc702c0c8d4247e60bd618476d47f8",
    ),
    "kde_OneStandsOut": DebianPhoto(
        "plasma-workspace-wallpapers",
        "usr/share/wallpapers/OneStandsOut/contents/images/2560x1600.jpg",
        "cb507baf1dafdcae362264f3aba9483ed4be5f6c9fdd770f0ec0920c6d9e80fd",
    ),
    "kde_Path": DebianPhoto(
        "plasma-workspace-wallpapers",
        "usr/share/wallpapers/Path/contents/images/2560x1600.jpg",
        "7477457d7f17b736259f1b021864778ad4ba802cf3214e6728181ff29126bba8",
    ),
    "kde_summer_1am": DebianPhoto(
        "plasma-workspace-wallpapers",
        "usr/share/wallpapers/summer_1am/contents/images/2560x1600.jpg",
        "c868b50789591dd42910153c768053f1ba0a98cb36bbfc2b7a96a1045d0477f8",
    ),
    "mate_Aqua": DebianPhoto(
        "mate-backgrounds",
        "usr/share/backgrounds/mate/nature/Aqua.jpg",
        "5c30118205982da441bf7e6a1ada636a8a0be879408140b3148280c665ed6bce",
    ),
    "mate_Blinds": DebianPhoto(
        "mate-backgrounds",
        "usr/share/backgrounds/mate/nature/Blinds.jpg",
        "f7aac0dcc2e06d0491643e84df3da1d9db7c4610f58806a880d56e074799f600",
    ),
    "mate_Dune": DebianPhoto(
        "mate-backgrounds",
        "usr/share/backgrounds/mate/nature/Dune.jpg",
        "8a67c2cb0be8c46b70c237311a4fa4d2b4ac7d39568135384787801fa5cc9a91",
    ),
    "mate_FreshFlower": DebianPhoto(
        "mate-backgrounds",
        "usr/share/backgrounds/mate/nature/FreshFlower.jpg",
        "972b0a0c4e5e3fa93f4f244fc84bc64b121a5eac3aaa5856f1308c1f38a02f8e",
    ),
    "mate_Garden": DebianPhoto(
        "mate-backgrounds",
        "usr/share/backgrounds/mate/nature/Garden.jpg",
        "d3095ee09d425ef23d27155412136cf14fc3c9af76ca58b452f55e23da324e78",
    ),
    "mate_GreenMeadow": DebianPhoto(
        "mate-backgrounds",
        "usr/share/backgrounds/mate/nature/GreenMeadow.jpg",
        "8fa0de0aa4089f7319c9fb7a6d006d4cab6023e8c8853731557cff53567b4832",
    ),
    "mate_LadyBird": DebianPhoto(
        "mate-backgrounds",
        "usr/share/backgrounds/mate/nature/LadyBird.jpg",
        "e35a9a4126ef969c90b29c038058c5a575a20eadd84106a37bf1fa9931e7b61d",
    ),
    "mate_RainDrops": DebianPhoto(
        "mate-backgrounds",
        "usr/share/backgrounds/mate/nature/RainDrops.jpg",
        "3e4ea9671c28c90a86cf67b3db9daf18c4741587c596333a7529ca589aaa0c16",
    ),
    "mate_Storm": DebianPhoto(
        "mate-backgrounds",
        "usr/share/backgrounds/mate/nature/Storm.jpg",
        "77ca53077831d3237f73393a91fc879158abc046d852941c26e90de336356957",
    ),
    "mate_TwoWings": DebianPhoto(
        "mate-backgrounds",
        "usr/share/backgrounds/mate/nature/TwoWings.jpg",
        "665e5abf8a5399070a91a9a8e455fe071e5b61697ff78fdeda4e9843ef545aeb",
    ),
    "mate_Wood": DebianPhoto(
        "mate-backgrounds",
        "usr/share/backgrounds/mate/nature/Wood.jpg",
        "19c78500ac00a622e19907ab9cc7d06d46fe08c4a6142759a84195696150ec07",
    ),
    "mate_YellowFlower": DebianPhoto(
        "mate-backgrounds",
        "usr/share/backgrounds/mate/nature/YellowFlower.jpg",
        "254da96256acb7add685679775a04d1e4a5bc8cd13e5a5a3d61351ce198a5306",
    ),
}


class PhotoUnavailableError(FileNotFoundError):
    """A listed photo is neither installed nor cached with the expected bytes."""


def cache_root() -> Path:
    """Where fetched packages are unpacked: $VSR_DATA_CACHE/debian, else ~/.cache/vsr/debian."""
    base = os.environ.get("VSR_DATA_CACHE") or Path.home() / ".cache" / "vsr"
    return Path(base) / "debian"


def _matches(path: Path, sha256: str) -> bool:
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha256


def photo_file(name: str) -> Path:
    """The checked file of photo `name`: installed, else cached; raises PhotoUnavailableError."""
    photo = PHOTOS[name]
    for root in (Path("/"), cache_root() / photo.package):
        candidate = root / photo.path
        if _matches(candidate, photo.sha256):
            return candidate
    raise PhotoUnavailableError(
        f"training photo {name!r} ({photo.package} {PACKAGES[photo.package]}: /{photo.path}) is not here; "
        "`vsr train --photos all` fetches it with apt-get download, or apt-get install the package"
    )


def missing_packages(names: list[str] | tuple[str, ...]) -> list[str]:
    """Packages of the photos in `names` that are not yet available."""
    missing: set[str] = set()
    for name in names:
        try:
            photo_file(name)
        except PhotoUnavailableError:
            missing.add(PHOTOS[name].package)
    return sorted(missing)


def fetch_packages(packages: list[str]) -> None:
    """`apt-get download` each pinned package version and unpack it into the cache."""
    if packages and shutil.which("apt-get") is None:
        raise PhotoUnavailableError(f"fetching {', '.join(packages)} needs apt-get (Debian or Ubuntu)")
    for package in packages:
        target = cache_root() / package
        with tempfile.TemporaryDirectory() as work:
            subprocess.run(
                ["apt-get", "download", f"{package}={PACKAGES[package]}"],
                cwd=work,
                check=True,
                capture_output=True,
            )
            (deb,) = Path(work).glob("*.deb")
            unpacked = Path(work) / "unpacked"
            subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True, capture_output=True)
            if target.exists():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(unpacked), target)
