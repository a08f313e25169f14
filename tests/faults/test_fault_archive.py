"""The archive after power loss and hand edits: a flagged.csv (of the CSV version) cut off mid-row,
a labels.csv with a bad row. Nothing saved is lost, and the review dialog never takes the station down."""

import time

import cv2
import numpy as np
import pytest

from edge_app.archive import CLASSES, Archive, ArchiveError
from edge_app.events import Result
from edge_app.sources import Frame


class Verdict:
    def __init__(self, label="BENDNG", pin=5):
        self.label, self.pin = label, pin
        self.scores = {"BENDNG": 0.1, "NUKENG": 0.1, "OK": 0.1, label: 0.8}
        self.heatmap = np.zeros((12, 20), np.float32)


def ng(i, label="BENDNG", pin=5):
    return Result(Frame(np.full((480, 640, 3), 60, np.uint8), i, time.perf_counter()), Verdict(label, pin), 2.0, 0.0)


@pytest.mark.parametrize("cut", [5, 30, -1])  # mid time, mid file name, only the newline lost
def test_a_flagged_csv_cut_off_mid_row_migrates_without_losing_an_image(tmp_path, cut):
    # an archive of the CSV version whose last row was being written when the power went
    names = ["20250101-120000-000_000001_BENDNG_p04.png", "20250101-120001-000_000002_NUKENG_p07.png"]
    (tmp_path / "images").mkdir()
    for n in names:
        cv2.imwrite(str(tmp_path / "images" / n), np.zeros((48, 64, 3), np.uint8))
    last = f"2025-01-01T12:00:01.000,{names[1]},NUKENG,7,0.1,0.8,0.1,sim,,\n"
    text = "time,file,label,pin,score_BENDNG,score_NUKENG,score_OK,source,x,y\n"
    text += f"2025-01-01T12:00:00.000,{names[0]},BENDNG,4,0.8,0.1,0.1,sim,,\n"
    text += last[:cut] if cut > 0 else last[:-1]
    (tmp_path / "flagged.csv").write_text(text)
    a = Archive(tmp_path)
    rep = a.check()
    assert rep.consistent and rep.rows == rep.images == 2 and rep.reindexed == (0 if cut == -1 else 1)
    second = a.save(ng(3, "NUKENG", 7))
    got = {r.file: r for r in a.flagged()}
    assert set(got) == {*names, second} and all(r.label in CLASSES for r in got.values())
    assert got[names[1]].kept == ("ng" if cut == -1 else "recovered")  # the whole row was there: kept as it was
    assert (got[names[1]].label, got[names[1]].pin) == ("NUKENG", 7)  # from the row, or from the name


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

    a = Archive(tmp_path, n_pins=27)  # the default part's, as the station passes it
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
