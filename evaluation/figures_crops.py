"""Before/after crops: chosen regions of one output frame for LR (nearest), bicubic, Baseline, FastVSR, GT.

Regions are in output pixels. The first row shows the whole FastVSR frame with each region outlined;
then one row per region, every crop enlarged by the same integer `zoom` (nearest neighbour).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.figures_common import (
    SCALE,
    FigureError,
    ModelReport,
    Panel,
    bicubic_x4,
    check_gt,
    load_frames,
    nearest_x4,
    save_grid,
    upscale_frames,
)

CROP_DISPLAY = 256  # default zoom: the largest region side is enlarged to at least this many pixels
COLOURS = np.array([[255, 0, 0], [0, 200, 0], [0, 90, 255], [255, 160, 0], [200, 0, 200]], dtype=np.uint8)
COLOUR_NAMES = ("red", "green", "blue", "orange", "magenta")


@dataclass(frozen=True)
class Region:
    """x, y, width, height in output pixels."""

    x: int
    y: int
    w: int
    h: int

    def __str__(self) -> str:
        return f"{self.x},{self.y},{self.w},{self.h}"

    def crop(self, image: np.ndarray) -> np.ndarray:
        return image[self.y : self.y + self.h, self.x : self.x + self.w]


@dataclass(frozen=True)
class CropOptions:
    video: Path
    out: Path
    regions: tuple[str, ...]  # "x,y,w,h" each
    frame: int = 0
    zoom: int | None = None  # None: enough for CROP_DISPLAY pixels
    fastvsr_model: str | None = None
    baseline_model: str | None = None
    gt: Path | None = None


@dataclass(frozen=True)
class CropResult:
    out: Path
    size: tuple[int, int]  # (width, height) of the PNG
    regions: tuple[Region, ...]
    zoom: int


def parse_region(text: str, width: int, height: int) -> Region:
    """'x,y,w,h' -> a `Region` that lies inside a width x height output frame."""
    try:
        x, y, w, h = (int(part) for part in text.split(","))
    except ValueError:
        raise FigureError("bad_region", f"--region {text!r} is not x,y,w,h (four integers)") from None
    if w < 1 or h < 1 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise FigureError("bad_region", f"--region {text} does not fit inside the {width}x{height} output")
    return Region(x, y, w, h)


def default_zoom(regions: Sequence[Region]) -> int:
    return max(1, CROP_DISPLAY // max(max(r.w, r.h) for r in regions))


def outlined(image: np.ndarray, regions: Sequence[Region]) -> np.ndarray:
    """A copy of `image` with each region's border drawn 2 px wide (inside it) in its colour."""
    out = image.copy()
    for i, r in enumerate(regions):
        colour, t = COLOURS[i % len(COLOURS)], min(2, r.w, r.h)
        box = out[r.y : r.y + r.h, r.x : r.x + r.w]
        box[:t], box[-t:], box[:, :t], box[:, -t:] = colour, colour, colour, colour
    return out


def make_crops_figure(options: CropOptions, report: ModelReport | None = None) -> CropResult:
    """Decode frames 0..K, upscale with each method, and write the crops PNG."""
    if options.frame < 0:
        raise FigureError("bad_frame", f"--frame must be >= 0, got {options.frame}")
    if options.zoom is not None and options.zoom < 1:
        raise FigureError("bad_zoom", f"--zoom must be >= 1, got {options.zoom}")
    lr = load_frames(options.video, options.frame + 1)
    if len(lr) <= options.frame:
        raise FigureError("bad_frame", f"--frame {options.frame}: {options.video} has {len(lr)} frames")
    height, width = lr[0].shape[0] * SCALE, lr[0].shape[1] * SCALE
    regions = tuple(parse_region(text, width, height) for text in options.regions)
    if not regions:
        raise FigureError("bad_region", "give at least one --region x,y,w,h")
    zoom = options.zoom or default_zoom(regions)
    gt = load_frames(options.gt, len(lr)) if options.gt is not None else None
    if gt is not None:
        check_gt(gt, lr[0], len(lr))
    baseline, baseline_desc = upscale_frames("Baseline", options.baseline_model, "baseline-tiny", lr, report)
    fastvsr, fastvsr_desc = upscale_frames("FastVSR", options.fastvsr_model, "fastvsr-tiny", lr, report)
    k = options.frame
    images = {
        "LR (nearest x4)": nearest_x4(lr[k]),
        "Bicubic": bicubic_x4(lr[k]),
        "Baseline": baseline[k],
        "FastVSR": fastvsr[k],
    } | ({"GT": gt[k]} if gt else {})
    legend = ", ".join(f"#{i + 1} {COLOUR_NAMES[i % len(COLOUR_NAMES)]}" for i in range(len(regions)))
    rows = [[Panel(outlined(fastvsr[k], regions), f"FastVSR frame {k}, regions outlined: {legend}")]]
    for i, region in enumerate(regions, start=1):
        rows.append(
            [
                Panel(region.crop(image).repeat(zoom, axis=0).repeat(zoom, axis=1), f"{name} #{i}")
                for name, image in images.items()
            ]
        )
    title = (
        f"Frame {k} of {options.video.name}: regions (x,y,w,h) "
        f"{'  '.join(f'#{i} {r}' for i, r in enumerate(regions, start=1))}, shown x{zoom}\n"
        f"FastVSR: {fastvsr_desc}\nBaseline: {baseline_desc}"
    )
    size = save_grid(rows, title, options.out)
    return CropResult(
        out=options.out,
        size=size,
        regions=regions,
        zoom=zoom,
    )
