"""`vsr eval` end to end on real frames and videos: the report files, the bicubic row, and bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from evaluation.runner import BICUBIC
from evaluation.sequences import frame_files, image_size, read_frame
from models.weights import save_model
from tests.conftest import tiny_model
from vsr.cli import main

VIMEO = "vimeo_tiny/00001_0266"
MODEL = "baseline-tiny (untrained)"  # no trained weights ship for it: output = torch bicubic
ROW_KEYS = {
    "psnr_y",
    "ssim_y",
    "ewarp",
    "ewarp_self_flow",
    "fps",
    "frames",
    "seconds",
    "gmacs_per_frame",
    "input_size",
    "output_size",
}


def run_cli(args: list[str | Path], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def write_lossless_video(path: Path, frames: list[np.ndarray]) -> Path:
    """An RGB PNG-in-QuickTime video: decodes back to exactly `frames`."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("png", rate=25)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "rgb24"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def vimeo_frames(shared_data: Path, part: str) -> list[np.ndarray]:
    files = frame_files(shared_data / VIMEO / part)
    return [read_frame(p, image_size(files[0])) for p in files]


def test_eval_folder_writes_report_and_crops(
    tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    code, stdout, stderr = run_cli(
        ["eval", shared_data / "vimeo_tiny", "--config", "baseline-tiny", "--out", out, "--threads", "2"],
        capsys,
    )
    assert code == 0, stderr
    assert "UNTRAINED baseline-tiny" in stderr  # the weights in use are named
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["crop_border"] == 0
    assert "rgb2ycbcr" in report["settings"]["y_channel"] and "Farneback" in report["settings"]["ewarp"]
    assert [m["name"] for m in report["methods"]] == [BICUBIC, MODEL]
    [clip] = report["clips"]
    assert clip["name"] == "00001_0266" and clip["frames"] == 7
    assert clip["gt_size"] == [112, 64] and clip["lr_size"] == [28, 16]
    for name in (BICUBIC, MODEL):
        row = clip["methods"][name]
        assert set(row) == ROW_KEYS and row["frames"] == 7 and row["fps"] > 0
        assert row["ewarp"] > 0 and row["ewarp_self_flow"] > 0 and row["output_size"] == [112, 64]
        assert report["mean"][name]["psnr_y"] == row["psnr_y"]  # one clip: the mean is that clip
    bicubic = clip["methods"][BICUBIC]
    assert bicubic["gmacs_per_frame"] is None and clip["methods"][MODEL]["gmacs_per_frame"] > 0
    assert abs(bicubic["psnr_y"] - 25.65) < 0.005 and abs(bicubic["ssim_y"] - 0.8165) < 0.00005
    assert abs(clip["methods"][MODEL]["psnr_y"] - bicubic["psnr_y"]) < 0.5  # torch bicubic, not MATLAB's
    markdown = (out / "report.md").read_text()
    head = "| method | PSNR-Y (dB) | SSIM-Y | E_warp (x1e-3) | E_warp self flow (x1e-3) | frames/s |"
    assert head in markdown
    assert "| bicubic (MATLAB) | 25.65 | 0.8165 |" in markdown and f"| {MODEL} |" in markdown
    assert markdown.strip().splitlines()[0] in stdout  # the tables are printed too
    with Image.open(out / clip["crop_image"]) as panel:  # GT, bicubic, model side by side
        assert panel.width > 3 * 112 and panel.height > 64


def test_eval_video_pair_matches_frame_folders(
    tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt = write_lossless_video(tmp_path / "gt.mov", vimeo_frames(shared_data, "GT"))
    lr = write_lossless_video(tmp_path / "lr.mov", vimeo_frames(shared_data, "LR"))
    model_dir = save_model(tiny_model(), tmp_path / "tiny")
    out = tmp_path / "report"
    args = ["eval", "--gt-video", gt, "--lr-video", lr, "--out", out, "--frames", "5", "--no-warp-error"]
    code, _, stderr = run_cli([*args, "--crop", "8,4,32,16", "--model", model_dir], capsys)
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    assert [m["name"] for m in report["methods"]] == [BICUBIC, "tiny"]
    assert report["methods"][1]["description"].startswith("weights from ")
    [clip] = report["clips"]
    assert clip["name"] == "gt" and clip["frames"] == 5 and clip["crop"] == [8, 4, 32, 16]
    row = clip["methods"][BICUBIC]
    assert row["ewarp"] is None and row["ewarp_self_flow"] is None and row["frames"] == 5
    folder_out = tmp_path / "folder"
    code, _, stderr = run_cli(
        [
            "eval",
            shared_data / VIMEO,
            "--out",
            folder_out,
            "--frames",
            "5",
            "--no-warp-error",
            "--model",
            model_dir,
        ],
        capsys,
    )
    assert code == 0, stderr
    [folder_clip] = json.loads((folder_out / "report.json").read_text())["clips"]
    assert row["psnr_y"] == folder_clip["methods"][BICUBIC]["psnr_y"]  # lossless video: same frames
    assert row["ssim_y"] == folder_clip["methods"][BICUBIC]["ssim_y"]
    short = write_lossless_video(tmp_path / "short.mov", vimeo_frames(shared_data, "LR")[:6])
    code, _, stderr = run_cli(
        ["eval", "--gt-video", gt, "--lr-video", short, "--out", tmp_path / "bad", "--model", model_dir],
        capsys,
    )
    assert code == 1 and "vsr: error: frame_count_mismatch: gt: more GT frames than the 6 LR" in stderr


def test_eval_parser_imports_nothing_heavy() -> None:
    """`vsr.cli` imports this module to build its parser: it must not pull in torch, numpy or OpenCV."""
    code = (
        "import argparse, sys; from vsr.eval_command import add_eval_parser; "
        "add_eval_parser(argparse.ArgumentParser().add_subparsers()); "
        "print(sorted({'torch', 'numpy', 'cv2'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def copy_frames(source: Path, target: Path, count: int | None = None) -> None:
    target.mkdir(parents=True)
    for path in frame_files(source)[:count]:
        shutil.copy(path, target / path.name)


@pytest.mark.parametrize(
    ("layout", "code"),
    [
        ("missing", "not_found"),
        ("empty", "no_sequences"),
        ("gt_only", "missing_lr"),
        ("short_lr", "frame_count_mismatch"),
        ("lr_is_gt", "size_mismatch"),
        ("no_frames", "no_frames"),
        ("bad_crop", "bad_crop"),
        ("big_border", "bad_option"),
    ],
)
def test_eval_bad_input_exits_1_with_code(
    tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str], layout: str, code: str
) -> None:
    root, seq = tmp_path / "root", tmp_path / "root" / "clip"
    gt = shared_data / VIMEO / "GT"
    if layout != "missing":
        root.mkdir()
    if layout in ("gt_only", "short_lr", "lr_is_gt", "no_frames", "bad_crop", "big_border"):
        copy_frames(gt, seq / "GT")
    if layout in ("short_lr", "bad_crop", "big_border"):
        copy_frames(shared_data / VIMEO / "LR", seq / "LR", None if layout != "short_lr" else 6)
    if layout == "lr_is_gt":
        copy_frames(gt, seq / "LR")
    if layout == "no_frames":
        (seq / "LR").mkdir()
    extra = {"bad_crop": ["--crop", "100,0,32,32"], "big_border": ["--crop-border", "27"]}.get(layout, [])
    status, _, stderr = run_cli(["eval", root, "--out", tmp_path / "out", *extra], capsys)
    assert status == 1
    assert stderr.strip().splitlines()[-1].startswith(f"vsr: error: {code}: ")
    assert not (tmp_path / "out" / "report.json").exists()


def test_eval_needs_one_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, stderr = run_cli(["eval", "--gt-video", tmp_path / "a.mp4", "--out", tmp_path], capsys)
    assert status == 1 and "vsr: error: bad_option: " in stderr
