import io
import json
from collections import Counter

import cv2
import numpy as np
import pytest
from station_fakes import FakeRuntime

import edge_app.headless as headless
import edge_app.station as station_mod
from edge_app.__main__ import main
from edge_app.settings import StationConfig
from edge_app.sources import SimSource
from models.bundle import BundleError


@pytest.fixture
def fake_runtime(monkeypatch):
    """Make every source the headless run builds known to a FakeRuntime (90% right)."""
    made = {}
    real = station_mod.make_source

    def make_source(text, cfg=None):
        made["source"] = real(text, cfg)
        return made["source"]

    monkeypatch.setattr(station_mod, "make_source", make_source)
    rt = {}

    def factory(cfg):
        def load():
            rt["rt"] = FakeRuntime(made["source"], accuracy=0.9)
            return rt["rt"]

        return load

    monkeypatch.setattr(headless, "runtime_factory", factory)
    return rt


def parse(text):
    lines = [json.loads(line) for line in text.splitlines()]
    return lines[:-1], lines[-1]["summary"]


def test_headless_sim_verdicts_match_truth_at_the_fakes_accuracy(fake_runtime, tmp_path):
    cfg = StationConfig(source="sim", sim_fps=0, sim_pool=20, sim_defect_rate=0.5, archive_dir=str(tmp_path / "a"))
    out, err = io.StringIO(), io.StringIO()
    status, summary = headless.run(cfg, frames=100, out=out, err=err)
    assert status == 0
    records, printed = parse(out.getvalue())
    assert printed == json.loads(json.dumps(summary))
    assert len(records) == 100 and [r["frame"] for r in records] == list(range(100))
    rt = fake_runtime["rt"]
    pool = [t for _, t in rt.source.pool]
    for r in records:
        assert set(r) == {"frame", "label", "pin", "scores", "latency_ms", "truth"}
        truth = pool[r["frame"] % 20]
        assert r["truth"] == {"label": truth.label, "pin": truth.pin}
        right = rt.is_right(r["frame"] % 20)
        assert (r["label"] == truth.label and r["pin"] == truth.pin) == right
    expected = sum(rt.is_right(i % 20) for i in range(100)) / 100
    assert expected < 1 and summary["accuracy"]["label"] == pytest.approx(expected)  # the fake errs, and it is seen
    assert summary["frames"] == 100 and summary["dropped"] == 0
    assert set(summary["latency_ms"]) == {"p50", "p95", "p99"}
    assert summary["counts"] == dict(Counter(r["label"] for r in records))
    ng = sum(1 for r in records if r["label"] != "OK")
    assert ng > 0 and summary["archive"].startswith(f"{ng} NG frames saved")
    assert len(list((tmp_path / "a" / "images").iterdir())) == ng
    assert "accuracy vs truth (100 frames)" in err.getvalue()


def test_headless_on_a_video_until_it_ends(fake_runtime, tmp_path):
    src = SimSource(defect_rate=0.5, fps=0, pool=6, seed=0)
    src.open()
    vw = cv2.VideoWriter(str(tmp_path / "line.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
    for img, _ in src.pool:
        vw.write(np.ascontiguousarray(img))
    vw.release()
    cfg = StationConfig(source=f"video:{tmp_path / 'line.avi'}", archive_enabled=False)
    out, err = io.StringIO(), io.StringIO()
    status, summary = headless.run(cfg, frames=None, out=out, err=err)
    assert status == 0
    records, _ = parse(out.getvalue())
    assert len(records) == 6 and "truth" not in records[0]
    assert summary["frames"] == 6 and summary["end"].startswith("ended")
    assert "accuracy" not in summary


def test_headless_model_failure_is_exit_1_with_the_reason(monkeypatch, tmp_path):
    def factory(cfg):
        def load():
            raise BundleError(f"{cfg.model_dir()}/bundle.json", "missing")

        return load

    monkeypatch.setattr(headless, "runtime_factory", factory)
    cfg = StationConfig(source="sim", sim_pool=2, archive_enabled=False, model=str(tmp_path))
    err = io.StringIO()
    status, summary = headless.run(cfg, frames=5, out=io.StringIO(), err=err)
    assert status == 1 and summary["frames"] == 0
    assert f"error: model: {tmp_path}/bundle.json: missing" in err.getvalue()


def test_cli_headless(fake_runtime, capsys, tmp_path):
    argv = ["--headless", "--source", "sim", "--frames", "12", "--sim-pool", "20", "--no-archive", "--quiet"]
    assert main([*argv, "--config", str(tmp_path / "s.json"), "--sim-defect-rate", "0.5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and json.loads(out[0])["summary"]["frames"] == 12


@pytest.mark.parametrize("how", ["flag", "settings file"])
def test_thresholds_given_before_the_model_loads_decide_from_the_first_frame(fake_runtime, capsys, tmp_path, how):
    """An operator who raises the thresholds above every score must get OK on every frame, from
    the first one, whether the thresholds come from --threshold or from the settings file."""
    argv = ["--headless", "--source", "sim", "--frames", "12", "--sim-pool", "20", "--sim-defect-rate", "1.0"]
    argv += ["--no-archive", "--sim-fps", "0"]
    settings = tmp_path / "s.json"
    if how == "flag":
        argv += ["--threshold", "BENDNG=0.99", "--threshold", "NUKENG=0.99"]
    else:
        settings.write_text(json.dumps({"thresholds": {"BENDNG": 0.99, "NUKENG": 0.99}}))
    assert main([*argv, "--config", str(settings)]) == 0
    records, summary = parse(capsys.readouterr().out)
    assert len(records) == 12 and [r["label"] for r in records] == ["OK"] * 12
    assert fake_runtime["rt"].thresholds == {"BENDNG": 0.99, "NUKENG": 0.99}
    # the same line at the default thresholds: the fake's answers are NG (it is 90% right)
    if how == "flag":
        argv = argv[: argv.index("--threshold")]
    assert main([*argv, "--config", str(tmp_path / "default.json")]) == 0
    records, _ = parse(capsys.readouterr().out)
    assert sum(r["label"] != "OK" for r in records) >= 9


def test_a_source_that_cannot_be_made_is_exit_1_with_one_error_line(tmp_path):
    err = io.StringIO()
    cfg = StationConfig(source="nonsense:thing", archive_enabled=False, model=str(tmp_path))
    status, summary = headless.run(cfg, frames=5, out=io.StringIO(), err=err)
    lines = err.getvalue().strip().splitlines()
    assert status == 1 and summary == {}
    assert len(lines) == 1 and lines[0].startswith("error: source:") and "nonsense" in lines[0]
