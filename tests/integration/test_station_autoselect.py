"""The runtime's per-machine model choice over a real tiny bundle: self-check, cache, forcing,
an INT8 model that computes something else, a missing backend, a bundle without frames."""

import json
import sys

import numpy as np
import pytest
from tiny_bundles import copy_bundle, tiny_bundle

from models import autoselect
from models.bundle import BUNDLE_FILE, FRAMES_FILE, file_entry, read_frames
from models.preprocess import normalize
from models.runtime import Runtime


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("autoselect") / "bundle")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(autoselect.CACHE_ENV, str(folder))
    return folder


def _edit(b, change):
    info = json.loads((b / BUNDLE_FILE).read_text())
    change(info)
    (b / BUNDLE_FILE).write_text(json.dumps(info, indent=2))
    return b


def _onnxruntime_only(b):
    def drop_openvino(info):
        del info["models"]["openvino/int8"], info["models"]["openvino/fp32"]

    return _edit(b, drop_openvino)


def test_export_writes_small_checked_frames_of_ok_and_defective_parts(bundle):
    info = json.loads((bundle / BUNDLE_FILE).read_text())
    sc = info["selfcheck"]
    assert sc["files"][FRAMES_FILE] == file_entry(bundle / FRAMES_FILE)
    assert (bundle / FRAMES_FILE).stat().st_size < 1.5e6
    assert sc["labels"].get("OK") and (sc["labels"].get("BENDNG", 0) + sc["labels"].get("NUKENG", 0))
    frames = read_frames(bundle, info, Runtime(bundle, "onnxruntime", "fp32").input_spec)
    assert len(frames) == sc["frames"] == sum(sc["labels"].values())


def test_first_load_measures_later_loads_reuse_it_and_forcing_bypasses_it(bundle, cache, monkeypatch):
    rt = Runtime(bundle)
    assert rt.choice_reason.startswith(f"{rt.key}: fastest agreeing of 4 on this CPU (")
    assert len(list(cache.glob("runtime-choice/*.json"))) == 1
    forced = Runtime(bundle, backend=rt.backend, precision=rt.precision)
    assert forced.choice_reason == f"{rt.key}: forced (backend={rt.backend}, precision={rt.precision}); not measured"
    # the session taken over from the self-check runs the chosen model
    x = normalize(list(read_frames(bundle, rt.info, rt.input_spec)[:2]), rt.input_spec)
    np.testing.assert_allclose(rt.infer_batch(x)[0], forced.infer_batch(x)[0], atol=1e-6)

    measured = []

    def counted(rt, x):  # no inference: only whether the self-check runs matters from here on
        measured.append(rt.key)
        return 1.0, (np.zeros((len(x), 3)), np.zeros((len(x), 28)), np.zeros((len(x), 12, 20)))

    monkeypatch.setattr(autoselect, "time_outputs", counted)
    again = Runtime(bundle)
    assert again.key == rt.key and again.choice_reason.endswith("cached]") and measured == []
    assert Runtime(bundle, precision="fp32").choice_reason.endswith("first in the fixed preference; not measured")
    assert measured == []

    monkeypatch.setattr(autoselect.cpu, "fingerprint", lambda: "another machine")
    Runtime(bundle)
    assert len(measured) == 4


def _break_int8(b):
    """Scramble the INT8 ONNX model's per-channel weight scales: a model that loads and runs, but
    computes another function (what a bad kernel or a bad quantization would look like)."""
    import onnx
    from onnx import numpy_helper

    path = b / "model_int8.onnx"
    model = onnx.load(str(path))
    inits = {t.name: t for t in model.graph.initializer}
    rng = np.random.default_rng(0)
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits and node.input[1] in inits:
            scale = numpy_helper.to_array(inits[node.input[1]])
            if scale.size > 1:  # per-channel: a weight
                new = rng.permutation(scale.reshape(-1)).reshape(scale.shape) * rng.uniform(0.2, 5, scale.shape)
                inits[node.input[1]].CopyFrom(numpy_helper.from_array(new.astype(scale.dtype), node.input[1]))
    onnx.save(model, str(path))
    return _edit(b, lambda info: info["models"]["onnxruntime/int8"]["files"].update({path.name: file_entry(path)}))


def test_an_int8_model_that_disagrees_with_fp32_is_dropped_even_when_fastest(bundle, cache, tmp_path, monkeypatch):
    b = _break_int8(_onnxruntime_only(copy_bundle(bundle, tmp_path / "broken")))
    real = autoselect.time_outputs
    fake_ms = {"onnxruntime/int8": 1.0, "onnxruntime/fp32": 9.0}
    monkeypatch.setattr(autoselect, "time_outputs", lambda rt, x: (fake_ms[rt.key], real(rt, x)[1]))
    rt = Runtime(b)
    assert rt.key == "onnxruntime/fp32", rt.choice_reason
    assert "onnxruntime/int8 dropped: " in rt.choice_reason and "(against onnxruntime/fp32)" in rt.choice_reason
    # the untouched INT8 model of the same bundle is not dropped
    good = _onnxruntime_only(copy_bundle(bundle, tmp_path / "good"))
    assert "dropped" not in Runtime(good).choice_reason


def test_openvino_that_cannot_be_imported_is_skipped(bundle, cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    no_run = (np.zeros((1, 3)), np.zeros((1, 28)), np.zeros((1, 12, 20)))  # the outputs do not matter here
    monkeypatch.setattr(autoselect, "time_outputs", lambda rt, x: (1.0, no_run))
    rt = Runtime(bundle)
    assert rt.backend == "onnxruntime"
    assert "openvino/int8 skipped: " in rt.choice_reason and "OpenVINO is not installed" in rt.choice_reason
    assert "fastest agreeing of 2" in rt.choice_reason


def test_a_bundle_without_frames_loads_with_the_fixed_preference(bundle, cache, tmp_path):
    b = _edit(copy_bundle(bundle, tmp_path / "old"), lambda info: info.pop("selfcheck"))
    (b / FRAMES_FILE).unlink()
    rt = Runtime(b)
    assert rt.key == "openvino/int8"
    assert "fixed preference (this bundle has no self-check frames" in rt.choice_reason
    assert not cache.exists()  # nothing measured, nothing cached
