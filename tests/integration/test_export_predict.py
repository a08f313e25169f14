"""python -m edge_app.predict on an exported bundle, in a Python where torch cannot be imported."""

import csv
import json
import subprocess
import sys

import pytest
from tiny_bundles import copy_bundle, other_part, tiny_bundle

from export.data import render
from models.part import load_part

# Runs a module with torch (and everything that needs it) made unimportable, as on a factory PC.
NO_TORCH = """
import importlib.abc, runpy, sys
BLOCKED = {"torch", "timm", "torchvision", "nncf", "export", "training", "safetensors"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: the station runs without it")
        return None
sys.meta_path.insert(0, Block())
sys.argv = [sys.argv[1]] + sys.argv[2:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def predict(*args):
    return subprocess.run([sys.executable, "-c", NO_TORCH, "edge_app.predict", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("predict") / "bundle")


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    folder = render(
        load_part("default"), tmp_path_factory.mktemp("frames") / "set", 6, 5, "photo=0.5,flat=0.5", 1.3, 1, False
    )
    (folder / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")  # a corrupt frame
    return folder


def test_blocker_really_blocks_torch():
    r = subprocess.run([sys.executable, "-c", NO_TORCH, "torch"], capture_output=True, text=True)
    assert r.returncode != 0 and "blocked" in r.stderr


def test_predict_without_torch_writes_csv_and_metrics(bundle, frames, tmp_path):
    out = tmp_path / "preds.csv"
    r = predict("--model", str(bundle), "--images", str(frames), "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(out)))
    assert list(rows[0]) == ["file", "label", "pin", "score_BENDNG", "score_NUKENG", "score_OK"]
    assert len(rows) == 6 and "broken.png" not in {row["file"] for row in rows}
    assert all(row["label"] in ("BENDNG", "NUKENG", "OK") for row in rows)
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "broken.png" in warnings[0]
    assert "\nchoice: " in r.stderr and "fastest agreeing of 4 on this CPU" in r.stderr  # measured, and why
    for needle in ("confusion", "accuracy (3 classes)", "escape rate", "overkill rate", "1 skipped"):
        assert needle in r.stdout, r.stdout
    # explicit backend and precision; labels given by path
    r = predict(
        "--model",
        str(bundle),
        "--images",
        str(frames / "images"),
        "--out",
        str(out),
        "--quiet",
        "--backend",
        "onnxruntime",
        "--precision",
        "fp32",
        "--labels",
        str(frames / "labels.csv"),
    )
    assert r.returncode == 0, r.stderr
    assert "onnxruntime/fp32" in r.stderr and "accuracy (3 classes)" in r.stdout
    # each row is what the station's runtime says of that very file
    import cv2

    from models.runtime import Runtime

    rt = Runtime(bundle, backend="onnxruntime", precision="fp32")
    for row in csv.DictReader(open(out)):
        (v,) = rt.infer(cv2.imread(str(frames / "images" / row["file"])))
        assert (row["label"], int(row["pin"])) == (v.label, v.pin), row["file"]
        assert float(row["score_OK"]) == pytest.approx(v.scores["OK"], abs=1e-4), row["file"]


def _refused(r, name):
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0], r.stderr
    return lines[0]


def test_predict_refuses_bad_bundles_with_one_line_exit_2(bundle, frames, tmp_path):
    args = ["--images", str(frames), "--out", str(tmp_path / "p.csv"), "--quiet"]
    # another part
    part = tmp_path / "two-rows.json"
    part.write_text(other_part("two-rows", rows=2).to_json())
    assert "two-rows" in _refused(predict("--model", str(bundle), "--part", str(part), *args), "bundle.json")
    # a missing model file
    b = copy_bundle(bundle, tmp_path / "missing")
    (b / "openvino_int8.xml").unlink()
    _refused(predict("--model", str(b), *args), "openvino_int8.xml")
    # a truncated model file
    b = copy_bundle(bundle, tmp_path / "truncated")
    data = (b / "model_int8.onnx").read_bytes()
    (b / "model_int8.onnx").write_bytes(data[:1000])
    _refused(predict("--model", str(b), "--backend", "onnxruntime", *args), "model_int8.onnx")
    # an unknown format version
    b = copy_bundle(bundle, tmp_path / "future")
    info = json.loads((b / "bundle.json").read_text())
    info["format"] = "pininspect-bundle/2"
    (b / "bundle.json").write_text(json.dumps(info))
    assert "pininspect-bundle/2" in _refused(predict("--model", str(b), *args), "bundle.json")
    # not a bundle at all
    _refused(predict("--model", str(tmp_path), *args), "bundle.json")
    assert not (tmp_path / "p.csv").exists()
