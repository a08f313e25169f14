"""The one scorer: verdicts by the real decision rule, metrics against a known answer, bad frames."""

import csv

import cv2
import numpy as np
import pytest

from models.decision import DEFAULT_THRESHOLDS
from models.labels import LabelsError
from models.part import CLASSES
from models.preprocess import InputSpec
from models.scoring import score

SPEC = InputSpec()
BRIGHT = {"BENDNG": 40, "NUKENG": 120, "OK": 200}  # a frame's grey level says what the fake model sees


class GreyModel:
    """Scores a frame by its mean grey level (one-hot on the class it was drawn as), so a folder's
    verdicts are known in advance; the real decision rule (`decide`) turns them into labels."""

    input_spec = SPEC
    thresholds = dict(DEFAULT_THRESHOLDS)

    def infer_batch(self, x):
        scores = np.zeros((len(x), len(CLASSES)), np.float32)
        for i, v in enumerate(x.mean(axis=(1, 2, 3))):
            cls = min(BRIGHT, key=lambda c: abs(self._norm(BRIGHT[c]) - v))
            scores[i, CLASSES.index(cls)] = 1.0
        pins = np.zeros((len(x), 28), np.float32)
        pins[:, 5] = 1.0  # always names pin 5
        return scores, pins, np.zeros((len(x), 4, 4), np.float32)

    @staticmethod
    def _norm(grey):
        mean, std = np.asarray(SPEC.mean), np.asarray(SPEC.std)
        return float(((grey / 255.0 - mean) / std).mean())


def make_folder(tmp_path, drawn, truth):
    """Frames drawn as `drawn` classes, labelled as `truth` (None: no label row)."""
    (tmp_path / "images").mkdir()
    rows = []
    for i, (d, t) in enumerate(zip(drawn, truth, strict=True)):
        name = f"{i:03d}.png"
        cv2.imwrite(
            str(tmp_path / "images" / name), np.full((SPEC.frame_height, SPEC.frame_width, 3), BRIGHT[d], np.uint8)
        )
        if t is not None:
            rows.append({"file": name, "label": t, "pin": 0 if t == "OK" else 5})
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["file", "label", "pin"])
        w.writeheader()
        w.writerows(rows)
    return tmp_path


def test_known_escapes_and_overkills_are_counted(tmp_path):
    # truth: 4 defects (1 drawn as OK: an escape), 4 OK (1 drawn as BENDNG: an overkill)
    drawn = ["BENDNG", "NUKENG", "NUKENG", "OK", "OK", "OK", "OK", "BENDNG"]
    truth = ["BENDNG", "NUKENG", "BENDNG", "NUKENG", "OK", "OK", "OK", "OK"]
    scored = score(GreyModel(), make_folder(tmp_path, drawn, truth), progress=False, batch=3)
    m = scored.metrics()
    assert [r["label"] for r in scored.rows()] == drawn
    assert m["n"] == 8
    assert m["escape_rate"] == pytest.approx(1 / 4)
    assert m["overkill_rate"] == pytest.approx(1 / 4)
    assert m["accuracy"] == pytest.approx(5 / 8)  # and a BENDNG called NUKENG
    assert m["pin_accuracy"] == pytest.approx(3 / 4)  # every defect is on pin 5; the escape names no pin


def test_unlabelled_frames_are_predicted_not_scored(tmp_path):
    drawn = ["BENDNG", "OK", "OK"]
    scored = score(GreyModel(), make_folder(tmp_path, drawn, ["BENDNG", None, "OK"]), progress=False)
    assert len(scored) == 3 and scored.unlabelled == 1
    assert scored.metrics()["n"] == 2


def test_an_unreadable_frame_is_skipped_and_named(tmp_path, capsys):
    folder = make_folder(tmp_path, ["OK", "BENDNG"], ["OK", "BENDNG"])
    (folder / "images" / "000.png").write_bytes(b"not a png")
    scored = score(GreyModel(), folder, progress=False)
    assert scored.files == ["001.png"] and scored.skipped == ["000.png"]
    assert "000.png" in capsys.readouterr().err


def test_nothing_readable_is_one_line_naming_the_folder(tmp_path):
    folder = make_folder(tmp_path, ["OK"], ["OK"])
    (folder / "images" / "000.png").write_bytes(b"")
    with pytest.raises(LabelsError, match="none of the 1 images could be read"):
        score(GreyModel(), folder, progress=False)
