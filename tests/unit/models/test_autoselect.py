"""models.autoselect: the per-machine model choice, with injected timings and verdicts (no model runs)."""

import json
import logging

import numpy as np
import pytest

from edge_app.headless import format_summary
from models import autoselect
from models.bundle import BUNDLE_FILE, FRAMES_FILE, MODEL_FILES, PREFERENCE, BundleError, file_entry, write_frames
from models.decision import clear_of_thresholds
from models.preprocess import InputSpec

SPEC = InputSpec()
TH = {"BENDNG": 0.5, "NUKENG": 0.5}


def make_bundle(folder, keys=PREFERENCE, frames=6):
    """A bundle folder select() can read: bundle.json, placeholder model files, self-check frames."""
    folder.mkdir(parents=True, exist_ok=True)
    models = {}
    for k in keys:
        for name in MODEL_FILES[k]:
            (folder / name).write_bytes(f"placeholder {name}".encode())
        models[k] = {"files": {n: file_entry(folder / n) for n in MODEL_FILES[k]}}
    info = {"name": "fake", "input": SPEC.to_dict(), "thresholds": TH, "models": models}
    if frames:
        rng = np.random.default_rng(0)
        small = rng.integers(0, 255, (frames, SPEC.height, SPEC.width, 3), np.uint8)
        info["selfcheck"] = write_frames(folder / FRAMES_FILE, small, np.arange(frames) % 3)
    (folder / BUNDLE_FILE).write_text(json.dumps(info))
    return folder, info


class Fake:
    """Stands in for a loaded Runtime; `key` is all the injected measure needs."""

    def __init__(self, key):
        self.key = key


VAL = {k: (i + 1) / 10 for i, k in enumerate(PREFERENCE)}  # each model's fake score: tells outputs apart


class Bench:
    """Injected load / measure / compare: fixed latencies, INT8 models that agree unless listed."""

    def __init__(self, ms, disagree=(), broken=()):
        self.ms, self.disagree, self.broken = ms, dict.fromkeys(disagree, "changed 3 clear verdicts of 24"), broken
        self.loaded, self.measured, self.compared = [], [], []

    def load(self, key):
        self.loaded.append(key)
        if key in self.broken:
            raise BundleError(f"/b/{MODEL_FILES[key][0]}", "OpenVINO is not installed (pip install openvino)")
        return Fake(key)

    def measure(self, rt, x):
        self.measured.append(rt.key)
        n = len(x)
        return self.ms[rt.key], (np.full((n, 3), VAL[rt.key]), np.zeros((n, 28)), np.zeros((n, 12, 20)))

    def compare(self, ref, out, thresholds):
        pair = tuple(next(k for k, v in VAL.items() if v == o[0][0, 0]) for o in (ref, out))
        self.compared.append(pair)
        return self.disagree.get(pair[1], "")

    def select(self, folder, info, cache):
        return autoselect.select(folder, info, self.load, TH, 2, self.measure, self.compare, cache=cache)


MS = {"openvino/int8": 12.1, "onnxruntime/int8": 7.3, "onnxruntime/fp32": 7.0, "openvino/fp32": 8.2}


def test_picks_the_fastest_model_that_agrees_and_says_why(tmp_path):
    folder, info = make_bundle(tmp_path / "b")
    bench = Bench({**MS, "onnxruntime/int8": 5.0}, disagree=["onnxruntime/int8"])
    c = bench.select(folder, info, tmp_path / "cache")
    assert c.key == "onnxruntime/fp32" and not c.cached
    assert c.reason.startswith("onnxruntime/fp32: fastest agreeing of 4 on this CPU (")
    assert "onnxruntime/int8 5.0 ms, onnxruntime/fp32 7.0 ms, openvino/fp32 8.2 ms, openvino/int8 12.1 ms" in c.reason
    assert "onnxruntime/int8 dropped: changed 3 clear verdicts of 24 (against onnxruntime/fp32)" in c.reason
    assert c.runtime.key == "onnxruntime/fp32"  # loaded once, handed over
    assert bench.measured[:2] == ["onnxruntime/fp32", "openvino/fp32"]  # FP32 first: the references
    # an agreeing INT8 model wins when it is the fastest
    bench = Bench({**MS, "openvino/int8": 3.0})
    assert bench.select(folder, info, tmp_path / "cache2").key == "openvino/int8"


def test_int8_is_checked_against_its_own_backends_fp32_else_any(tmp_path):
    bench = Bench(MS)
    bench.select(*make_bundle(tmp_path / "all"), tmp_path / "c")
    assert sorted(bench.compared) == [("onnxruntime/fp32", "onnxruntime/int8"), ("openvino/fp32", "openvino/int8")]
    bench = Bench(MS)
    bench.select(*make_bundle(tmp_path / "no-ov-fp32", keys=("openvino/int8", "onnxruntime/fp32")), tmp_path / "c")
    assert bench.compared == [("onnxruntime/fp32", "openvino/int8")]


def test_the_choice_is_cached_and_redone_when_the_machine_or_bundle_changes(tmp_path, monkeypatch):
    folder, info = make_bundle(tmp_path / "b")
    cache = tmp_path / "cache"
    first = Bench(MS).select(folder, info, cache)
    assert first.key == "onnxruntime/fp32" and len(list((cache / "runtime-choice").glob("*.json"))) == 1

    again = Bench(MS)
    c = again.select(folder, info, cache)
    assert c.cached and c.key == first.key and again.measured == [] and again.loaded == [first.key]
    assert c.reason.startswith(first.reason) and "cached]" in c.reason

    monkeypatch.setattr(autoselect.cpu, "fingerprint", lambda: "another CPU|8|avx2+avx512+vnni")
    other = Bench({**MS, "openvino/int8": 2.0})
    c = other.select(folder, info, cache)
    assert not c.cached and c.key == "openvino/int8" and len(other.measured) == 4
    assert Bench(MS).select(folder, info, cache).cached  # and that machine's choice is kept too

    monkeypatch.setattr(autoselect, "_version", lambda dist: "99.0")
    assert not Bench(MS).select(folder, info, cache).cached  # a new onnxruntime/OpenVINO: measure again

    info["version"] = "re-exported"
    (folder / BUNDLE_FILE).write_text(json.dumps(info))
    assert not Bench(MS).select(folder, info, cache).cached


def test_a_cache_that_cannot_be_written_is_reported_once_and_the_station_still_runs(tmp_path, caplog):
    folder, info = make_bundle(tmp_path / "b")
    blocked = tmp_path / "cache-is-a-file"
    blocked.write_text("not a folder")
    before = sorted(folder.iterdir())
    with caplog.at_level(logging.WARNING, logger="models.autoselect"):
        c1 = Bench(MS).select(folder, info, blocked)
        c2 = Bench(MS).select(folder, info, blocked)
    assert c1.key == c2.key == "onnxruntime/fp32" and not c2.cached
    assert "not cached: cannot write the model-choice cache" in c1.reason
    assert sum("cannot write the model-choice cache" in r.message for r in caplog.records) == 1
    assert sorted(folder.iterdir()) == before  # nothing written into the bundle instead


def test_cache_folder_is_per_user_and_overridable(tmp_path, monkeypatch):
    monkeypatch.setenv("PININSPECT_CACHE_DIR", str(tmp_path / "mine"))
    assert autoselect.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("PININSPECT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert autoselect.cache_dir() == tmp_path / "xdg" / "pininspect"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert autoselect.cache_dir() == tmp_path / "home" / ".cache" / "pininspect"


def test_a_backend_that_cannot_load_is_skipped_with_its_reason(tmp_path):
    folder, info = make_bundle(tmp_path / "b")
    bench = Bench({**MS, "openvino/fp32": 1.0}, broken=["openvino/int8", "openvino/fp32"])
    c = bench.select(folder, info, tmp_path / "cache")
    assert c.key == "onnxruntime/fp32"
    assert "fastest agreeing of 2" in c.reason
    assert "openvino/int8 skipped: /b/openvino_int8.xml: OpenVINO is not installed" in c.reason
    with pytest.raises(BundleError, match="no model in the bundle can run on this machine"):
        Bench(MS, broken=list(MS)).select(folder, info, tmp_path / "cache3")


def test_a_model_that_fails_at_run_time_is_skipped(tmp_path):
    folder, info = make_bundle(tmp_path / "b")
    bench = Bench({**MS, "openvino/int8": 1.0})
    measure = bench.measure

    def crashes_on_openvino_int8(rt, x):
        if rt.key == "openvino/int8":
            raise RuntimeError("Exception from src/plugins/intel_cpu: unsupported kernel\nmore lines")
        return measure(rt, x)

    c = autoselect.select(
        folder, info, bench.load, TH, 2, crashes_on_openvino_int8, bench.compare, cache=tmp_path / "c"
    )
    assert c.key == "onnxruntime/fp32"
    assert "openvino/int8 skipped: failed to run (Exception from src/plugins/intel_cpu: unsupported kernel)" in c.reason


def test_int8_without_an_fp32_model_to_check_it_against_is_dropped(tmp_path):
    folder, info = make_bundle(tmp_path / "b")
    with pytest.raises(BundleError) as e:
        Bench(MS, broken=["onnxruntime/fp32", "openvino/fp32"]).select(folder, info, tmp_path / "c")
    assert "openvino/int8 dropped: no FP32 model ran to check it against" in str(e.value)


def test_a_bundle_without_frames_uses_the_fixed_preference_and_says_so(tmp_path):
    folder, info = make_bundle(tmp_path / "old", frames=0)
    bench = Bench(MS)
    c = bench.select(folder, info, tmp_path / "cache")
    assert c.key == PREFERENCE[0] and bench.measured == []
    assert "fixed preference" in c.reason and "no self-check frames" in c.reason
    bench = Bench(MS, broken=["openvino/int8"])  # ... and still falls back past a backend that is missing
    c = bench.select(folder, info, tmp_path / "cache")
    assert c.key == PREFERENCE[1] and "openvino/int8 skipped: " in c.reason


def test_damaged_frames_or_model_files_refuse_the_bundle(tmp_path):
    folder, info = make_bundle(tmp_path / "b")
    data = bytearray((folder / FRAMES_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / FRAMES_FILE).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"{FRAMES_FILE}: sha256 does not match"):
        Bench(MS).select(folder, info, tmp_path / "cache")
    folder, info = make_bundle(tmp_path / "b2")
    (folder / "openvino_int8.bin").unlink()
    with pytest.raises(BundleError, match="openvino_int8.bin: missing"):
        Bench(MS).select(folder, info, tmp_path / "cache")


def test_frames_round_trip_small(tmp_path):
    folder, info = make_bundle(tmp_path / "b", frames=3)
    from models.bundle import read_frames

    back = read_frames(folder, info, SPEC)
    assert back.shape == (3, SPEC.height, SPEC.width, 3) and back.dtype == np.uint8
    assert info["selfcheck"]["frames"] == 3 and info["selfcheck"]["labels"] == {"BENDNG": 1, "NUKENG": 1, "OK": 1}


def test_agreement_counts_changed_clear_verdicts_and_score_drift():
    # BENDNG, NUKENG, OK scores; frame 2 sits just under the BENDNG threshold, so flipping it is no disagreement
    ref = np.array([[0.9, 0.05, 0.05], [0.05, 0.05, 0.9], [0.45, 0.0, 0.55], [0.1, 0.8, 0.1]])
    pins = np.zeros((4, 28))
    heat = np.zeros((4, 12, 20))
    assert clear_of_thresholds(ref, TH).tolist() == [True, True, False, True]
    assert autoselect.agreement((ref, pins, heat), (ref, pins, heat), TH) == ""
    borderline = ref.copy()
    borderline[2] = [0.55, 0.0, 0.45]  # OK -> BENDNG
    assert autoselect.agreement((ref, pins, heat), (borderline, pins, heat), TH) == ""
    flipped = ref.copy()
    flipped[[0, 3]] = [0.05, 0.05, 0.9]
    assert autoselect.agreement((ref, pins, heat), (flipped, pins, heat), TH) == "changed 2 clear verdicts of 4"
    drift = ref + [[0.0, 0.0, 0.2]]  # no verdict changes (decide does not read OK), the scores do
    assert "moved the scores by" in autoselect.agreement((ref, pins, heat), (drift, pins, heat), TH)


def test_the_headless_summary_shows_the_choice():
    text = format_summary(
        {"model": "tiny v1 (openvino, fp32)", "model_choice": "openvino/fp32: fastest ...", "frames": 0}
    )
    assert "choice   openvino/fp32: fastest ..." in text
