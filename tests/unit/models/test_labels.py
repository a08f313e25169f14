"""The predictions CSV both CLIs write (models.labels.write_predictions)."""

import csv
import errno
import os

import pytest

from models import files
from models.labels import PREDICTION_FIELDS, LabelsError, write_predictions

ROWS = [
    {"file": "a.png", "label": "BENDNG", "pin": 5, "score_BENDNG": 0.9, "score_NUKENG": 0.05, "score_OK": 0.05},
    {"file": "b.png", "label": "OK", "pin": 0, "score_BENDNG": 0.01, "score_NUKENG": 0.01, "score_OK": 0.98},
]


def test_header_and_rows(tmp_path):
    out = write_predictions(tmp_path / "sub" / "p.csv", ROWS)
    with open(out) as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == PREDICTION_FIELDS
        assert reader.fieldnames == ["file", "label", "pin", "score_BENDNG", "score_NUKENG", "score_OK"]
        got = list(reader)
    assert [(r["file"], r["label"], r["pin"]) for r in got] == [("a.png", "BENDNG", "5"), ("b.png", "OK", "0")]
    assert got[0]["score_BENDNG"] == "0.900000"


def test_a_full_disk_keeps_the_earlier_file_and_names_the_file(tmp_path, monkeypatch):
    out = tmp_path / "p.csv"
    write_predictions(out, ROWS)
    before = out.read_bytes()

    real_fdopen = os.fdopen

    class FullDisk:  # the file opens, the first write finds the disk full
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fdopen", lambda fd, *a, **k: FullDisk(real_fdopen(fd, *a, **k)))
    with pytest.raises(LabelsError, match="p.csv: cannot write the predictions \\(No space left on device\\)"):
        write_predictions(out, ROWS[:1])
    monkeypatch.undo()
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv"]
