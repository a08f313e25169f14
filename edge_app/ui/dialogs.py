"""Settings and NG review dialogs. Validation and writing live in edge_app.settings / archive."""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any

import cv2
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from edge_app.archive import CLASSES, Archive, ArchiveError, FlaggedRow
from edge_app.settings import BACKENDS, FIELD_HELP, PRECISIONS, StationConfig, apply
from edge_app.ui.video import VideoView
from models import overlay

log = logging.getLogger(__name__)


def _with_browse(edit: QLineEdit, pick: Any) -> QWidget:
    w = QWidget()
    lay = QHBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(edit, 1)
    b = QPushButton("Browse...")
    b.clicked.connect(pick)
    lay.addWidget(b)
    return w


class SettingsDialog(QDialog):
    """Edits a StationConfig. OK validates with edge_app.settings and stays open, listing the
    problems, until every value is usable; `result_config` then holds the new config."""

    def __init__(self, cfg: StationConfig, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Station settings")
        self.cfg = cfg
        self.result_config: StationConfig = cfg
        form = QFormLayout()

        self.source = QComboBox()
        self.source.setEditable(True)
        self.source.addItems(["auto", "sim", "camera:0", "camera:1"])
        self.source.setCurrentText(cfg.source)
        src_row = QWidget()
        sl = QHBoxLayout(src_row)
        sl.setContentsMargins(0, 0, 0, 0)
        sl.addWidget(self.source, 1)
        for text, pick in (("Video...", self._pick_video), ("Folder...", self._pick_folder)):
            b = QPushButton(text)
            b.clicked.connect(pick)
            sl.addWidget(b)
        form.addRow("Source", src_row)

        self.model = QLineEdit(cfg.model)
        self.model.setPlaceholderText("the shipped default model")
        form.addRow("Model folder", _with_browse(self.model, lambda: self._pick_dir(self.model)))
        self.backend = QComboBox()
        self.backend.addItems(BACKENDS)
        self.backend.setCurrentText(cfg.backend)
        form.addRow("Backend", self.backend)
        self.precision = QComboBox()
        self.precision.addItems(PRECISIONS)
        self.precision.setCurrentText(cfg.precision)
        form.addRow("Precision", self.precision)

        self.archive_enabled = QCheckBox("Save NG frames")
        self.archive_enabled.setChecked(cfg.archive_enabled)
        form.addRow("Archive", self.archive_enabled)
        self.archive_dir = QLineEdit(cfg.archive_dir)
        self.archive_dir.setPlaceholderText(str(cfg.archive_path()) if not cfg.archive_dir else "")
        form.addRow("Archive folder", _with_browse(self.archive_dir, lambda: self._pick_dir(self.archive_dir)))

        self.loop = QCheckBox("Replay a video / folder when it ends")
        self.loop.setChecked(cfg.loop)
        form.addRow("Loop", self.loop)
        self.fps = self._dspin(cfg.fps, 0, 1000, 1, "fps")
        form.addRow("File frame-rate cap", self.fps)
        self.sim_defect_rate = self._dspin(cfg.sim_defect_rate, 0, 1, 0.05, "")
        form.addRow("Simulator defect rate", self.sim_defect_rate)
        self.sim_fps = self._dspin(cfg.sim_fps, 0, 1000, 1, "fps")
        form.addRow("Simulator frame rate", self.sim_fps)
        self.sim_pool = QSpinBox()
        self.sim_pool.setRange(0, 10000)
        self.sim_pool.setValue(cfg.sim_pool)
        form.addRow("Simulator pool", self.sim_pool)
        self.sim_seed = QSpinBox()
        self.sim_seed.setRange(0, 2**31 - 1)
        self.sim_seed.setValue(cfg.sim_seed)
        form.addRow("Simulator seed", self.sim_seed)
        for row in range(form.rowCount()):
            item = form.itemAt(row, QFormLayout.ItemRole.LabelRole)
            label = item.widget() if item is not None else None
            key = {
                "Source": "source",
                "Model folder": "model",
                "Backend": "backend",
                "Precision": "precision",
                "Archive folder": "archive_dir",
                "Simulator pool": "sim_pool",
                "Simulator defect rate": "sim_defect_rate",
                "Simulator frame rate": "sim_fps",
                "File frame-rate cap": "fps",
            }.get(label.text() if isinstance(label, QLabel) else "", "")
            if key and isinstance(label, QLabel):
                label.setToolTip(FIELD_HELP[key])

        self.problems = QLabel("")
        self.problems.setWordWrap(True)
        self.problems.setStyleSheet("color:#b71c1c; font-weight:bold;")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.problems)
        lay.addWidget(buttons)

    @staticmethod
    def _dspin(value: float, lo: float, hi: float, step: float, suffix: str) -> QDoubleSpinBox:
        b = QDoubleSpinBox()
        b.setRange(lo, hi)
        b.setSingleStep(step)
        b.setDecimals(2)
        if suffix:
            b.setSuffix(f" {suffix}")
        b.setValue(value)
        return b

    def _pick_video(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Video file", "", "Videos (*.avi *.mp4 *.mkv *.mov);;All (*)")
        if path:
            self.source.setCurrentText(f"video:{path}")

    def _pick_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Image folder")
        if path:
            self.source.setCurrentText(f"folder:{path}")

    def _pick_dir(self, edit: QLineEdit) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder", edit.text())
        if path:
            edit.setText(path)

    def values(self) -> dict[str, Any]:
        return {
            "source": self.source.currentText().strip(),
            "model": self.model.text().strip(),
            "backend": self.backend.currentText(),
            "precision": self.precision.currentText(),
            "archive_enabled": self.archive_enabled.isChecked(),
            "archive_dir": self.archive_dir.text().strip(),
            "loop": self.loop.isChecked(),
            "fps": self.fps.value(),
            "sim_defect_rate": self.sim_defect_rate.value(),
            "sim_fps": self.sim_fps.value(),
            "sim_pool": self.sim_pool.value(),
            "sim_seed": self.sim_seed.value(),
        }

    def _accept(self) -> None:
        cfg, problems = apply(self.cfg, self.values())
        if problems:
            self.problems.setText("\n".join(p.split("; keeping")[0] for p in problems))
            return
        self.result_config = replace(cfg)
        self.accept()


class ReviewDialog(QDialog):
    """The archived NG frames, newest first. A line engineer picks one, looks at it, and records
    what it really is (BENDNG / NUKENG / OK and the pin) into the archive's labels.csv."""

    def __init__(self, archive: Archive, parent: QWidget | None = None):
        super().__init__(parent)
        self.archive = archive
        self.setWindowTitle(f"Review NG frames - {archive.root}")
        self.rows: list[FlaggedRow] = []
        self.table = QTableWidget(0, 5)
        self.table.setHorizontalHeaderLabels(["time", "model says", "pin", "score", "reviewed"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.itemSelectionChanged.connect(self._selected)
        self.preview = VideoView()
        self.preview.show_notice("Select a frame", keep_frame=False)
        self.label = QComboBox()
        self.label.addItems(CLASSES)
        self.label.currentTextChanged.connect(self._label_changed)
        self.pin = QSpinBox()
        self.pin.setRange(0, archive.n_pins)
        self.save = QPushButton("Save label")
        self.save.clicked.connect(self._save)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        edit = QHBoxLayout()
        edit.addWidget(QLabel("Really:"))
        edit.addWidget(self.label)
        edit.addWidget(QLabel("pin"))
        edit.addWidget(self.pin)
        edit.addWidget(self.save)
        edit.addStretch(1)
        right = QVBoxLayout()
        right.addWidget(self.preview, 1)
        right.addLayout(edit)
        right.addWidget(self.note)
        lay = QHBoxLayout(self)
        lay.addWidget(self.table, 2)
        lay.addLayout(right, 3)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        right.addWidget(close)
        self.resize(1100, 560)
        self.reload()

    def reload(self) -> None:
        try:
            self.rows = self.archive.flagged()
        except Exception as e:  # shown, never raised out of the dialog
            log.exception("reading the archive")
            self.rows = []
            self.note.setText(f"Cannot read the archive: {e}")
        self.table.setRowCount(len(self.rows))
        for i, r in enumerate(self.rows):
            score = r.scores.get(r.label, math.nan)
            reviewed = f"{r.reviewed[0]} {r.reviewed[1] or ''}".strip() if r.reviewed else ""
            cells = [r.time.replace("T", " ")[:19], r.label, str(r.pin), f"{score:.2f}", reviewed]
            for j, text in enumerate(cells):
                self.table.setItem(i, j, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        self._set_enabled(False)
        try:
            self.archive.labels()
        except ArchiveError as e:  # the frames still show; saving is refused until the file is fixed
            self.note.setText(f"Reviewed labels unreadable: {e}")
        if not self.rows:
            self.note.setText(self.note.text() or "No NG frames archived yet.")

    def _set_enabled(self, on: bool) -> None:
        for w in (self.label, self.pin, self.save):
            w.setEnabled(on)

    def current(self) -> FlaggedRow | None:
        idx = self.table.currentRow()
        return self.rows[idx] if 0 <= idx < len(self.rows) else None

    def select(self, row: int) -> None:
        self.table.selectRow(row)

    def _selected(self) -> None:
        r = self.current()
        if r is None:
            self._set_enabled(False)
            return
        img = cv2.imread(str(self.archive.images / r.file), cv2.IMREAD_COLOR)
        if img is None:
            self.preview.show_notice(f"{r.file}: missing or unreadable", keep_frame=False)
        else:
            if r.where is not None:  # where the model saw the defect
                overlay.circle(img, r.where, r.label, r.pin)
            self.preview.show_frame(img)
        label, pin = r.reviewed or (r.label, r.pin)
        self.label.setCurrentText(label)
        self.pin.setValue(pin)
        self._set_enabled(True)
        self._label_changed(label)
        self.note.setText(r.file)

    def _label_changed(self, label: str) -> None:
        ok = label == "OK"
        self.pin.setMinimum(0 if ok else 1)
        if ok:
            self.pin.setValue(0)
        self.pin.setEnabled(not ok and self.save.isEnabled())

    def _save(self) -> None:
        r = self.current()
        if r is None:
            return
        row = self.table.currentRow()
        try:
            self.archive.relabel(r.file, self.label.currentText(), self.pin.value())
        except Exception as e:  # an exception leaving a Qt slot aborts the whole station
            if not isinstance(e, ArchiveError):
                log.exception("relabel %s", r.file)
            self.note.setText(f"<b style='color:#b71c1c'>Not saved</b>: {e}")
            return
        self.reload()
        self.select(row)
        self._selected()
        self.note.setText(f"Saved: {r.file} is {self.label.currentText()} pin {self.pin.value()} (labels.csv)")
        self.note.setAlignment(Qt.AlignmentFlag.AlignLeft)
