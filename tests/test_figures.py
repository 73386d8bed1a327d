"""`vsr figures scaling | profile | crops` on real files: PNG sizes, panel pixels read back, error codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluation.figures_common import LABEL_HEIGHT, MARGIN, TITLE_HEIGHT
from models.weights import load_model, save_model
from tests.conftest import tiny_model
from tests.media import make_frame, make_test_clip
from vsr.cli import main
from worker.upscaler import ClipUpscaler
from worker.video_io import iter_frames

WIDTH, HEIGHT, FRAMES = 32, 24, 5  # the low-res test clip
TITLE = 3 * TITLE_HEIGHT  # profile and crops titles: what, FastVSR weights, Baseline weights


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    return make_test_clip(path, frames=FRAMES, width=WIDTH, height=HEIGHT, audio=False)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random weights everywhere, so FastVSR's output is not bicubic."""
    return save_model(tiny_model(), tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def fastvsr_frames(clip: Path, model_dir: Path) -> list[np.ndarray]:
    """The model's output frames, computed here independently of the figure code."""
    lr = [frame.image for frame in iter_frames(clip)]
    return list(ClipUpscaler(load_model(model_dir)).upscale(lr))


def png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_scaling_writes_figure_and_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "scaling.png"
    assert main(["figures", "scaling", "--quick", "--out", str(out)]) == 0
    assert png(out).shape == (900, 1200, 3)
    data = json.loads(out.with_suffix(".json").read_text())
    largest = data["macs"]["vs_size"][-1]
    assert largest["output_size"][1] == 1280 and largest["output_size"][0] >= 720
    assert largest["ratio"] > 3.0  # the f16 decoder and 4x fewer tokens: ~4x fewer MACs at 720p
    assert largest["baseline"] == pytest.approx(largest["fastvsr"] * largest["ratio"])
    timed = data["cpu_seconds"]["vs_frames"]
    assert [p["frames"] for p in timed] == [1, 2]
    assert all(p["fastvsr"] > 0 and p["baseline_process"] > 0 for p in timed)
    assert "macs vs_size: Baseline/FastVSR" in capsys.readouterr().out


def test_profile_rows_are_the_chosen_row_of_each_frame(
    tmp_path: Path, clip: Path, model_dir: Path, fastvsr_frames: list[np.ndarray]
) -> None:
    out, row, stretch = tmp_path / "profile.png", 37, 6
    args = ["figures", "profile", str(clip), "--row", str(row), "--stretch", str(stretch), "--out", str(out)]
    assert main([*args, "--fastvsr-model", str(model_dir)]) == 0
    image = png(out)
    panel_w, profile_h = 4 * WIDTH, FRAMES * stretch
    frame_row = LABEL_HEIGHT + 4 * HEIGHT + MARGIN  # the reference frame, row `row` marked
    assert image.shape[1] == 3 * panel_w + 4 * MARGIN  # bicubic, baseline, fastvsr side by side
    assert image.shape[0] == TITLE + frame_row + LABEL_HEIGHT + profile_h + MARGIN + MARGIN
    top = TITLE + frame_row + LABEL_HEIGHT
    panels = [
        image[top : top + profile_h, x : x + panel_w]
        for x in (MARGIN + i * (panel_w + MARGIN) for i in range(3))
    ]
    expected = np.stack([frame[row] for frame in fastvsr_frames]).repeat(stretch, axis=0)
    np.testing.assert_array_equal(panels[2], expected)
    np.testing.assert_array_equal(panels[1], panels[0])  # untrained baseline-tiny == bicubic x4
    assert not np.array_equal(panels[2], panels[0])


def test_crops_show_each_region_of_the_chosen_frame(
    tmp_path: Path, clip: Path, model_dir: Path, fastvsr_frames: list[np.ndarray]
) -> None:
    gt = tmp_path / "gt"
    gt.mkdir()
    for i in range(FRAMES):
        Image.fromarray(make_frame(i, 4 * WIDTH, 4 * HEIGHT)).save(gt / f"{i:03d}.png")
    out, k, zoom = tmp_path / "crops.png", 2, 3
    regions = [(10, 20, 40, 30), (60, 30, 64, 64)]
    args = ["figures", "crops", str(clip), "--frame", str(k), "--zoom", str(zoom), "--out", str(out)]
    args += [a for r in regions for a in ("--region", ",".join(map(str, r)))]
    assert main([*args, "--fastvsr-model", str(model_dir), "--gt", str(gt)]) == 0
    image = png(out)
    crop_w = 64 * zoom  # the widest region, zoomed
    assert image.shape[1] == 5 * crop_w + 6 * MARGIN  # LR, bicubic, baseline, fastvsr, GT side by side
    rows = [4 * HEIGHT, 30 * zoom, 64 * zoom]  # the whole outlined frame, then one row per region
    assert image.shape[0] == TITLE + sum(r + LABEL_HEIGHT + MARGIN for r in rows) + MARGIN
    x, y, w, h = regions[1]
    top = TITLE + sum(r + LABEL_HEIGHT + MARGIN for r in rows[:2]) + LABEL_HEIGHT

    def shown(column: int) -> np.ndarray:
        left = MARGIN + column * (crop_w + MARGIN)
        return image[top : top + h * zoom, left : left + w * zoom]

    def zoomed(frame: np.ndarray) -> np.ndarray:
        return frame[y : y + h, x : x + w].repeat(zoom, axis=0).repeat(zoom, axis=1)

    np.testing.assert_array_equal(shown(3), zoomed(fastvsr_frames[k]))
    np.testing.assert_array_equal(shown(4), zoomed(make_frame(k, 4 * WIDTH, 4 * HEIGHT)))
    lr = next(f.image for i, f in enumerate(iter_frames(clip)) if i == k)
    np.testing.assert_array_equal(shown(0), zoomed(lr.repeat(4, axis=0).repeat(4, axis=1)))


def not_a_video(tmp_path: Path) -> Path:
    path = tmp_path / "notes.mp4"
    path.write_text("not a video")
    return path


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["profile", "{missing}"], "not_found"),
        (["profile", "{text}"], "not_a_video"),
        (["profile", "{clip}", "--row", str(4 * HEIGHT)], "bad_row"),
        (["profile", "{clip}", "--frames", "0"], "bad_frames"),
        (["crops", "{clip}", "--region", "1,2,3"], "bad_region"),
        (["crops", "{clip}", "--region", f"{4 * WIDTH - 5},0,10,10"], "bad_region"),
        (["crops", "{clip}", "--region", "0,0,8,8", "--frame", "5"], "bad_frame"),
        (["crops", "{clip}"], "bad_region"),
        (["scaling", "--frames", "0,1"], "bad_sweep"),
        (["scaling", "--sizes", "16by24"], "bad_sweep"),
        (["scaling", "--fastvsr-config", "baseline-tiny"], "bad_config"),
        (["scaling", "--baseline-config", "nope"], "bad_model"),
    ],
)
def test_input_errors_exit_1_with_code(
    tmp_path: Path, clip: Path, args: list[str], code: str, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = {"missing": tmp_path / "missing.mp4", "text": not_a_video(tmp_path), "clip": clip}
    argv = ["figures", *(a.format(**paths) for a in args), "--out", str(tmp_path / "f.png")]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.startswith(f"vsr: error: {code}: ")
    assert not (tmp_path / "f.png").exists()
