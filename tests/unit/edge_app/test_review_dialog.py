"""The review dialog: a page at a time, the most uncertain first, driven from the keyboard."""

from pathlib import Path

import numpy as np
import pytest
from PyQt6.QtCore import Qt

from edge_app.archive import Archive, nominal_pins
from edge_app.events import Result
from edge_app.sources import Frame
from edge_app.ui.review_benchmark import fill

pytestmark = pytest.mark.gui


class V:
    def __init__(self, label="BENDNG", pin=5):
        self.label, self.pin, self.heatmap = label, pin, None
        self.scores = {"BENDNG": 0.1, "NUKENG": 0.1, "OK": 0.1, label: 0.8}


def archive_of(root, margins):
    a = Archive(root)
    img = np.full((480, 640, 3), 90, np.uint8)
    for i, m in enumerate(margins):
        r = Result(Frame(img, i, 0.0), V(), 1.0, 0.0, model="default 0.1.0")
        r.margin = m
        r.where = tuple(nominal_pins()[4])  # the model located pin 5
        a.save(r)
    return a


def test_keys_label_save_and_move_on_and_a_click_names_the_pin(tmp_path, qtbot):
    from edge_app.ui.dialogs import ReviewDialog

    a = archive_of(tmp_path, [0.4, 0.01, 0.2])
    dlg = ReviewDialog(a)
    qtbot.addWidget(dlg)
    dlg.resize(1200, 600)
    assert [r.margin for r in dlg.rows] == [0.01, 0.2, 0.4]  # the most uncertain first
    assert "3 left to review of 3" in dlg.progress.text()
    dlg.select(0)
    qtbot.keyClick(dlg, Qt.Key.Key_O)  # OK: saved, and on to the next
    assert a.labels() == {dlg.rows[0].file: ("OK", 0)} and dlg.table.currentRow() == 1
    assert "2 left to review of 3" in dlg.progress.text()
    dlg.click_pin(*nominal_pins()[6])  # the person points at pin 7
    assert dlg.pin.value() == 7 and dlg.label.currentText() == "BENDNG"
    qtbot.keyClick(dlg, Qt.Key.Key_2)  # NUKENG, on the clicked pin
    got = {r.file: r for r in a.flagged()}[dlg.rows[1].file]
    assert got.reviewed == ("NUKENG", 7) and got.click == pytest.approx(tuple(nominal_pins()[6]))
    assert dlg.table.currentRow() == 2
    qtbot.keyClick(dlg, Qt.Key.Key_Up)
    assert dlg.table.currentRow() == 1 and dlg.table.item(1, 4).text() == "NUKENG 7"
    dlg.todo.setChecked(True)  # only what is left
    assert [r.file for r in dlg.rows] == [a.page(0, 1, "uncertain", todo=True)[0].file]


def test_a_click_on_the_view_is_the_frame_pixel_under_it(qtbot):
    from edge_app.ui.dialogs import ClickableView

    v = ClickableView()
    qtbot.addWidget(v)
    v.resize(1280, 480)  # the 640x480 frame is drawn 480 high, centred: 320 px bars left and right
    v.show_frame(np.zeros((480, 640, 3), np.uint8))
    assert v.frame_xy(320 + 100, 240) == pytest.approx((100, 240)) and v.frame_xy(10, 240) is None
    got = []
    v.clicked.connect(lambda x, y: got.append((x, y)))
    qtbot.mouseClick(v, Qt.MouseButton.LeftButton, pos=v.rect().center())
    assert got and got[0] == pytest.approx((320, 240), abs=1)


def test_the_review_dialog_reads_one_page_of_an_archive_of_100000_rows(tmp_path, qtbot):
    """How fast it opens is `python -m edge_app.ui.review_benchmark`'s to say."""
    from edge_app.ui.dialogs import ReviewDialog

    root = tmp_path / "big"
    fill(root, 100_000)
    dlg = ReviewDialog(Archive(root))
    qtbot.addWidget(dlg)
    assert dlg.table.rowCount() == dlg.PAGE < 1000  # one page, not the whole archive
    assert "100000 left" in dlg.progress.text()
    assert dlg.rows[0].margin == 0.0  # the most uncertain first


def test_a_click_names_the_pin_of_the_stations_part_not_the_default_one(tmp_path, qtbot):
    """A station on a 2 x 6 connector: the clicked pin is counted on that part's grid, and the
    circles are that part's pitch."""
    import json

    import models
    from edge_app.ui.dialogs import ReviewDialog
    from models import overlay
    from models.part import load_part

    raw = json.loads((Path(models.__file__).parent / "parts" / "default.json").read_text())
    raw.update(name="twobysix", rows=2, cols=6)
    raw["camera"]["pitch_px"] = [70.0, 80.0]  # a bigger pitch in the frame than the default part's
    part = tmp_path / "twobysix.json"
    part.write_text(json.dumps(raw))
    a = Archive(tmp_path / "archive", n_pins=12)
    a.save(Result(Frame(np.full((480, 640, 3), 90, np.uint8), 0, 0.0), V(pin=3), 1.0, 0.0, model="m 1"))
    dlg = ReviewDialog(a, part=str(part))
    qtbot.addWidget(dlg)
    assert dlg.radius == overlay.pin_radius(load_part(part)) == 75
    dlg.select(0)
    tip = nominal_pins(str(part))[8]  # pin 9: second row, third column
    dlg.click_pin(*tip)
    assert dlg.pin.value() == 9
    default_pin = int(np.argmin(((nominal_pins() - tip) ** 2).sum(1))) + 1
    assert default_pin != 9  # the default part's grid would have named another pin
