"""Labelled folders as PART.md defines them: `images/` + `labels.csv` (`file,label,pin`).

Torch-free: training, evaluation, the station's archive and `edge_app.predict` all read them here.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from models.part import CLASSES

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
PREDICTION_FIELDS = ["file", "label", "pin"] + [f"score_{c}" for c in CLASSES]


class LabelsError(ValueError):
    """A folder or labels file that cannot be used; the message names it."""


def list_images(folder: Path) -> tuple[Path, list[str]]:
    """The image folder (DIR/images if it exists, else DIR) and its image names, sorted."""
    folder = Path(folder)
    root = folder / "images" if (folder / "images").is_dir() else folder
    if not root.is_dir():
        raise LabelsError(f"{folder}: no such folder")
    names = sorted(p.name for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not names:
        raise LabelsError(f"{root}: no images (.png, .jpg, ...) found")
    return root, names


def read_labels(path: Path) -> dict[str, tuple[int, int]]:
    """labels.csv (`file,label,pin`) -> {file: (class index, pin)}, in file order."""
    path = Path(path)
    try:
        f = open(path, newline="", encoding="utf-8")
    except OSError as e:
        raise LabelsError(f"{path}: cannot read ({e.strerror})") from None
    out: dict[str, tuple[int, int]] = {}
    with f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"file", "label"} <= set(reader.fieldnames):
            raise LabelsError(f"{path}: header must be file,label,pin (got {reader.fieldnames})")
        for n, r in enumerate(reader, start=2):
            if r["label"] not in CLASSES:
                raise LabelsError(f"{path}:{n}: unknown label {r['label']!r} (known: {', '.join(CLASSES)})")
            try:
                pin = int(r.get("pin") or 0)
            except ValueError:
                raise LabelsError(f"{path}:{n}: pin must be a number, got {r.get('pin')!r}") from None
            out[r["file"]] = (CLASSES.index(r["label"]), pin)
    if not out:
        raise LabelsError(f"{path}: no images listed")
    return out


def write_predictions(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """The predictions CSV of training.evaluate and edge_app.predict: `file,label,pin,score_BENDNG,
    score_NUKENG,score_OK`, one row per image (pin 0 for OK). Written to a temporary file and
    renamed, so a full disk leaves any earlier file whole; the error names the file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=PREDICTION_FIELDS)
            w.writeheader()
            w.writerows({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise LabelsError(f"{path}: cannot write the predictions ({e.strerror or e})") from None
    return path
