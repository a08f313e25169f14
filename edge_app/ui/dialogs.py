"""Settings and NG review dialogs. Validation and writing live in edge_app.settings / archive."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import replace
from typing import Any

import cv2
from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtGui import QKeyEvent, QMouseEvent
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

from edge_app.archive import CLASSES, Archive, ArchiveError, FlaggedRow, pin_at
from edge_app.settings import SETTINGS, Setting, StationConfig, apply, conflicts
from edge_app.ui.video import VideoView
from models import overlay
from models.part import PartSpecError, load_part

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
        self.fields: dict[str, QWidget] = {}  # field name -> its editor, one per Setting with a label
        for name, setting in SETTINGS.items():
            if setting.label:
                editor, row = self._editor(name, setting, getattr(cfg, name))
                editor.setToolTip(setting.help)
                self.fields[name] = editor
                setattr(self, name, editor)
                form.addRow(setting.label, row)
                label = form.labelForField(row)
                if label is not None:
                    label.setToolTip(setting.help)

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

    def _editor(self, name: str, s: Setting, value: Any) -> tuple[QWidget, QWidget]:
        """The editor of one setting, made from its Setting, and the row widget holding it."""
        if s.kind == "bool":
            box = QCheckBox(s.help[:1].upper() + s.help[1:])
            box.setChecked(bool(value))
            return box, box
        if s.kind == "number":
            spin: QSpinBox | QDoubleSpinBox = QSpinBox() if s.integer else QDoubleSpinBox()
            if isinstance(spin, QDoubleSpinBox):
                spin.setDecimals(2)
                spin.setRange(s.lo, s.hi)
                spin.setSingleStep(s.step)
                spin.setValue(float(value))
            else:
                spin.setRange(int(s.lo), int(min(s.hi, 2**31 - 1)))
                spin.setValue(int(value))
            if s.unit:
                spin.setSuffix(f" {s.unit}")
            if s.zero and s.lo == 0:
                spin.setSpecialValueText(s.zero)  # shown at the minimum, 0
            return spin, spin
        if s.kind == "choice":
            combo = QComboBox()
            for c in s.choices:
                combo.addItem(c or "none", c)
            combo.setCurrentIndex(max(0, combo.findData(value)))
            return combo, combo
        if s.kind == "source":
            combo = QComboBox()
            combo.setEditable(True)
            combo.addItems(["auto", "sim", "camera:0", "camera:1"])
            combo.setCurrentText(str(value))
            row = QWidget()
            lay = QHBoxLayout(row)
            lay.setContentsMargins(0, 0, 0, 0)
            lay.addWidget(combo, 1)
            for caption, pick in (("Video...", self._pick_video), ("Folder...", self._pick_folder)):
                b = QPushButton(caption)
                b.clicked.connect(pick)
                lay.addWidget(b)
            return combo, row
        edit = QLineEdit(str(value))
        empty = re.search(r"\(empty: ([^)]*)\)", s.help)
        if empty:
            edit.setPlaceholderText(empty.group(1))
        if s.kind == "folder":
            return edit, _with_browse(edit, lambda: self._pick_dir(edit))
        return edit, edit

    def _pick_video(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Video file", "", "Videos (*.avi *.mp4 *.mkv *.mov);;All (*)")
        if path:
            self._source().setCurrentText(f"video:{path}")

    def _pick_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Image folder")
        if path:
            self._source().setCurrentText(f"folder:{path}")

    def _source(self) -> QComboBox:
        combo = self.fields["source"]
        assert isinstance(combo, QComboBox)
        return combo

    def _pick_dir(self, edit: QLineEdit) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder", edit.text())
        if path:
            edit.setText(path)

    def values(self) -> dict[str, Any]:
        """What the dialog holds, by field name (checked by `apply` on Save)."""
        out: dict[str, Any] = {}
        for name, w in self.fields.items():
            if isinstance(w, QCheckBox):
                out[name] = w.isChecked()
            elif isinstance(w, (QSpinBox, QDoubleSpinBox)):
                out[name] = w.value()
            elif isinstance(w, QComboBox):
                out[name] = w.currentText().strip() if w.isEditable() else w.currentData()
            elif isinstance(w, QLineEdit):
                out[name] = w.text().strip()
        return out

    def _accept(self) -> None:
        cfg, problems = apply(self.cfg, self.values())
        problems = problems or conflicts(cfg)
        if problems:
            self.problems.setText("\n".join(p.split("; keeping")[0] for p in problems))
            return
        self.result_config = replace(cfg)
        self.accept()


class ClickableView(VideoView):
    """The frame under review; a click reports the frame pixel under the pointer."""

    clicked = pyqtSignal(float, float)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setCursor(Qt.CursorShape.CrossCursor)

    def frame_xy(self, x: float, y: float) -> tuple[float, float] | None:
        """The frame pixel under widget point (x, y), as paintEvent places the frame; None off it."""
        if self._image is None:
            return None
        iw, ih = self._image.width(), self._image.height()
        s = min(self.width() / iw, self.height() / ih)
        fx, fy = (x - (self.width() - iw * s) / 2) / s, (y - (self.height() - ih * s) / 2) / s
        return (fx, fy) if 0 <= fx < iw and 0 <= fy < ih else None

    def mousePressEvent(self, event: QMouseEvent | None) -> None:
        if event is not None:
            xy = self.frame_xy(event.position().x(), event.position().y())
            if xy is not None:
                self.clicked.emit(*xy)


def _circle_radius(part: str) -> int:
    """The circle around a pin on `part`'s frames (one pitch); the default part's size if its file
    does not load, so the frames can still be reviewed."""
    try:
        return overlay.pin_radius(load_part(part))
    except (PartSpecError, OSError, ValueError) as e:
        log.warning("review: part %s: %s; circles drawn at the default part's size", part, e)
        return overlay.pin_radius(load_part("default"))


class ReviewDialog(QDialog):
    """The archived frames, a page at a time (the most uncertain first, or the newest), so an
    archive of any size opens at once. A line engineer looks at each and records what it really
    is into the archive (and its labels.csv), from the keyboard:

        B / 1, N / 2, O / 3   this frame is BENDNG / NUKENG / OK: save and go to the next
        click on the frame    the pin there is the defective one (its number and the click are saved)
        up / down             previous / next frame      page up / page down   previous / next page
        Enter                 save what is set and go to the next
    """

    PAGE = 200
    KEYS = {Qt.Key.Key_B: "BENDNG", Qt.Key.Key_1: "BENDNG", Qt.Key.Key_N: "NUKENG", Qt.Key.Key_2: "NUKENG",
            Qt.Key.Key_O: "OK", Qt.Key.Key_3: "OK"}  # fmt: skip
    ORDERS = {"most uncertain first": "uncertain", "newest first": "newest"}

    def __init__(self, archive: Archive, parent: QWidget | None = None, part: str = "default"):
        """`part`: the part the archived frames show (the station's), for naming a clicked pin and
        the size of the circles."""
        super().__init__(parent)
        self.archive = archive
        self.part, self.radius = part, _circle_radius(part)
        self.setWindowTitle(f"Review archived frames - {archive.root}")
        self.rows: list[FlaggedRow] = []
        self.offset = 0
        self.total = 0
        self._click: tuple[float, float] | None = None
        self.table = QTableWidget(0, 8)
        self.table.setHorizontalHeaderLabels(
            ["time", "model says", "pin", "score", "reviewed", "margin", "kept because", "model"]
        )
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the keys are the dialog's (see above)
        self.table.itemSelectionChanged.connect(self._selected)
        self.order = QComboBox()
        self.order.addItems(list(self.ORDERS))
        self.order.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.order.currentTextChanged.connect(lambda _: self.load_page(0))
        self.todo = QCheckBox("only frames left to review")
        self.todo.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.todo.toggled.connect(lambda _: self.load_page(0))
        self.prev_page = QPushButton("< Page")
        self.prev_page.clicked.connect(lambda: self.load_page(self.offset - self.PAGE))
        self.next_page = QPushButton("Page >")
        self.next_page.clicked.connect(lambda: self.load_page(self.offset + self.PAGE))
        self.progress = QLabel("")
        self.preview = ClickableView()
        self.preview.show_notice("Select a frame", keep_frame=False)
        self.preview.clicked.connect(self.click_pin)
        self.label = QComboBox()
        self.label.addItems(CLASSES)
        self.label.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.label.currentTextChanged.connect(self._label_changed)
        self.pin = QSpinBox()
        self.pin.setRange(0, archive.n_pins or 999)  # None: the part is not known
        self.save = QPushButton("Save label")
        self.save.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.save.clicked.connect(self._save)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        keys = QLabel("B/1 BENDNG, N/2 NUKENG, O/3 OK (saves, next) - click the pin - arrows move - Enter saves")
        keys.setStyleSheet("color:#666;")
        nav = QHBoxLayout()
        for w in (self.order, self.todo, self.prev_page, self.next_page):
            nav.addWidget(w)
        nav.addStretch(1)
        left = QVBoxLayout()
        left.addLayout(nav)
        left.addWidget(self.table, 1)
        left.addWidget(self.progress)
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
        right.addWidget(keys)
        right.addWidget(self.note)
        lay = QHBoxLayout(self)
        lay.addLayout(left, 2)
        lay.addLayout(right, 3)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        right.addWidget(close)
        self.resize(1200, 600)
        self.reload()

    # -- paging ---------------------------------------------------------------------------------

    def reload(self) -> None:
        self.load_page(self.offset)
        try:
            self.archive.labels()
        except ArchiveError as e:  # the frames still show; saving is refused until the file is fixed
            self.note.setText(f"Reviewed labels unreadable: {e}")
        if not self.rows:
            self.note.setText(self.note.text() or "No frames archived yet.")

    def load_page(self, offset: int) -> None:
        """Read one page of rows (never the whole archive) and show it."""
        todo = self.todo.isChecked()
        try:
            self.total = self.archive.count(todo=todo)
            self.offset = max(0, min(offset, (max(self.total, 1) - 1) // self.PAGE * self.PAGE))
            self.rows = self.archive.page(self.offset, self.PAGE, self.ORDERS[self.order.currentText()], todo)
        except Exception as e:  # shown, never raised out of the dialog
            log.exception("reading the archive")
            self.rows, self.total = [], 0
            self.note.setText(f"Cannot read the archive: {e}")
        self.table.setRowCount(len(self.rows))
        for i, r in enumerate(self.rows):
            self._fill(i, r)
        self.table.resizeColumnsToContents()
        self.prev_page.setEnabled(self.offset > 0)
        self.next_page.setEnabled(self.offset + self.PAGE < self.total)
        self._set_enabled(False)
        self._show_progress()

    def _fill(self, i: int, r: FlaggedRow) -> None:
        score = r.scores.get(r.label, math.nan)
        reviewed = f"{r.reviewed[0]} {r.reviewed[1] or ''}".strip() if r.reviewed else ""
        cells = [
            r.time.replace("T", " ")[:19],
            r.label,
            str(r.pin),
            f"{score:.2f}",
            reviewed,
            "" if math.isnan(r.margin) else f"{r.margin:.3f}",
            r.kept + (" (image missing)" if r.missing else ""),
            r.model,
        ]
        for j, text in enumerate(cells):
            self.table.setItem(i, j, QTableWidgetItem(text))

    def _show_progress(self) -> None:
        try:
            left, total = self.archive.count(todo=True), self.archive.count()
        except Exception as e:
            self.progress.setText(f"cannot count: {e}")
            return
        shown = f"rows {self.offset + 1}-{self.offset + len(self.rows)} of {self.total}" if self.rows else "no rows"
        self.progress.setText(f"{left} left to review of {total} - {shown}")

    # -- the current frame ----------------------------------------------------------------------

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
        self._click = r.click
        self._show_frame(r)
        label, pin = r.reviewed or (r.label, r.pin)
        self.label.setCurrentText(label)
        self.pin.setValue(pin)
        self._set_enabled(True)
        self._label_changed(label)
        self.note.setText(r.file)

    def _show_frame(self, r: FlaggedRow) -> None:
        img = cv2.imread(str(self.archive.images / r.file), cv2.IMREAD_COLOR)
        if img is None:
            self.preview.show_notice(f"{r.file}: missing or unreadable", keep_frame=False)
            return
        if r.where is not None:  # where the model saw the defect
            overlay.circle(img, r.where, r.label, r.pin, self.radius)
        if self._click is not None:  # where the person said it is
            overlay.circle(img, self._click, self.label.currentText(), self.pin.value(), radius=12)
        self.preview.show_frame(img)

    def click_pin(self, x: float, y: float) -> None:
        """A click on the frame names the pin there (the part's grid placed on the model's own
        location when it has one) and is kept with the label."""
        r = self.current()
        if r is None or not self.save.isEnabled():
            return
        anchor = (r.pin, r.where) if r.where is not None and r.pin else None
        try:
            pin = pin_at((x, y), anchor, part=self.part)
        except Exception as e:  # the part's geometry unavailable: the click is still kept
            log.warning("naming the clicked pin: %s", e)
            pin = self.pin.value()
        self._click = (x, y)
        if self.label.currentText() == "OK":
            self.label.setCurrentText(r.label if r.label != "OK" else "BENDNG")
        self.pin.setValue(pin)
        self._show_frame(r)
        self.note.setText(f"{r.file}: pin {pin} clicked at ({x:.0f}, {y:.0f})")

    def _label_changed(self, label: str) -> None:
        ok = label == "OK"
        self.pin.setMinimum(0 if ok else 1)
        if ok:
            self.pin.setValue(0)
        self.pin.setEnabled(not ok and self.save.isEnabled())

    # -- keys -----------------------------------------------------------------------------------

    def keyPressEvent(self, event: QKeyEvent | None) -> None:
        if event is None:
            return
        key = event.key()
        if key in self.KEYS:
            self.label.setCurrentText(self.KEYS[Qt.Key(key)])
            if self._save():
                self.step(1)
        elif key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            if self._save():
                self.step(1)
        elif key in (Qt.Key.Key_Down, Qt.Key.Key_Right):
            self.step(1)
        elif key in (Qt.Key.Key_Up, Qt.Key.Key_Left):
            self.step(-1)
        elif key == Qt.Key.Key_PageDown:
            self.load_page(self.offset + self.PAGE)
        elif key == Qt.Key.Key_PageUp:
            self.load_page(self.offset - self.PAGE)
        else:  # Escape closes, as in any dialog
            super().keyPressEvent(event)

    def step(self, step: int) -> None:
        """To the next (or previous) frame, across pages."""
        row = self.table.currentRow() + step
        if 0 <= row < len(self.rows):
            self.select(row)
        elif row >= len(self.rows) and self.offset + self.PAGE < self.total:
            self.load_page(self.offset + self.PAGE)
            self.select(0)
        elif row < 0 and self.offset > 0:
            self.load_page(self.offset - self.PAGE)
            self.select(len(self.rows) - 1)

    # -- saving ---------------------------------------------------------------------------------

    def _save(self) -> bool:
        r = self.current()
        if r is None:
            return False
        row = self.table.currentRow()
        label, pin = self.label.currentText(), self.pin.value()
        click = self._click if label != "OK" else None
        try:
            self.archive.relabel(r.file, label, pin, click)
        except Exception as e:  # an exception leaving a Qt slot aborts the whole station
            if not isinstance(e, ArchiveError):
                log.exception("relabel %s", r.file)
            self.note.setText(f"<b style='color:#b71c1c'>Not saved</b>: {e}")
            return False
        r.reviewed, r.click = (label, pin), click
        self._fill(row, r)  # this row only: the page stays as it is while the engineer works through it
        self._show_progress()
        self.note.setText(f"Saved: {r.file} is {label} pin {pin} (labels.csv)")
        self.note.setAlignment(Qt.AlignmentFlag.AlignLeft)
        return True
