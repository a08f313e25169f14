import time

import numpy as np
import pytest
from station_fakes import FakeRuntime, FakeVerdict

from edge_app.events import ModelState, Result, SourceState
from edge_app.settings import StationConfig, load_config
from edge_app.sources import Frame
from models.bundle import BundleError

pytestmark = pytest.mark.gui


def fake_loader(holder, **kw):
    """load_runtime for the window: a FakeRuntime that knows the running pipeline's simulator."""

    def load_runtime(cfg):
        def load():
            holder["rt"] = FakeRuntime(holder["win"].station.pipeline.source, **kw)
            return holder["rt"]

        return load

    return load_runtime


@pytest.fixture
def window(qtbot, tmp_path):
    from edge_app.ui.window import StationWindow

    made = []

    def make(cfg=None, load_runtime=None, **kw):
        holder = {}
        cfg = cfg or StationConfig(
            source="sim", sim_fps=40, sim_pool=20, sim_defect_rate=0.5, archive_dir=str(tmp_path / "archive")
        )
        win = StationWindow(
            cfg,
            tmp_path / "station.json",
            load_runtime=load_runtime or fake_loader(holder, **kw),
            file_config=StationConfig(),
        )
        holder["win"] = win
        qtbot.addWidget(win)
        win.show()
        made.append(win)
        return win, holder

    yield make
    for w in made:
        w.station.close()


def test_window_shows_verdicts_and_counts(window, qtbot):
    win, holder = window()
    assert win.verdict_label.text() == "-" and win.start_button.isEnabled()
    win.start()
    with qtbot.waitSignal(win.verdictShown, timeout=10000) as blocker:
        pass
    r = blocker.args[0]
    assert win.verdict_label.text() == r.verdict.label

    # wait for a flagged frame: the pin is named on screen
    def flagged():
        return win.last_result is not None and win.last_result.verdict.label != "OK"

    qtbot.waitUntil(flagged, timeout=10000)
    v = win.last_result.verdict
    assert win.verdict_label.text() == v.label and f"pin {v.pin}" in win.detail_label.text()
    qtbot.waitUntil(lambda: int(win.count_labels["total"].text()) >= 5, timeout=10000)
    counts = {k: int(win.count_labels[k].text()) for k in ("OK", "BENDNG", "NUKENG")}
    assert sum(counts.values()) >= 5 and counts["OK"] > 0
    assert "fake-pinvit" in win.model_label.text() and "0.0-test" in win.model_label.text()
    assert "simulator" in win.source_label.text()
    assert win.status().source is SourceState.RUNNING and not win.start_button.isEnabled()
    qtbot.waitUntil(lambda: win.station.archive.saved > 0, timeout=10000)
    win.stop()
    assert win.start_button.isEnabled()
    qtbot.waitUntil(lambda: win.verdict_label.text() == "STOPPED", timeout=5000)


def test_thresholds_from_the_spin_boxes_reach_the_model_and_are_saved(window, qtbot, tmp_path):
    win, holder = window()
    win.start()
    qtbot.waitUntil(lambda: win.status().model is ModelState.READY, timeout=10000)
    win.threshold_boxes["BENDNG"].setValue(0.35)
    qtbot.waitUntil(lambda: holder["rt"].thresholds["BENDNG"] == 0.35, timeout=5000)
    qtbot.waitUntil(lambda: (tmp_path / "station.json").exists(), timeout=5000)
    saved = load_config(tmp_path / "station.json")[0]
    assert saved.thresholds == {"BENDNG": 0.35}
    assert saved.source == "auto"  # the run's source came from the command line: not saved with a threshold


def test_model_that_fails_to_load_is_shown_and_the_app_keeps_running(window, qtbot):
    def broken(cfg):
        def load():
            raise BundleError("models/default/bundle.json", "missing (export a model first)")

        return load

    win, _ = window(load_runtime=broken)
    win.start()
    qtbot.waitUntil(lambda: win.status().model is ModelState.FAILED and not win.status().running, timeout=10000)
    assert "models/default/bundle.json: missing" in win.banner.text() and win.banner.isVisible()
    assert win.start_button.isEnabled() and win.isVisible()
    assert win.verdict_label.text() == "NO MODEL" and "NO MODEL" in win.video.notice


def test_missing_video_is_shown_not_a_black_frame(window, qtbot, tmp_path):
    cfg = StationConfig(source=f"video:{tmp_path / 'gone.avi'}", archive_enabled=False)
    win, _ = window(cfg=cfg)
    win.start()
    qtbot.waitUntil(lambda: win.status().source is SourceState.FAILED, timeout=10000)
    assert "no such video file" in win.banner.text()
    assert "SOURCE FAILED" in win.video.notice and win.verdict_label.text() == "NO SOURCE"


def test_settings_dialog_validates_then_applies(window, qtbot, tmp_path):
    from edge_app.ui.dialogs import SettingsDialog

    win, _ = window()
    dlg = SettingsDialog(win.station.cfg, win)
    qtbot.addWidget(dlg)
    dlg.source.setCurrentText("webcam")
    dlg._accept()
    assert "unknown source" in dlg.problems.text() and dlg.result() == 0
    dlg.source.setCurrentText("sim")
    dlg.sim_defect_rate.setValue(0.4)
    dlg._accept()
    assert dlg.result() == 1 and dlg.result_config.sim_defect_rate == pytest.approx(0.4)
    win.apply_settings(dlg.result_config)
    assert load_config(tmp_path / "station.json")[0].sim_defect_rate == pytest.approx(0.4)


def test_review_dialog_relabels_into_labels_csv(window, qtbot):
    from edge_app.ui.dialogs import ReviewDialog

    win, _ = window()
    a = win.station.archive
    img = np.full((480, 640, 3), 50, np.uint8)
    for i in range(2):
        v = FakeVerdict("BENDNG", 3, {"BENDNG": 0.9, "NUKENG": 0.05, "OK": 0.05})
        a.save(Result(Frame(img, i, time.perf_counter()), v, 1.0, time.perf_counter()))
    dlg = ReviewDialog(a, win)
    qtbot.addWidget(dlg)
    assert dlg.table.rowCount() == 2
    dlg.select(1)
    assert dlg.save.isEnabled() and dlg.label.currentText() == "BENDNG" and dlg.pin.value() == 3
    dlg.label.setCurrentText("NUKENG")
    dlg.pin.setValue(9)
    dlg._save()
    assert "Saved" in dlg.note.text()
    assert a.labels() == {dlg.rows[1].file: ("NUKENG", 9)}
    assert dlg.table.item(1, 4).text() == "NUKENG 9"
    assert dlg.save.isEnabled() and dlg.label.currentText() == "NUKENG"  # still editable after saving
    dlg.select(0)
    dlg.label.setCurrentText("OK")
    assert dlg.pin.value() == 0
    dlg._save()
    assert a.labels()[dlg.rows[0].file] == ("OK", 0)


def test_thresholds_set_in_the_window_before_start_decide_the_first_frames(window, qtbot, tmp_path):
    """The operator turns both thresholds above every score the model gives, before the model
    has loaded; every frame must then be OK, from the first one (the fake scores NG at 0.96)."""
    cfg = StationConfig(source="sim", sim_fps=40, sim_pool=20, sim_defect_rate=1.0, archive_enabled=False)
    win, holder = window(cfg)
    for box in win.threshold_boxes.values():
        box.setValue(0.99)
    seen = []
    win.verdictShown.connect(lambda r: seen.append(r.verdict.label))
    win.start()
    qtbot.waitUntil(lambda: len(seen) >= 5, timeout=15000)
    win.stop()
    assert set(seen) == {"OK"}, seen
    assert holder["rt"].thresholds == {"BENDNG": 0.99, "NUKENG": 0.99}
    # the fake knew every frame (all defective), so OK came from the thresholds, not from its default
    rt = holder["rt"]
    assert rt.seen and set(rt.seen) <= {id(img) for img, _ in rt.source.pool}


def test_the_counts_are_never_cut_off_in_a_1280x800_window(window, qtbot):
    from PyQt6.QtGui import QFontMetrics

    win, _ = window()
    win.resize(1280, 800)
    qtbot.waitExposed(win)
    for key, label in win.count_labels.items():
        assert label.height() >= QFontMetrics(label.font()).height(), key


def test_the_model_box_says_what_runs_and_why_in_two_lines_the_timings_on_hover(window, qtbot):
    why = (
        "openvino/fp32: fastest agreeing of 4 on this CPU (avx2+avx512+vnni+avx_vnni+bf16+amx) - openvino/fp32 "
        "5.6 ms, onnxruntime/fp32 7.4 ms, openvino/int8 8.2 ms, onnxruntime/int8 9.8 ms; onnxruntime/int8 "
        "dropped: 3 of 24 verdicts differ (against onnxruntime/fp32)"
    )
    holder = {}

    def load_runtime(cfg):
        def load():
            holder["rt"] = FakeRuntime(holder["win"].station.pipeline.source)
            holder["rt"].choice_reason = why
            return holder["rt"]

        return load

    win, _ = window(load_runtime=load_runtime)
    holder["win"] = win
    win.resize(1280, 800)
    win.start()
    qtbot.waitUntil(lambda: win.status().model is ModelState.READY, timeout=10000)
    text = win.model_label.text()
    assert "fastest agreeing of 4 on this CPU" in text and "onnxruntime/int8 dropped" in text
    assert "9.8 ms" not in text and win.model_label.toolTip() == why
    qtbot.waitExposed(win)
    label = win.model_label

    def fits():  # nothing cut off at the bottom, once the layout has taken the new text
        return label.heightForWidth(label.width()) <= label.height()

    qtbot.waitUntil(fits, timeout=3000)
