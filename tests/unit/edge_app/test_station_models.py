"""Model versions in the station: switch to another bundle while it runs, roll back in one call,
a bundle that fails to load leaves the running model, and every archived verdict names its model."""

import threading
import time

import pytest
from station_fakes import FakeRuntime

from edge_app.archive import Archive
from edge_app.settings import StationConfig
from edge_app.station import Station


def loader(loads):
    """load_runtime: a FakeRuntime whose version is the bundle folder's name; 'broken' fails."""

    def load_runtime(cfg):
        def load():
            if "broken" in cfg.model:
                raise RuntimeError(f"{cfg.model}/bundle.json: sha256 of model_int8.onnx does not match")
            rt = FakeRuntime(default="OK")
            rt.info = {**rt.info, "name": "fake", "version": cfg.model or "shipped"}
            loads.append(cfg.model)
            return rt

        return load

    return load_runtime


def station(tmp_path, loads, **kw):
    seen = []
    lock = threading.Lock()

    def on_result(r):
        with lock:
            seen.append(r.model)

    cfg = StationConfig(**{
        "source": "sim", "sim_fps": 200, "sim_pool": 4, "model": "A", "archive_dir": str(tmp_path / "archive"),
        "archive_ok_every": 1, "archive_ok_per_hour": 0, "thresholds": {"BENDNG": 0.7}, **kw,
    })  # fmt: skip
    return Station(cfg, on_result=on_result, load_runtime=loader(loads)), seen


def wait_for(seen, version, n=3, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(1 for m in list(seen) if m == version) >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"no {n} verdicts of {version}: {sorted(set(seen))}")


def test_switch_while_running_then_roll_back(tmp_path):
    loads = []
    st, seen = station(tmp_path, loads)
    try:
        assert st.start()
        wait_for(seen, "fake A")
        pipe = st.pipeline
        ok, msg = st.switch_model("B")
        assert ok and "fake-pinvit B" in msg and "fake-pinvit A (fake, fp32) kept for a rollback" in msg
        wait_for(seen, "fake B")
        assert st.pipeline is pipe and st.running  # no restart: the same pipeline, the same source
        assert st.cfg.model == "B" and st.cfg.model_history == ["A"]
        assert st.model.runtime.thresholds["BENDNG"] == 0.7  # the operator's thresholds hold for it
        ok, msg = st.rollback_model()
        assert ok and st.cfg.model == "A" and st.cfg.model_history == ["B"]
        seen.clear()
        wait_for(seen, "fake A")
        assert loads == ["A", "B", "A"]
    finally:
        st.close()
    versions = Archive(tmp_path / "archive").model_versions()
    assert set(versions) == {"fake A", "fake B"} and all(versions.values())


def test_a_bundle_that_fails_to_load_leaves_the_running_model(tmp_path):
    messages = []
    st, seen = station(tmp_path, [])
    st._on_message = lambda level, msg: messages.append(msg)
    try:
        assert st.start()
        wait_for(seen, "fake A")
        ok, msg = st.switch_model("/bundles/broken")
        assert not ok and "sha256" in msg and "still running fake-pinvit A" in msg and "\n" not in msg
        assert st.cfg.model == "A" and st.cfg.model_history == [] and msg in messages
        seen.clear()
        wait_for(seen, "fake A")  # it kept inspecting with the model it had
        assert st.rollback_model() == (False, "no earlier model to roll back to")
    finally:
        st.close()


def test_the_history_is_short_and_holds_each_bundle_once(tmp_path):
    st, _ = station(tmp_path, [], archive_enabled=False)
    for m in ["B", "C", "A", "D", "E", "F", "G"]:
        assert st.switch_model(m)[0]
    assert st.cfg.model == "G" and st.cfg.model_history == ["F", "E", "D", "A", "C"]
    assert st.model.runtime.info["version"] == "G" and not st.running  # switched while stopped too


def test_the_command_line_switch_refuses_a_bundle_that_does_not_load(tmp_path, capsys):
    from edge_app.__main__ import main
    from edge_app.settings import load_config, save_config

    path = tmp_path / "station.json"
    save_config(StationConfig(model="A", model_history=["Z"]), path)
    before = path.read_text()
    assert main(["--config", str(path), "--switch-model", str(tmp_path / "no-bundle")]) == 1
    err = capsys.readouterr().err
    assert "error: model" in err and "no-bundle" in err and "Traceback" not in err
    assert path.read_text() == before  # the settings file still names the model that loads
    assert load_config(path)[0].model_history == ["Z"]


def test_the_command_line_switch_saves_a_full_path_and_takes_no_other_setting(tmp_path, capsys, monkeypatch):
    """`--switch-model runs/x/bundle` from the repo saved the relative path, which a station started
    elsewhere (a desktop launcher, autostart) cannot find; other flags beside it were dropped
    silently (a --part given was not the part the bundle was checked against)."""
    from pathlib import Path

    from edge_app.__main__ import main
    from edge_app.settings import load_config

    repo = Path(__file__).resolve().parents[3]
    monkeypatch.chdir(repo)
    path = tmp_path / "station.json"
    assert main(["--config", str(path), "--switch-model", "models/default", "--threshold", "BENDNG=0.3"]) == 2
    assert "--switch-model changes only the model" in capsys.readouterr().err and not path.exists()
    assert main(["--config", str(path), "--switch-model", "models/default"]) == 0
    assert load_config(path)[0].model == str(repo / "models" / "default")
    monkeypatch.chdir(tmp_path)
    assert main(["--config", str(path), "--rollback-model", "--part", "default"]) == 2
    assert "--rollback-model changes only the model" in capsys.readouterr().err


@pytest.mark.gui
def test_the_window_switches_and_rolls_back_and_saves_the_history(qtbot, tmp_path):
    from edge_app.settings import load_config
    from edge_app.ui.window import StationWindow

    cfg = StationConfig(source="sim", sim_fps=40, sim_pool=4, model="A", archive_enabled=False)
    win = StationWindow(cfg, tmp_path / "station.json", load_runtime=loader([]), file_config=StationConfig())
    qtbot.addWidget(win)
    try:
        assert not win.rollback_button.isEnabled()
        with qtbot.waitSignal(win.modelSwitched, timeout=10000) as sig:
            win.switch_model("B")
        assert sig.args[0] and win.rollback_button.isEnabled()
        saved = load_config(tmp_path / "station.json")[0]
        assert (saved.model, saved.model_history) == ("B", ["A"])
        with qtbot.waitSignal(win.modelSwitched, timeout=10000) as sig:
            win.switch_model("/bundles/broken")
        assert not sig.args[0] and "still running" in win.banner.text() and win.station.cfg.model == "B"
        with qtbot.waitSignal(win.modelSwitched, timeout=10000) as sig:
            win.rollback_button.click()
        assert sig.args[0] and load_config(tmp_path / "station.json")[0].model == "A"
        assert win.station.model.runtime.info["version"] == "A"
    finally:
        win.station.close()


def test_reset_counters_zeroes_the_session_and_the_run_and_max_frames_counts_from_there(tmp_path):
    """The PLC's reset (and the window's) restarts both counts; a run with max_frames then
    inspects that many more frames, as `headless --frames` with a PLC reset mid-run does."""
    # 25 frames a second: a frame or two may land between two lines of this test on a busy CPU,
    # never ten
    st, seen = station(tmp_path, [], archive_enabled=False, sim_fps=25)
    assert st.start(max_frames=40, keep_all_latencies=True)
    wait_for(seen, "fake A", n=10, timeout=20)
    counted = st.pipeline.stats.n
    st.reset_counters()
    before = len(seen)
    assert st.stats.n < 3 and st.pipeline.stats.n < counted  # both start again (a frame may land meanwhile)
    assert st.pipeline.wait(timeout=20)
    assert st.pipeline.summary()["frames"] == 40  # 40 counted from the reset, not from the start
    assert abs((len(seen) - before) - 40) <= 2 and abs(st.stats.n - 40) <= 2
    st.close()


def test_apply_config_while_running_reloads_only_what_changed(tmp_path):
    """New settings on a running station: the archive takes its new policy and size limit in
    place, the model is reloaded only when a model field changed, and the line runs on."""
    from dataclasses import replace

    loads = []
    st, seen = station(tmp_path, loads)
    st.start()
    wait_for(seen, "fake A")
    archive = st.archive
    assert st.apply_config(replace(st.cfg, archive_ok_every=7, archive_max_gb=2.5)) is True  # restarted
    assert st.archive is archive and archive.keep.ok_every == 7 and archive.max_bytes == int(2.5e9)
    assert loads == ["A"]  # same model fields: not reloaded
    n = len(seen)
    wait_for(seen, "fake A", n=n + 3)  # still inspecting
    st.apply_config(replace(st.cfg, model="B"))
    wait_for(seen, "fake B")
    assert loads == ["A", "B"]
    st.close()


def test_the_live_view_circles_at_the_running_models_part_pitch(tmp_path):
    from models.part import load_part

    raw = load_part("default").to_dict() | {"name": "twobysix", "rows": 2, "cols": 6}
    raw["camera"]["pitch_px"] = [70.0, 80.0]

    def load_runtime(cfg):
        def load():
            rt = FakeRuntime(default="OK")
            rt.info = {**rt.info, "part": raw if cfg.model == "big" else load_part("default").to_dict()}
            return rt

        return load

    st = Station(StationConfig(source="sim", model="big", archive_enabled=False), load_runtime=load_runtime)
    try:
        assert st.pin_radius() == 0  # nothing loaded: nothing is circled
        st.model.get()
        assert st.pin_radius() == 75  # the bundle's part, not a fixed size
        assert st.switch_model("")[0]
        assert st.pin_radius() == round(sum(load_part("default").camera.pitch_px) / 2)
    finally:
        st.close()


def test_the_operators_thresholds_decide_the_switched_models_verdicts(tmp_path, monkeypatch):
    """Every frame defective and thresholds above the models' 0.96 (+ 0.02 for the other defect
    class: the decision rule also sums them): the model switched to calls
    every frame OK from its first verdict on; lowered back, the same model calls them NG."""
    import edge_app.station as station_mod
    from edge_app.sources import SimSource

    src = SimSource(defect_rate=1.0, fps=100, pool=4)
    monkeypatch.setattr(station_mod, "make_source", lambda text, cfg=None: src)

    def load_runtime(cfg):
        def load():
            rt = FakeRuntime(src)  # answers from the simulator's truth, through the real decision rule
            rt.info = {**rt.info, "name": "fake", "version": cfg.model}
            return rt

        return load

    verdicts, models = [], []

    def on_result(r):
        verdicts.append((r.model, r.verdict.label))
        models.append(r.model)

    cfg = StationConfig(source="sim", model="A", archive_enabled=False, thresholds={"BENDNG": 0.99, "NUKENG": 0.99})
    st = Station(cfg, on_result=on_result, load_runtime=load_runtime)
    try:
        assert st.start()
        wait_for(models, "fake A")
        assert st.switch_model("B")[0]
        wait_for(models, "fake B", n=5)
        assert {label for m, label in list(verdicts) if m == "fake B"} == {"OK"}
        st.set_thresholds({"BENDNG": 0.5, "NUKENG": 0.5})
        n = len(verdicts)
        deadline = time.monotonic() + 10
        while len(verdicts) < n + 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert {label for _, label in verdicts[n + 1 :]} <= {"BENDNG", "NUKENG"} and len(verdicts) > n + 1
    finally:
        st.close()
