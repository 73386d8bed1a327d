"""Write an evaluation report: report.json, report.md (markdown tables) and labelled crop panels."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

LABEL_HEIGHT = 14
MIN_PANEL_WIDTH = 160  # small crops are enlarged (nearest) so their labels fit
GAP = 4


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _size(size: list[int]) -> str:
    return f"{size[0]}x{size[1]}"


def markdown_table(rows: dict[str, dict[str, Any]]) -> str:
    """One markdown table: method, PSNR-Y, SSIM-Y, E_warp on GT flow and on self flow (x1e-3),
    frames/s, GMACs/frame[, sizes]."""
    sizes = all("input_size" in row for row in rows.values())
    head = (
        "| method | PSNR-Y (dB) | SSIM-Y | E_warp (x1e-3) | E_warp self flow (x1e-3) | frames/s "
        "| GMACs/frame |"
    )
    rule = "|---|---:|---:|---:|---:|---:|---:|"
    lines = [head + (" input -> output |" if sizes else ""), rule + ("---|" if sizes else "")]
    for name, row in rows.items():
        cells = [
            name,
            _number(row["psnr_y"], 2),
            _number(row["ssim_y"], 4),
            _number(row["ewarp"], 3),
            _number(row["ewarp_self_flow"], 3),
            _number(row["fps"], 2),
            _number(row["gmacs_per_frame"], 2),
        ]
        if sizes:
            cells.append(f"{_size(row['input_size'])} -> {_size(row['output_size'])}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_report(report: dict[str, Any]) -> str:
    """Every clip's table, then the means over clips, then what each method is."""
    clips = report["clips"]
    parts = []
    for clip in clips:
        size = f"LR {_size(clip['lr_size'])} -> GT {_size(clip['gt_size'])}"
        parts.append(
            f"### {clip['name']}: {clip['frames']} frames, {size}\n\n{markdown_table(clip['methods'])}"
        )
    frames = sum(clip["frames"] for clip in clips)
    count = f"{len(clips)} clip{'s' if len(clips) != 1 else ''}"
    parts.append(f"### mean over {count} ({frames} frames)\n\n{markdown_table(report['mean'])}")
    border = report["settings"]["crop_border"]
    notes = [
        f"PSNR/SSIM on Y (BT.601, 16-235), crop border {border}; E_warp on GT flow "
        "and on each output's own flow (DOVE's convention), lower is better."
    ]
    notes += [f"- {method['name']}: {method['description']}" for method in report["methods"]]
    return "\n\n".join(parts) + "\n\n" + "\n".join(notes) + "\n"


def crop_panel(crops: dict[str, np.ndarray]) -> Image.Image:
    """The crops side by side, each under its label."""
    font = ImageFont.load_default()
    images = [Image.fromarray(crop) for crop in crops.values()]
    factor = max(1, -(-MIN_PANEL_WIDTH // images[0].width))
    images = [im.resize((im.width * factor, im.height * factor), Image.Resampling.NEAREST) for im in images]
    width = sum(im.width for im in images) + GAP * (len(images) - 1)
    panel = Image.new("RGB", (width, images[0].height + LABEL_HEIGHT), "white")
    draw = ImageDraw.Draw(panel)
    x = 0
    for label, image in zip(crops, images, strict=True):
        draw.text((x + 2, 1), label, fill="black", font=font)
        panel.paste(image, (x, LABEL_HEIGHT))
        x += image.width + GAP
    return panel


def file_name(name: str) -> str:
    """A safe file name for a clip name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "clip"


def save_crops(crops: dict[str, np.ndarray], out_dir: Path, clip_name: str) -> Path:
    """Write `out_dir/crops/<clip>.png` and return its path."""
    path = out_dir / "crops" / f"{file_name(clip_name)}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    crop_panel(crops).save(path)
    return path


def write_report(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write report.json and report.md into `out_dir`; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(markdown_report(report))
    return json_path, md_path
