"""The operator station window. It shows the core's state and forwards clicks; nothing here
captures, infers or writes files (edge_app.station does, on its own threads)."""

from __future__ import annotations

import html
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from PyQt6.QtCore import Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QCloseEvent, QColor, QFont, QFontMetrics, QKeySequence, QShortcut
from PyQt6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from edge_app.events import ModelState, Result, SourceState, Status
from edge_app.model import RuntimeLike, model_choice, model_title, runtime_factory
from edge_app.settings import DEFECT_CLASSES, SettingsError, StationConfig, save_config
from edge_app.station import Station
from edge_app.ui.bridge import Bridge
from edge_app.ui.video import VideoView
from models import overlay

COLOURS = {"OK": "#2e7d32", "BENDNG": "#c62828", "NUKENG": "#e65100", None: "#555a60"}
WORDS = {"BENDNG": "bent", "NUKENG": "pushed back or missing"}


class StationWindow(QMainWindow):
    modelSwitched = pyqtSignal(bool, str)  # a model switch or rollback has finished: (done, one line)
    verdictShown = pyqtSignal(object)  # the Result now on screen (tests wait on it)

    def __init__(
        self,
        cfg: StationConfig,
        config_path: Path | None = None,
        warnings: Sequence[str] = (),
        load_runtime: Callable[[StationConfig], Callable[[], RuntimeLike]] = runtime_factory,
        file_config: StationConfig | None = None,
    ):
        """`cfg` is what runs (file + command line); `file_config` what the settings file holds,
        so saving a threshold does not also save a one-off --source from the command line."""
        super().__init__()
        self.config_path = config_path
        self.file_config = file_config if file_config is not None else cfg
        self.bridge = Bridge(self)
        self.station = Station(
            cfg,
            on_result=self.bridge.on_result,
            on_status=self.bridge.on_status,
            on_message=self.bridge.on_message,
            on_archive=self.bridge.on_archive,
            load_runtime=load_runtime,
        )
        self._problems: dict[str, str] = {}  # topic -> one line, shown in the banner
        self._status = Status()
        self.last_result: Result | None = None
        self.setWindowTitle("pininspect station")
        self._build()
        self.bridge.resultReady.connect(self._show_result)
        self.bridge.statusChanged.connect(self._show_status)
        self.bridge.message.connect(self._log)
        self.bridge.archiveState.connect(self._show_archive_state)
        self.modelSwitched.connect(self._model_switched)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._refresh_numbers)
        self._timer.start(250)
        self._save_timer = QTimer(self)  # thresholds are saved once the operator stops turning the knob
        self._save_timer.setSingleShot(True)
        self._save_timer.setInterval(1000)
        self._save_timer.timeout.connect(lambda: self._save_settings(("thresholds",)))
        if warnings:
            self._set_problem("config", "Settings file: " + "; ".join(warnings))
            for w in warnings:
                self._log(logging.WARNING, w)
        self._apply_config_to_widgets()
        self._show_status(Status())
        self._open_plc()
        self._show_history()
        self._refresh_numbers()

    # -- layout -------------------------------------------------------------------------------

    def _build(self) -> None:
        root = QWidget()
        outer = QVBoxLayout(root)
        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet("background:#b71c1c; color:white; padding:8px; font-weight:bold; border-radius:4px;")
        self.banner.hide()
        outer.addWidget(self.banner)

        body = QHBoxLayout()
        outer.addLayout(body, 1)

        left = QVBoxLayout()
        self.video = VideoView()
        left.addWidget(self.video, 1)
        controls = QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        for b, colour in ((self.start_button, "#2e7d32"), (self.stop_button, "#8d1c1c")):
            b.setMinimumHeight(44)
            b.setMinimumWidth(120)
            b.setStyleSheet(
                "QPushButton { font-size:16pt; font-weight:bold; color:white; border-radius:6px; "
                f"background:{colour}; }}"
                "QPushButton:disabled { background:#9e9e9e; }"
            )
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.trigger_button = QPushButton("Trigger")
        self.trigger_button.setMinimumHeight(44)
        self.trigger_button.setToolTip("Inspect the next frame (space bar); with --trigger key")
        self.trigger_button.clicked.connect(self.trigger)
        QShortcut(QKeySequence(Qt.Key.Key_Space), self, self.trigger)
        self.heatmap_box = QCheckBox("Show heatmap")
        self.heatmap_box.toggled.connect(lambda _: self._redraw())
        self.source_label = QLabel()
        self.source_label.setWordWrap(True)
        controls.addWidget(self.start_button)
        controls.addWidget(self.stop_button)
        controls.addWidget(self.trigger_button)
        controls.addSpacing(12)
        controls.addWidget(self.heatmap_box)
        controls.addSpacing(12)
        controls.addWidget(self.source_label, 1)
        left.addLayout(controls)
        body.addLayout(left, 3)

        side = QVBoxLayout()
        body.addLayout(side, 1)
        self.verdict_label = QLabel("-")
        self.verdict_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.verdict_label.setMinimumHeight(120)
        f = QFont(self.font())
        f.setPointSize(40)
        f.setBold(True)
        self.verdict_label.setFont(f)
        self.detail_label = QLabel("")
        self.detail_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.detail_label.setWordWrap(True)
        f2 = QFont(self.font())
        f2.setPointSize(16)
        self.detail_label.setFont(f2)
        side.addWidget(self.verdict_label)
        side.addWidget(self.detail_label)

        counts = QGroupBox("Counts")
        grid = QGridLayout(counts)
        self.count_labels: dict[str, QLabel] = {}
        big = QFont(self.font())
        big.setPointSize(15)
        big.setBold(True)
        for i, key in enumerate(("OK", "BENDNG", "NUKENG", "total", "yield")):
            name = QLabel(key.capitalize() if key in ("total", "yield") else key)
            value = QLabel("0")
            value.setFont(big)
            value.setMinimumHeight(QFontMetrics(big).height())  # a squeezed panel must not cut the digits
            value.setAlignment(Qt.AlignmentFlag.AlignRight)
            if key in COLOURS:
                name.setStyleSheet(f"color:{COLOURS[key]}; font-weight:bold;")
            grid.addWidget(name, i, 0)
            grid.addWidget(value, i, 1)
            self.count_labels[key] = value
        reset = QPushButton("Reset counters")
        reset.clicked.connect(self.reset_counters)
        grid.addWidget(reset, 5, 0, 1, 2)
        side.addWidget(counts)

        perf = QGroupBox("Speed")
        pg = QGridLayout(perf)
        self.fps_label = QLabel("-")
        self.latency_label = QLabel("-")
        pg.addWidget(QLabel("Frames / s"), 0, 0)
        pg.addWidget(self.fps_label, 0, 1)
        pg.addWidget(QLabel("Capture to verdict"), 1, 0)
        pg.addWidget(self.latency_label, 1, 1)
        side.addWidget(perf)

        self.plc_box = QGroupBox("PLC link")
        plg = QGridLayout(self.plc_box)
        self.plc_labels: dict[str, QLabel] = {}
        for i, (key, title) in enumerate(
            (("endpoint", "Server"), ("clients", "Client"), ("last_trigger", "Last trigger"), ("cycle", "Cycle time"),
             ("ignored", "Ignored triggers"), ("fault", "Fault"))
        ):  # fmt: skip
            value = QLabel("-")
            value.setWordWrap(True)
            plg.addWidget(QLabel(title), i, 0)
            plg.addWidget(value, i, 1)
            self.plc_labels[key] = value
        self.plc_box.hide()
        side.addWidget(self.plc_box)

        model = QGroupBox("Model")
        mg = QVBoxLayout(model)
        self.model_label = QLabel("-")
        self.model_label.setWordWrap(True)
        mg.addWidget(self.model_label)
        mb = QHBoxLayout()
        self.switch_button = QPushButton("Switch model...")
        self.switch_button.setToolTip("run another model bundle from the next frame; this one is kept for a rollback")
        self.switch_button.clicked.connect(self.pick_model)
        self.rollback_button = QPushButton("Roll back")
        self.rollback_button.clicked.connect(lambda: self.switch_model(None))
        mb.addWidget(self.switch_button)
        mb.addWidget(self.rollback_button)
        mg.addLayout(mb)
        th = QGridLayout()
        self.threshold_boxes: dict[str, QDoubleSpinBox] = {}
        for i, cls in enumerate(DEFECT_CLASSES):
            box = QDoubleSpinBox()
            box.setRange(0.01, 0.99)
            box.setSingleStep(0.05)
            box.setDecimals(2)
            box.setToolTip(f"{cls} is flagged when its score reaches this value; lower flags more")
            box.valueChanged.connect(lambda v, c=cls: self._threshold_changed(c, v))
            th.addWidget(QLabel(f"{cls} threshold"), i, 0)
            th.addWidget(box, i, 1)
            self.threshold_boxes[cls] = box
        mg.addLayout(th)
        side.addWidget(model)

        archive = QGroupBox("NG archive")
        ag = QVBoxLayout(archive)
        self.archive_label = QLabel("-")
        self.archive_label.setWordWrap(True)
        ag.addWidget(self.archive_label)
        row = QHBoxLayout()
        self.review_button = QPushButton("Review / relabel...")
        self.review_button.clicked.connect(self.open_review)
        self.settings_button = QPushButton("Settings...")
        self.settings_button.clicked.connect(self.open_settings)
        row.addWidget(self.review_button)
        row.addWidget(self.settings_button)
        ag.addLayout(row)
        side.addWidget(archive)
        side.addStretch(1)

        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(300)  # bounded, like everything else
        self.log_view.setFixedHeight(90)
        self.log_view.setFrameShape(QFrame.Shape.StyledPanel)
        self.log_view.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        outer.addWidget(self.log_view)
        self.setCentralWidget(root)
        self.resize(1280, 760)

    # -- actions ------------------------------------------------------------------------------

    def start(self) -> None:
        self.last_result = None
        self._set_problem("source", "")
        if self._status.model is ModelState.FAILED:
            self._set_problem("model", "")
        if self.station.start():
            self.start_button.setEnabled(False)
            self.stop_button.setEnabled(True)
            self.source_label.setText(f"Source: {self.station.source_name}")
        else:
            self._set_problem("source", "Cannot start: see the log below")

    def stop(self) -> None:
        self.station.stop()
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)

    def reset_counters(self) -> None:
        self.station.reset_counters()
        self._refresh_numbers()

    def trigger(self) -> None:
        """The Trigger button / space bar: inspect the next frame (trigger mode key)."""
        if self.station.cfg.trigger != "key":
            return
        if self.station.trigger("key") is None:
            self._log(logging.WARNING, "trigger ignored: the last one is still being inspected, or not inspecting")

    def _open_plc(self) -> None:
        from edge_app.plc.serving import PlcServerError

        try:
            self.station.open_plc()
            self._set_problem("plc", "")
        except PlcServerError as e:
            self._set_problem("plc", f"PLC server not running: {e}")
            self._log(logging.ERROR, str(e))

    def open_settings(self) -> None:
        from edge_app.ui.dialogs import SettingsDialog

        dlg = SettingsDialog(self.station.cfg, self)
        if dlg.exec():
            self.apply_settings(dlg.result_config)

    def apply_settings(self, cfg: StationConfig) -> None:
        """Use (and save) new settings; a running station restarts on them."""
        self.station.apply_config(cfg)
        self._set_problem("config", "")
        self._save_settings(None)
        self._apply_config_to_widgets()
        if self.station.running:
            self.source_label.setText(f"Source: {self.station.source_name}")

    def pick_model(self) -> None:
        from PyQt6.QtWidgets import QFileDialog

        folder = QFileDialog.getExistingDirectory(self, "Model bundle folder", str(self.station.cfg.model_dir()))
        if folder:
            self.switch_model(folder)

    def switch_model(self, folder: str | None) -> None:
        """Load the bundle in `folder` (None: roll back to the previous one) off the GUI thread;
        the line keeps inspecting with the running model until the new one is ready."""
        self.switch_button.setEnabled(False)
        self.rollback_button.setEnabled(False)

        def work() -> None:
            try:
                done, msg = self.station.rollback_model() if folder is None else self.station.switch_model(folder)
            except Exception as e:  # reported in the window, never lost with the thread
                done, msg = False, f"model switch: {e}"
            self.modelSwitched.emit(done, msg)

        threading.Thread(target=work, name="pininspect-model-switch", daemon=True).start()

    def _model_switched(self, done: bool, msg: str) -> None:
        self.switch_button.setEnabled(True)
        self._show_history()
        self._set_problem("switch", "" if done else msg)
        if done:
            self._save_settings(("model", "model_history"))
            self._show_status(self._status)

    def _show_history(self) -> None:
        history = self.station.cfg.model_history
        self.rollback_button.setEnabled(bool(history))
        back = (history[0] or "the shipped model") if history else "nothing to roll back to"
        self.rollback_button.setToolTip(f"back to {back}")

    def open_review(self) -> None:
        from edge_app.ui.dialogs import ReviewDialog

        if self.station.archive is None:
            self._log(logging.WARNING, "the NG archive is switched off (Settings)")
            return
        ReviewDialog(self.station.archive, self, part=self.station.cfg.part).exec()

    def _threshold_changed(self, cls: str, value: float) -> None:
        if getattr(self, "_loading_widgets", False):
            return
        self.station.set_thresholds({cls: round(value, 4)})
        self._save_timer.start()

    def _save_settings(self, fields: Sequence[str] | None) -> None:
        """Write `fields` of the running config (None: all of it) over the settings file's."""
        if self.config_path is None:
            return
        cfg = self.station.cfg
        if fields is not None:
            cfg = replace(self.file_config, **{f: getattr(cfg, f) for f in fields})
        try:
            kept = save_config(cfg, self.config_path)
            self.file_config = cfg
            self._set_problem("save", "")
            if kept is not None:
                self._log(logging.WARNING, f"{self.config_path} did not load cleanly; the old file is kept as {kept}")
        except SettingsError as e:
            self._set_problem("save", str(e))
            self._log(logging.ERROR, str(e))

    # -- showing state ------------------------------------------------------------------------

    def _apply_config_to_widgets(self) -> None:
        cfg = self.station.cfg
        self._show_thresholds()
        self.source_label.setText(f"Source: {cfg.source}")
        if self.station.archive is None:
            self.archive_label.setText("off (Settings to switch on)")
        else:
            self._show_archive_state(self.station.archive.message)

    def _show_thresholds(self) -> None:
        rt = self.station.model.runtime
        shown = {**(dict(getattr(rt, "thresholds", {}) or {}) if rt else {}), **self.station.cfg.thresholds}
        self._loading_widgets = True
        try:
            for cls, box in self.threshold_boxes.items():
                box.setValue(float(shown.get(cls, 0.5)))
                box.setEnabled(rt is not None or cls in self.station.cfg.thresholds)
        finally:
            self._loading_widgets = False

    def _set_problem(self, topic: str, text: str) -> None:
        if text:
            self._problems[topic] = text
        else:
            self._problems.pop(topic, None)
        self.banner.setText("\n".join(self._problems.values()))
        self.banner.setVisible(bool(self._problems))

    def _log(self, level: int, text: str) -> None:
        tag = {logging.WARNING: "WARNING ", logging.ERROR: "ERROR "}.get(level, "")
        self.log_view.appendPlainText(f"{time.strftime('%H:%M:%S')}  {tag}{text}")

    def _show_archive_state(self, message: str) -> None:
        a = self.station.archive
        if a is None:
            return
        if message:
            self.archive_label.setText(f"<b style='color:#b71c1c'>NOT SAVING</b>: {message}")
            self._set_problem("archive", f"NG archive: {message}")
        else:
            self.archive_label.setText(f"{a.root}<br>{a.saved} saved this session")
            self._set_problem("archive", "")

    def _set_verdict(self, text: str, colour_key: str | None, detail: str) -> None:
        self.verdict_label.setText(text)
        self.verdict_label.setStyleSheet(f"background:{COLOURS[colour_key]}; color:white; border-radius:8px;")
        self.detail_label.setText(detail)

    def _show_status(self, st: Status) -> None:
        self._status = st
        model_text = {
            ModelState.NOT_LOADED: "not loaded yet (loads on Start)",
            ModelState.LOADING: "loading...",
            ModelState.READY: _title_and_choice(self.station.model.runtime),
            ModelState.FAILED: "<b style='color:#b71c1c'>cannot load</b>",
        }[st.model]
        self.model_label.setText(model_text)
        self.model_label.setToolTip(model_choice(self.station.model.runtime) if st.model is ModelState.READY else "")
        if st.model is ModelState.FAILED:
            self._set_problem("model", f"Model not loaded: {st.model_msg}")
        elif st.model is ModelState.READY:
            self._set_problem("model", "")
            self._show_thresholds()
        self._set_problem("frames", f"Frames rejected by the model: {st.frame_msg}" if st.frame_msg else "")
        name = self.station.source_name or self.station.cfg.source
        self.source_label.setText(f"Source: {name} - <b>{st.source.value}</b>")
        s = st.source
        if s is SourceState.RUNNING:
            self._set_problem("source", "")
        elif s is SourceState.DISCONNECTED:
            self.video.show_notice(f"NO SIGNAL\n{st.source_msg}", QColor(255, 120, 100))
            self._set_verdict("NO SIGNAL", None, "camera disconnected, retrying")
            self._set_problem("source", f"Source disconnected: {st.source_msg}")
        elif s is SourceState.FAILED:
            self.video.show_notice(f"SOURCE FAILED\n{st.source_msg}", QColor(255, 120, 100))
            self._set_verdict("NO SOURCE", None, "see the message above")
            self._set_problem("source", f"Source failed: {st.source_msg}")
        elif s is SourceState.ENDED:
            self.video.show_notice(f"END OF INPUT\n{st.source_msg}")
            self._set_verdict("ENDED", None, "press Start to run it again")
        elif s is SourceState.CONNECTING:
            self.video.show_notice(st.source_msg or "connecting...")
        elif st.model is ModelState.FAILED and not st.running:
            self.video.show_notice(
                "NO MODEL\nsee the message above; choose a model in Settings, then Start", QColor(255, 120, 100)
            )
            self._set_verdict("NO MODEL", None, "not inspecting")
        elif s is SourceState.STOPPED and not st.running:
            self.video.show_notice("STOPPED - press Start")
            self._set_verdict("STOPPED", None, "not inspecting")
        elif s is SourceState.IDLE and not st.running:
            self.video.show_notice("Press Start to inspect" if st.model is not ModelState.FAILED else "No model")
            self._set_verdict("-", None, "waiting")
        self.start_button.setEnabled(not st.running)
        self.stop_button.setEnabled(st.running)
        inspecting = st.running and s is SourceState.RUNNING and st.model is ModelState.READY
        self.trigger_button.setEnabled(inspecting and self.station.cfg.trigger == "key")

    def _show_result(self) -> None:
        r = self.bridge.take_result()
        if r is None or not self.station.running:
            return
        self.last_result = r
        self._redraw()
        v = r.verdict
        if v.label == "OK":
            self._set_verdict("OK", "OK", "all pins good")
        else:
            self._set_verdict(v.label, v.label, f"pin {int(v.pin)}: {WORDS.get(v.label, v.label)}")
        self.verdictShown.emit(r)

    def _redraw(self) -> None:
        r = self.last_result
        if r is None:
            return
        spec, radius = self.station.input_spec(), self.station.pin_radius()
        img = overlay.draw(r.frame.image, r.verdict, spec, radius, self.heatmap_box.isChecked())
        self.video.show_frame(img)

    def _refresh_plc(self) -> None:
        plc = self.station.plc
        self.trigger_button.setVisible(self.station.triggered)
        self.plc_box.setVisible(plc is not None)
        if plc is None:
            return
        link = plc.link()
        c = link["cycle_ms"]
        self.plc_labels["endpoint"].setText(link["endpoint"])
        self.plc_labels["clients"].setText(", ".join(link["clients"]) or "none connected")
        self.plc_labels["last_trigger"].setText(f"{link['last_trigger'] or '-'} (Sequence {link['sequence']})")
        self.plc_labels["cycle"].setText(f"{c['last']} ms (p99 {c['p99']})" if c["last"] is not None else "-")
        self.plc_labels["ignored"].setText(str(link["ignored"]))
        fault = link["fault"]
        self.plc_labels["fault"].setText(f"<b style='color:#b71c1c'>{html.escape(fault)}</b>" if fault else "none")

    def _refresh_numbers(self) -> None:
        self._refresh_plc()
        live = self.station.stats.live()
        counts = live["counts"]
        for k in ("OK", "BENDNG", "NUKENG"):
            self.count_labels[k].setText(str(counts.get(k, 0)))
        self.count_labels["total"].setText(str(live["n"]))
        self.count_labels["yield"].setText(f"{100 * live['yield']:.1f} %" if live["n"] else "-")
        a = self.station.archive
        if a is not None and not a.message:
            self.archive_label.setText(f"{a.root}<br>{a.saved} saved this session")
        running = self.station.running
        self.fps_label.setText(f"{live['fps']:.1f}" if running and live["fps"] else "-")
        if live["n"]:
            self.latency_label.setText(f"{live['latency_p50']:.1f} ms (p95 {live['latency_p95']:.1f})")
        else:
            self.latency_label.setText("-")

    def closeEvent(self, event: QCloseEvent | None) -> None:
        self._timer.stop()
        if self._save_timer.isActive():
            self._save_timer.stop()
            self._save_settings(("thresholds",))
        self.station.close()
        super().closeEvent(event)

    # for tests and screenshots
    def status(self) -> Status:
        return self._status

    def problems(self) -> dict[str, Any]:
        return dict(self._problems)


def _title_and_choice(runtime: RuntimeLike | None) -> str:
    """The model line: name, version, backend, and below it why this backend runs on this PC, in
    short (what won, and which models were dropped or skipped); the timings are the tooltip's."""
    title = html.escape(model_title(runtime))
    short = choice_in_short(model_choice(runtime))
    return title + (f"<br><small>{html.escape(short)}</small>" if short else "")


def choice_in_short(why: str) -> str:
    """'KEY: fastest agreeing of N on this CPU (ISA) - timings; KEY dropped: why; ...' ->
    'KEY: fastest agreeing of N on this CPU (ISA); KEY dropped' (fits two lines of the Model box)."""
    head, _, rest = why.partition(" - ")
    notes = [n.split(":")[0] for n in rest.split("; ")[1:]]
    return "; ".join([head, *notes])
