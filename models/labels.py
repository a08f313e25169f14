"""Labelled folders as PART.md defines them: `images/` + `labels.csv` (`file,label,pin`).

`labels.csv` may also carry `x,y`: the frame pixel a person clicked as the defective pin (the
station's review dialog writes them). Training turns a click into where the defect is
(`read_clicks`); every other reader ignores the two columns.

Torch-free: training, evaluation, the station's archive and `edge_app.predict` all read them here.
"""

from __future__ import annotations

import csv
import errno
import io
import math
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from models.files import atomic_write
from models.part import CLASSES

# What OpenCV reads and the folder readers, the station's folder camera and predict take as images.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
LABEL_FIELDS = ["file", "label", "pin", "x", "y"]  # x, y: optional
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


def read_labels(path: Path, n_pins: int | None = None, allow_empty: bool = False) -> dict[str, tuple[int, int]]:
    """labels.csv (`file,label,pin`) -> {file: (class index, pin)}, in file order.

    Every row is checked, since a wrong label silently trains or scores the wrong thing: a known
    label, an OK with pin 0, a defect with its pin (1..n_pins when the part is known), each file
    once. LabelsError reads `path:line: what is wrong`."""
    path = Path(path)
    try:
        f = open(path, newline="", encoding="utf-8")
    except OSError as e:
        raise LabelsError(f"{path}: cannot read ({e.strerror})") from None
    out: dict[str, tuple[int, int]] = {}
    first_line: dict[str, int] = {}
    n = 1
    try:
        with f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not {"file", "label"} <= set(reader.fieldnames):
                raise LabelsError(f"{path}: header must be file,label,pin (got {reader.fieldnames})")
            for r in reader:
                n = reader.line_num
                row = _check_row(path, n, r, n_pins)
                if r["file"] in first_line:
                    raise LabelsError(
                        f"{path}:{n}: {r['file']} is listed again (first at line {first_line[r['file']]})"
                    )
                first_line[r["file"]], out[r["file"]] = n, row
    except UnicodeDecodeError:
        raise LabelsError(f"{path}: not a UTF-8 text file (binary or another encoding)") from None
    except csv.Error as e:
        raise LabelsError(f"{path}:{n + 1}: not a readable CSV row ({e})") from None
    if not out and not allow_empty:
        raise LabelsError(f"{path}: no images listed")
    return out


def read_clicks(path: Path) -> dict[str, tuple[float, float]]:
    """labels.csv's optional `x,y` columns -> {file: (x, y)} in frame pixels, for the rows that
    have them (a defect whose pin a person clicked). Both or neither; numbers, not NaN; never on
    an OK row. A file without the columns has no clicks. LabelsError reads `path:line: ...`."""
    path = Path(path)
    out: dict[str, tuple[float, float]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not {"x", "y"} <= set(reader.fieldnames):
                return out
            for r in reader:
                raw = (r.get("x") or "").strip(), (r.get("y") or "").strip()
                if not any(raw):
                    continue
                where = f"{path}:{reader.line_num}"
                if not all(raw):
                    raise LabelsError(f"{where}: a click needs both x and y, got x={raw[0]!r} y={raw[1]!r}")
                try:
                    x, y = float(raw[0]), float(raw[1])
                except ValueError:
                    raise LabelsError(f"{where}: x and y must be numbers, got {raw[0]!r}, {raw[1]!r}") from None
                if not (math.isfinite(x) and math.isfinite(y)) or x < 0 or y < 0:
                    raise LabelsError(f"{where}: x and y must be frame pixels (0 or more), got {x}, {y}")
                if r.get("label") == "OK":
                    raise LabelsError(f"{where}: {r.get('file')} is OK but has a clicked pin at {x}, {y}")
                out[r["file"]] = (x, y)
    except OSError as e:
        raise LabelsError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise LabelsError(f"{path}: not a UTF-8 text file (binary or another encoding)") from None
    except csv.Error as e:
        raise LabelsError(f"{path}: not a readable CSV file ({e})") from None
    return out


def _check_row(path: Path, n: int, r: dict[str, Any], n_pins: int | None) -> tuple[int, int]:
    file, label, raw_pin = r.get("file"), r.get("label"), r.get("pin")
    if not file:
        raise LabelsError(f"{path}:{n}: no file name")
    if label not in CLASSES:
        raise LabelsError(f"{path}:{n}: unknown label {label!r} (known: {', '.join(CLASSES)})")
    try:
        pin = int(raw_pin or 0)
    except ValueError:
        raise LabelsError(f"{path}:{n}: pin must be a number, got {raw_pin!r}") from None
    if label == "OK" and pin != 0:
        raise LabelsError(f"{path}:{n}: {file} is OK but names pin {pin} (an OK part has pin 0)")
    if label != "OK":
        top = f"1..{n_pins}" if n_pins else "1 or more"
        if pin < 1 or (n_pins is not None and pin > n_pins):
            raise LabelsError(f"{path}:{n}: {file} is {label} with pin {pin}; a defect needs its pin, {top}")
    return CLASSES.index(label), pin


def write_predictions(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """The predictions CSV of training.evaluate and edge_app.predict: `file,label,pin,score_BENDNG,
    score_NUKENG,score_OK`, one row per image (pin 0 for OK). Written to a temporary file and
    renamed, so a full disk leaves any earlier file whole; the error names the file."""
    path = Path(path)
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=PREDICTION_FIELDS)
    w.writeheader()
    w.writerows({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    try:
        atomic_write(path, buf.getvalue(), newline="")
    except OSError as e:
        raise LabelsError(f"{path}: cannot write the predictions ({e.strerror or e})") from None
    return path


def check_writable(path: Path, folder: bool = False) -> Path:
    """Fail now, naming the path, when an output (a file, or a `folder` of files) cannot be written
    there, rather than after every image has been scored. Creates the missing folders."""
    path = Path(path)
    where = path if folder else path.parent
    try:
        if not folder and path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a folder")
        where.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=where)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise LabelsError(f"{path}: cannot write here ({e.strerror or e})") from None
    return path
