"""The NG archive after power loss and hand edits: a flagged.csv cut off mid-row, a labels.csv
with a bad row. Nothing saved is lost, and the review dialog never takes the station down."""

import csv
import time

import numpy as np
import pytest

from edge_app.archive import Archive, ArchiveError
from edge_app.pipeline import Result
from edge_app.sources import Frame


class Verdict:
    def __init__(self, label="BENDNG", pin=5):
        self.label, self.pin = label, pin
        self.scores = {"BENDNG": 0.1, "NUKENG": 0.1, "OK": 0.1, label: 0.8}
        self.heatmap = np.zeros((12, 20), np.float32)


def ng(i, label="BENDNG", pin=5):
    return Result(Frame(np.full((480, 640, 3), 60, np.uint8), i, time.perf_counter()), Verdict(label, pin), 2.0, 0.0)


def rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


@pytest.mark.parametrize("cut", [5, 30, -1])  # mid time, mid file name, only the newline lost
def test_a_flagged_csv_cut_off_mid_row_does_not_swallow_the_next_row(tmp_path, cut):
    a = Archive(tmp_path)
    first = a.save(ng(0))
    path = tmp_path / "flagged.csv"
    text = path.read_bytes()
    header_end = text.index(b"\n") + 1
    path.write_bytes(text[: header_end + cut] if cut > 0 else text[:-1])  # power lost during the write
    second = a.save(ng(1, "NUKENG", 7))
    got = rows(path)
    assert got[-1][1] == second and got[-1][2] == "NUKENG" and len(got[-1]) == len(got[0])
    assert path.read_bytes().endswith(b"\n")
    assert [r.file for r in a.flagged()][0] == second
    if cut == -1:
        assert got[1][1] == first  # the whole row was there: kept as it was


def test_labels_csv_with_a_bad_pin_refuses_relabel_without_dropping_rows(tmp_path):
    a = Archive(tmp_path)
    names = [a.save(ng(i)) for i in range(3)]
    labels = tmp_path / "labels.csv"
    labels.write_text(f"file,label,pin\n{names[0]},BENDNG,4\n{names[1]},NUKENG,x\n")
    before = labels.read_text()
    with pytest.raises(ArchiveError, match=r"labels\.csv:3: pin must be a number"):
        a.relabel(names[2], "OK", 0)
    assert labels.read_text() == before
    assert len(a.flagged()) == 3  # the frames stay listable


@pytest.mark.gui
def test_review_dialog_save_on_a_bad_labels_csv_says_why_and_keeps_running(tmp_path, qtbot):
    from edge_app.ui.dialogs import ReviewDialog

    a = Archive(tmp_path)
    names = [a.save(ng(i)) for i in range(2)]
    (tmp_path / "labels.csv").write_text(f"file,label,pin\n{names[0]},BENDNG,99\n")
    dlg = ReviewDialog(a)
    qtbot.addWidget(dlg)
    assert dlg.table.rowCount() == 2 and "labels.csv:2" in dlg.note.text()
    dlg.select(0)
    dlg.label.setCurrentText("NUKENG")
    dlg.pin.setValue(3)
    dlg.save.click()  # through Qt: an exception escaping this slot used to abort the process
    assert "Not saved" in dlg.note.text() and "labels.csv:2" in dlg.note.text()
    assert (tmp_path / "labels.csv").read_text() == f"file,label,pin\n{names[0]},BENDNG,99\n"


@pytest.mark.gui
def test_review_dialog_turns_an_unexpected_error_into_a_note(tmp_path, qtbot, monkeypatch):
    from edge_app.ui.dialogs import ReviewDialog

    a = Archive(tmp_path)
    a.save(ng(0))
    dlg = ReviewDialog(a)
    qtbot.addWidget(dlg)
    dlg.select(0)

    def broken(*args):
        raise ValueError("something nobody expected")

    monkeypatch.setattr(a, "relabel", broken)
    dlg.save.click()
    assert "Not saved" in dlg.note.text() and "something nobody expected" in dlg.note.text()


@pytest.mark.gui
def test_the_window_reports_an_exception_escaping_any_slot(qtbot, monkeypatch):
    from PyQt6.QtWidgets import QMessageBox, QWidget

    from edge_app.ui.app import slot_error_hook

    shown = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text: shown.append(text))
    w = QWidget()
    qtbot.addWidget(w)
    hook = slot_error_hook(w)
    try:
        raise KeyError("frame 12")
    except KeyError as e:
        hook(type(e), e, e.__traceback__)
    assert len(shown) == 1 and "KeyError" in shown[0] and "frame 12" in shown[0]
