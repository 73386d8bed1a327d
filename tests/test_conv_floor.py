"""bench.conv_floor: every ONNX Runtime form of the causal conv computes the layer torch runs."""

from __future__ import annotations

import json

import pytest

from bench import conv_floor

SMALL = {"channels": 4, "height": 12, "width": 20, "frames": 3, "threads": 1, "repeats": 1}


@pytest.mark.parametrize("form", ["onnxruntime-conv3d", "onnxruntime-conv2d-taps"])
def test_an_exact_form_equals_torchs_causal_conv(form: str) -> None:
    sample = conv_floor.time_form(form, **SMALL)
    assert sample["seconds"] > 0
    assert sample["max_abs_diff"] < 1e-5


def test_the_int8_form_really_runs_quantized() -> None:
    sample = conv_floor.time_form("onnxruntime-int8", **SMALL)
    assert 1e-3 < sample["max_abs_diff"] < float("inf")  # u8/s8 rounding, not an fp32 conv left as is


def test_the_report_gives_each_form_its_speedup_over_torch(capsys: pytest.CaptureFixture[str]) -> None:
    report = conv_floor.run(frames=2, threads=1, repeats=1, rounds=1, layers={"small": (4, 12, 20)})
    forms = report["layers"]["small"]
    assert set(forms) == set(conv_floor.FORMS)
    assert forms["torch-onednn-conv3d"]["speedup_vs_torch"] == 1.0
    for value in forms.values():
        assert value["ms"] > 0 and value["gmac_per_s"] > 0
    conv_floor.print_report(json.loads(json.dumps(report)))
    assert "onnxruntime-conv2d-taps" in capsys.readouterr().out
