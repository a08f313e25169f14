"""The predictions CSV both CLIs write (models.labels.write_predictions)."""

import csv
import errno

import pytest

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

    def full(self, rows):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(csv.DictWriter, "writerows", full)
    with pytest.raises(LabelsError, match="p.csv: cannot write the predictions \\(No space left on device\\)"):
        write_predictions(out, ROWS[:1])
    assert out.read_bytes() == before
    assert not (tmp_path / "p.csv.part").exists()
