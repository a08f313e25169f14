import csv
import time

import cv2
import numpy as np
import pytest
from station_fakes import FakeVerdict

from edge_app.archive import Archive, ArchiveError
from edge_app.pipeline import Result
from edge_app.sources import Frame
from training.data import read_labels


def result(i, label="BENDNG", pin=5, value=77):
    img = np.full((480, 640, 3), value, np.uint8)
    scores = {"BENDNG": 0.1, "NUKENG": 0.1, "OK": 0.1, label: 0.8}
    return Result(Frame(img, i, time.perf_counter()), FakeVerdict(label, pin, scores), 3.0, time.perf_counter())


def test_save_writes_png_and_csv_row(tmp_path):
    a = Archive(tmp_path / "arch")
    name = a.save(result(3, "NUKENG", 12), source="simulator")
    assert name.endswith("_000003_NUKENG_p12.png")
    img = cv2.imread(str(tmp_path / "arch" / "images" / name))
    assert img.shape == (480, 640, 3) and int(img.mean()) == 77
    rows = list(csv.DictReader(open(tmp_path / "arch" / "flagged.csv")))
    assert rows[0]["file"] == name and rows[0]["label"] == "NUKENG" and rows[0]["pin"] == "12"
    assert float(rows[0]["score_NUKENG"]) == pytest.approx(0.8) and rows[0]["source"] == "simulator"
    assert list(rows[0]) == [
        "time", "file", "label", "pin", "score_BENDNG", "score_NUKENG", "score_OK", "source", "x", "y"
    ]  # fmt: skip
    assert (rows[0]["x"], rows[0]["y"]) == ("", "")  # no heatmap location given


def test_relabel_round_trip_is_a_labelled_folder(tmp_path):
    a = Archive(tmp_path)
    results = [result(i, "BENDNG", 4) for i in range(3)]
    results[0].where = (321.5, 200.25)
    names = [a.save(r) for r in results]
    assert a.flagged()[-1].where == (321.5, 200.2) and a.flagged()[0].where is None
    flagged = a.flagged()
    assert [r.file for r in flagged] == names[::-1] and all(r.reviewed is None for r in flagged)
    a.relabel(names[0], "NUKENG", 4)
    a.relabel(names[1], "OK", 0)
    a.relabel(names[0], "BENDNG", 6)  # changed mind: the later label wins, one row per file
    assert a.labels() == {names[0]: ("BENDNG", 6), names[1]: ("OK", 0)}
    assert (tmp_path / "labels.csv").read_text().splitlines()[0] == "file,label,pin"
    assert sorted(read_labels(tmp_path)) == sorted([(names[0], "BENDNG", 6), (names[1], "OK", 0)])
    reviewed = {r.file: r.reviewed for r in a.flagged()}
    assert reviewed[names[1]] == ("OK", 0) and reviewed[names[2]] is None


@pytest.mark.parametrize(
    "label, pin, msg",
    [("BENT", 3, "one of"), ("OK", 4, "pin 0"), ("BENDNG", 0, "needs its pin"), ("NUKENG", 28, "1..27")],
)
def test_relabel_refuses_bad_labels(tmp_path, label, pin, msg):
    a = Archive(tmp_path)
    name = a.save(result(0))
    with pytest.raises(ArchiveError, match=msg):
        a.relabel(name, label, pin)
    with pytest.raises(ArchiveError, match="not an image"):
        a.relabel("../etc/passwd", "OK", 0)


def test_unwritable_folder_is_a_state_not_a_crash(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the archive folder should be")
    states = []
    a = Archive(blocker / "archive", on_state=states.append)
    with pytest.raises(ArchiveError, match="cannot save NG frames"):
        a.save(result(0))
    assert states and "cannot save NG frames" in states[-1] and a.message == states[-1]
    # through the writer thread: no exception escapes, the count says what was lost
    a.submit(result(1))
    a.close()
    assert a.not_saved == 1


def test_full_disk_keeps_previous_files_and_recovers(tmp_path):
    states = []
    a = Archive(tmp_path, on_state=states.append)
    first = a.save(result(0))
    before = (tmp_path / "flagged.csv").read_bytes()
    a.min_free_bytes = 1 << 62  # the disk is "full"
    with pytest.raises(ArchiveError, match="disk full"):
        a.save(result(1))
    assert (tmp_path / "flagged.csv").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == [first]
    a.min_free_bytes = 0  # space freed
    a.save(result(2))
    assert states[-1] == "" and a.message == "" and len(a.flagged()) == 2


def test_half_written_row_is_cut_back(tmp_path, monkeypatch):
    a = Archive(tmp_path)
    a.save(result(0))
    before = (tmp_path / "flagged.csv").read_bytes()
    import builtins

    real_open = builtins.open

    class Failing:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def tell(self):
            return self.f.tell()

        def truncate(self, n):
            return self.f.truncate(n)

        def write(self, text):
            self.f.write(text[:10])
            self.f.flush()
            raise OSError(28, "No space left on device")

        def flush(self):
            self.f.flush()

    def fake_open(path, mode="r", *args, **kw):
        f = real_open(path, mode, *args, **kw)
        return Failing(f) if str(path).endswith("flagged.csv") and "a" in mode else f

    monkeypatch.setattr(builtins, "open", fake_open)
    with pytest.raises(ArchiveError, match="disk full"):
        a.save(result(1))
    monkeypatch.undo()
    assert (tmp_path / "flagged.csv").read_bytes() == before
    assert len(list((tmp_path / "images").iterdir())) == 1  # the image without its row is gone too


def test_writer_behind_drops_with_a_message(tmp_path):
    states = []
    a = Archive(tmp_path, on_state=states.append, max_pending=1)
    a._thread = object()  # pretend the writer runs but never takes anything
    assert a.submit(result(0))
    assert not a.submit(result(1))
    assert "behind" in states[-1] and a.not_saved == 1
    assert not a.submit(result(2)) and len(states) == 1 and a.not_saved == 2
    a._thread = None
