"""models.runtime: model choice, inference, thresholds, and every refusal as one line naming the file."""

import json
import subprocess
import sys

import numpy as np
import pytest
from tiny_bundles import copy_bundle, other_part, tiny_bundle

from models.bundle import FORMAT, BundleError
from models.part import CLASSES, load_part
from models.preprocess import FrameError, InputSpec
from models.runtime import Runtime, Verdict


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("runtime") / "bundle")


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    import cv2

    from export.data import render

    folder = render(load_part("default"), tmp_path_factory.mktemp("frames"), 6, 3, "photo=1", 1.0, 1, False)
    return [cv2.imread(str(p)) for p in sorted((folder / "images").glob("*.png"))]


def _damaged(bundle, tmp_path):
    return copy_bundle(bundle, tmp_path / "copy")


def _one_line(e: BundleError, name: str) -> str:
    text = str(e)
    assert "\n" not in text and name in text, text
    return text


def test_default_is_measured_on_this_machine_and_overrides_work(bundle):
    rt = Runtime(bundle)  # models/autoselect.py; tests/unit/models/test_autoselect.py checks how it chooses
    assert rt.key in Runtime.models_in(bundle) and rt.choice_reason.startswith(f"{rt.key}: ")
    assert Runtime.models_in(bundle) == ["openvino/int8", "onnxruntime/int8", "onnxruntime/fp32", "openvino/fp32"]
    assert Runtime(bundle, backend="onnxruntime").precision == "int8"
    assert Runtime(bundle, precision="fp32").key == "onnxruntime/fp32"
    assert Runtime(bundle, backend="openvino", precision="fp32").key == "openvino/fp32"
    with pytest.raises(BundleError, match="unknown backend"):
        Runtime(bundle, backend="tensorrt")


def test_openvino_precision_is_explicit(bundle):
    # the CPU plugin would run bf16 where the CPU has it; both models must run their float ops in f32
    for precision in ("fp32", "int8"):
        rt = Runtime(bundle, backend="openvino", precision=precision)
        assert str(rt._ov_compiled.get_property("INFERENCE_PRECISION_HINT")) in ("<Type: 'float32'>", "f32")


def test_describes_itself_from_the_bundle(bundle):
    rt = Runtime(bundle, precision="fp32")
    assert rt.name == "tiny-0" and rt.version == "0.0.0-test+01234567"
    assert rt.input_spec == InputSpec() and rt.input_spec.grid == (12, 20)
    assert rt.thresholds == {"BENDNG": 0.5, "NUKENG": 0.5}
    assert rt.info["part_name"] == "default" and rt.info["part_fingerprint"] == load_part("default").fingerprint()
    assert "onnxruntime/fp32" in rt.describe()


def test_infer_gives_verdicts(bundle, frames):
    rt = Runtime(bundle, backend="onnxruntime", precision="fp32")
    verdicts = rt.infer(frames)
    assert len(verdicts) == len(frames) and all(isinstance(v, Verdict) for v in verdicts)
    for v in verdicts:
        assert v.label in CLASSES and set(v.scores) == set(CLASSES)
        assert abs(sum(v.scores.values()) - 1) < 1e-4
        assert (v.pin == 0) == (v.label == "OK") and 0 <= v.pin <= 27
        assert v.heatmap.shape == (12, 20) and v.heatmap.dtype == np.float32
    one = rt.infer([frames[0]])[0]
    assert one.label == verdicts[0].label and abs(one.scores["OK"] - verdicts[0].scores["OK"]) < 1e-5
    s, p, h = rt.infer_batch(np.zeros((2, 3, 192, 320), np.float32))
    assert s.shape == (2, 3) and p.shape == (2, 28) and h.shape == (2, 12, 20)
    assert rt.infer([]) == []
    with pytest.raises(FrameError, match="640x480"):
        rt.infer([np.zeros((480, 600, 3), np.uint8)])
    with pytest.raises(ValueError, match="expected input"):
        rt.infer_batch(np.zeros((1, 3, 100, 100), np.float32))


def test_set_thresholds(bundle, frames):
    """A threshold between the frames' defect scores splits them where the rule says: the frames
    whose defect classes together reach it are NG, the others OK (a known answer, on any model)."""
    rt = Runtime(bundle, backend="onnxruntime", precision="fp32")
    defect = [v.scores["BENDNG"] + v.scores["NUKENG"] for v in rt.infer(frames)]
    low, high = sorted(defect)[2:4]
    assert high > low, "the tiny model gives these frames distinct scores"
    t = (low + high) / 2
    rt.set_thresholds({"BENDNG": t, "NUKENG": t})
    assert rt.thresholds == {"BENDNG": t, "NUKENG": t}
    assert [v.ng for v in rt.infer(frames)] == [d >= t for d in defect]
    assert sum(d >= t for d in defect) == 3
    rt.set_thresholds({"BENDNG": 1.0, "NUKENG": 1.0})
    assert not any(v.ng for v in rt.infer(frames))  # nothing reaches 1 on this tiny model
    for bad in ({"BENDNG": 0}, {"BENDNG": 1.5}, {"OK": 0.5}, {"BENDNG": "high"}):
        with pytest.raises(BundleError):
            rt.set_thresholds(bad)
    assert Runtime(bundle, backend="onnxruntime", precision="fp32").thresholds["BENDNG"] == 0.5  # bundle unchanged


def test_a_bundle_naming_one_threshold_runs_with_it_and_the_default_for_the_other(bundle, tmp_path):
    """The runtime and export.isacheck read a bundle's thresholds by one rule (models.bundle)."""
    from export import isacheck

    b = _damaged(bundle, tmp_path)
    info = json.loads((b / "bundle.json").read_text())
    info["thresholds"] = {"NUKENG": 0.8}
    (b / "bundle.json").write_text(json.dumps(info))
    rt = Runtime(b, backend="onnxruntime", precision="fp32")
    assert rt.thresholds == {"BENDNG": 0.5, "NUKENG": 0.8}
    assert isacheck._frames(b, 2)[1] == rt.thresholds
    info["thresholds"] = {"NUKENG": 1.8}
    (b / "bundle.json").write_text(json.dumps(info))
    with pytest.raises(BundleError) as e:
        Runtime(b)
    assert "NUKENG" in _one_line(e.value, "bundle.json")


def test_refuses_a_bundle_for_another_part(bundle, tmp_path):
    with pytest.raises(BundleError) as e:
        Runtime(bundle, expected_part=other_part("left-header", rows=2))
    text = _one_line(e.value, "bundle.json")
    assert "'default'" in text and "'left-header'" in text
    part_file = tmp_path / "left-header.json"
    part_file.write_text(other_part("left-header", rows=2).to_json())
    with pytest.raises(BundleError, match="left-header"):
        Runtime(bundle, expected_part=part_file)
    Runtime(bundle, expected_part=None, precision="fp32")  # no check asked for


def test_refuses_a_missing_model_file(bundle, tmp_path):
    b = _damaged(bundle, tmp_path)
    (b / "openvino_int8.bin").unlink()
    with pytest.raises(BundleError) as e:
        Runtime(b)
    assert "missing" in _one_line(e.value, "openvino_int8.bin")
    Runtime(b, backend="onnxruntime")  # the other models are still usable


def test_refuses_a_truncated_or_corrupt_model_file(bundle, tmp_path):
    b = _damaged(bundle, tmp_path)
    data = (b / "model_fp32.onnx").read_bytes()
    (b / "model_fp32.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError) as e:
        Runtime(b, precision="fp32", backend="onnxruntime")
    assert "truncated" in _one_line(e.value, "model_fp32.onnx")
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF  # same size, one bit pattern changed
    (b / "model_fp32.onnx").write_bytes(bytes(flipped))
    with pytest.raises(BundleError) as e:
        Runtime(b, precision="fp32", backend="onnxruntime")
    assert "sha256" in _one_line(e.value, "model_fp32.onnx")


def test_refuses_an_unknown_format_version(bundle, tmp_path):
    b = _damaged(bundle, tmp_path)
    info = json.loads((b / "bundle.json").read_text())
    info["format"] = "pininspect-bundle/99"
    (b / "bundle.json").write_text(json.dumps(info))
    with pytest.raises(BundleError) as e:
        Runtime(b)
    text = _one_line(e.value, "bundle.json")
    assert "pininspect-bundle/99" in text and FORMAT in text


def test_refuses_a_broken_or_missing_bundle_json(bundle, tmp_path):
    b = _damaged(bundle, tmp_path)
    text = (b / "bundle.json").read_text()
    (b / "bundle.json").write_text(text[: len(text) // 3])
    with pytest.raises(BundleError) as e:
        Runtime(b)
    assert "not valid JSON" in _one_line(e.value, "bundle.json")
    (b / "bundle.json").unlink()
    with pytest.raises(BundleError) as e:
        Runtime(b)
    assert "missing" in _one_line(e.value, "bundle.json")
    with pytest.raises(BundleError, match="no such bundle folder"):
        Runtime(tmp_path / "nowhere")


def test_refuses_a_model_whose_embedded_description_disagrees(bundle, tmp_path):
    # bundle.json edited to describe another training run than the one inside the model files
    b = _damaged(bundle, tmp_path)
    info = json.loads((b / "bundle.json").read_text())
    info["config_hash"] = "ffffffffffffffff"
    (b / "bundle.json").write_text(json.dumps(info))
    for backend in ("onnxruntime", "openvino"):
        with pytest.raises(BundleError) as e:
            Runtime(b, backend=backend, precision="fp32")
        assert "config_hash" in _one_line(e.value, "fp32")


def test_runtime_modules_import_without_torch():
    code = (
        "import sys, models.runtime, edge_app.predict, models.bundle; "
        "bad = [m for m in ('torch', 'timm', 'nncf', 'export', 'training') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
