"""The INT8 accuracy gate against a real, trained model: it refuses a broken INT8 model and
passes a sound one. The shipped model is used because a random-weights model's accuracy is
chance, so a gate run on it could not tell a broken INT8 model from a sound one."""

import shutil
from pathlib import Path

import pytest
from test_station_autoselect import _break_int8, _edit

from export.data import load, render
from export.evaluate import accuracy_problems, evaluate
from models.bundle import file_entry
from models.part import load_part
from models.preprocess import InputSpec

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "default"
KEYS = ["onnxruntime/fp32", "onnxruntime/int8"]


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    folder = render(
        load_part("default"), tmp_path_factory.mktemp("gate"), 60, 8101, "photo=0.5,flat=0.5", 1.0, 1, False
    )
    return load(folder, InputSpec(), "gate")


def _copy(tmp_path, name):
    dst = tmp_path / name
    shutil.copytree(SHIPPED, dst, ignore=shutil.ignore_patterns("openvino_*", "*.csv"))
    return dst


def _gate(bundle, frames):
    ev = evaluate(bundle, KEYS, frames, {"BENDNG": 0.5, "NUKENG": 0.5})
    return ev, accuracy_problems(ev, max_drop=0.5, max_escape_rise=0.0)


def test_the_gate_refuses_a_broken_int8_model(tmp_path, frames):
    ev, problems = _gate(_break_int8(_copy(tmp_path, "broken")), frames)
    fp32 = next(r for r in ev.rows if r.model == "onnxruntime/fp32").metrics
    assert fp32["accuracy"] >= 0.9, "the shipped model must be good on these frames, or the test says nothing"
    assert problems and all("onnxruntime/int8" in p for p in problems), problems


def test_the_gate_passes_a_sound_int8_model(tmp_path, frames):
    """An 'INT8' file that computes exactly what FP32 does (the FP32 graph itself) must pass."""
    b = _copy(tmp_path, "sound")
    shutil.copyfile(b / "model_fp32.onnx", b / "model_int8.onnx")
    _edit(
        b,
        lambda info: info["models"]["onnxruntime/int8"]["files"].update(
            {"model_int8.onnx": file_entry(b / "model_int8.onnx")}
        ),
    )
    ev, problems = _gate(b, frames)
    assert problems == [], problems
    assert next(r for r in ev.rows if r.model == "onnxruntime/int8").agreement == 1.0
