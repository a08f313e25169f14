"""The station over the real runtime (models.runtime) and a tiny random-weights bundle: the
plumbing, not the accuracy (tests/integration/test_station_model.py checks the shipped model)."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_bundles import tiny_bundle

from edge_app import headless
from edge_app.events import ModelState
from edge_app.settings import StationConfig
from edge_app.sources import SimSource

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("station") / "bundle")


def test_headless_verdicts_are_the_runtimes(bundle):
    from models.runtime import Runtime

    cfg = StationConfig(
        source="sim", sim_fps=0, sim_pool=8, sim_defect_rate=0.5, archive_enabled=False, model=str(bundle)
    )
    out = io.StringIO()
    status, summary = headless.run(cfg, frames=16, out=out, err=io.StringIO())
    assert status == 0, summary
    records = [json.loads(line) for line in out.getvalue().splitlines()[:-1]]
    src = SimSource(cfg.part, 0.5, 0, 8, cfg.sim_seed)
    src.open()
    rt = Runtime(bundle)
    direct = [rt.infer([img])[0] for img, _ in src.pool]
    for r in records:
        d = direct[r["frame"] % 8]
        assert (r["label"], r["pin"]) == (d.label, d.pin)
        assert r["scores"] == pytest.approx(d.scores, abs=1e-3)
    assert summary["model"].startswith(rt.name) and summary["frames"] == 16
    assert summary["model_choice"].split(" [")[0] == rt.choice_reason.split(" [")[0]  # the same choice, cached


def test_cli_headless_with_a_bundle(bundle, tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "edge_app", "--headless", "--source", "sim", "--sim-pool", "6", "--frames", "12",
         "--model", str(bundle), "--archive", str(tmp_path / "arch"), "--config", str(tmp_path / "s.json"),
         "--backend", "onnxruntime", "--precision", "fp32"],
        cwd=ROOT, capture_output=True, text=True, timeout=180, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    lines = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(lines) == 13 and lines[-1]["summary"]["frames"] == 12
    assert "(onnxruntime, fp32)" in lines[-1]["summary"]["model"]
    ng = sum(1 for r in lines[:-1] if r["label"] != "OK")
    assert len(list((tmp_path / "arch" / "images").glob("*.png"))) == ng


@pytest.mark.gui
def test_window_runs_the_real_runtime(bundle, qtbot, tmp_path):
    from edge_app.ui.window import StationWindow
    from models.runtime import Runtime

    cfg = StationConfig(source="sim", sim_fps=30, sim_pool=6, model=str(bundle), archive_dir=str(tmp_path / "a"))
    win = StationWindow(cfg, tmp_path / "s.json")
    qtbot.addWidget(win)
    win.show()
    try:
        win.start()
        with qtbot.waitSignal(win.verdictShown, timeout=60000) as got:
            pass
        assert win.verdict_label.text() == got.args[0].verdict.label
        assert win.status().model is ModelState.READY
        rt = Runtime(bundle)
        assert rt.name in win.model_label.text() and rt.version in win.model_label.text()
        assert f"{rt.key}: " in win.model_label.text()  # and why this model runs on this PC
        for cls, box in win.threshold_boxes.items():
            assert box.value() == pytest.approx(rt.thresholds[cls])  # the bundle's own thresholds
    finally:
        win.station.close()


@pytest.mark.gui
def test_window_shows_why_a_bundle_is_refused(qtbot, tmp_path):
    from edge_app.ui.window import StationWindow

    cfg = StationConfig(source="sim", sim_pool=2, model=str(tmp_path / "empty"), archive_enabled=False)
    win = StationWindow(cfg, None)
    qtbot.addWidget(win)
    win.show()
    win.start()
    qtbot.waitUntil(lambda: win.status().model is ModelState.FAILED and not win.status().running, timeout=20000)
    assert f"Model not loaded: {tmp_path / 'empty'}: " in win.banner.text()
    win.station.close()
