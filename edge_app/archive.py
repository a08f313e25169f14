"""The NG archive: flagged frames as PNG, one CSV row each, and the engineers' relabels.

    ARCHIVE/images/<time>_<frame>_<label>_p<pin>.png   every NG frame (the model's verdict in the name)
    ARCHIVE/flagged.csv   time,file,label,pin,score_BENDNG,score_NUKENG,score_OK,source,x,y   (the model's say;
                          x, y: where in the frame it saw the defect)
    ARCHIVE/labels.csv    file,label,pin   (what a person confirmed or corrected)

`labels.csv` lists only reviewed images, so ARCHIVE is a labelled folder (images/ + labels.csv) that
`training.data` reads as it is: a model's guesses never become training labels by themselves.

Writing never crashes the station and never damages what is already there: images are written to
a temporary name and renamed, a CSV row that fails half-way is cut back off, and a full disk or an
unwritable folder becomes a one-line state (`on_state`) until a later save succeeds.
"""

from __future__ import annotations

import csv
import datetime as dt
import errno
import io
import logging
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from models.labels import LabelsError, read_labels
from models.part import CLASSES

log = logging.getLogger(__name__)

FLAGGED_HEADER = ["time", "file", "label", "pin", *(f"score_{c}" for c in CLASSES), "source", "x", "y"]
LABELS_HEADER = ["file", "label", "pin"]
MIN_FREE_BYTES = 50 * 2**20  # leave the disk to the rest of the PC before it is completely full
# SUB filter + Huffman only: half the time of zlib level 1 at about the same size (~0.45 MB a frame)
_PNG = [
    cv2.IMWRITE_PNG_COMPRESSION,
    1,
    cv2.IMWRITE_PNG_FILTER,
    cv2.IMWRITE_PNG_FILTER_SUB,
    cv2.IMWRITE_PNG_STRATEGY,
    cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
]


class ArchiveError(OSError):
    """A save or relabel that did not happen; the message says why in one line."""


@dataclass
class FlaggedRow:
    time: str
    file: str
    label: str  # the model's verdict
    pin: int
    scores: dict[str, float]
    source: str
    reviewed: tuple[str, int] | None = None  # (label, pin) from labels.csv
    where: tuple[float, float] | None = None  # frame pixel the model pointed at


def _reason(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return "disk full"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "not writable"
    return e.strerror or str(e)


class Archive:
    def __init__(
        self,
        root: Path | str,
        on_state: Callable[[str], None] | None = None,
        n_pins: int = 27,
        max_pending: int = 32,
        min_free_bytes: int = MIN_FREE_BYTES,
    ):
        self.root = Path(root).expanduser()
        self.images = self.root / "images"
        self.n_pins = n_pins
        self.min_free_bytes = min_free_bytes
        self.on_state = on_state or (lambda msg: None)
        self.message = ""  # "" while saving works; else why it does not
        self.saved = 0
        self.not_saved = 0
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[Any, str] | None] = queue.Queue(maxsize=max_pending)
        self._thread: threading.Thread | None = None

    # -- state ----------------------------------------------------------------------------------

    def _set_message(self, msg: str) -> None:
        if msg == self.message:
            return
        self.message = msg
        if msg:
            log.error("archive: %s", msg)
        else:
            log.info("archive: saving again to %s", self.root)
        self.on_state(msg)

    # -- saving ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Save submitted results on a writer thread (PNG encoding must not slow inference)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._writer, name="pininspect-archive", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Write what is pending, then end the writer thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def submit(self, result: Any, source: str = "", wait: bool = False) -> bool:
        """Queue an NG result for saving. When the writer is `max_pending` behind, a live line
        (`wait=False`) drops the frame with a state message rather than slow inspection down; a
        recorded source (`wait=True`) waits for room, so a replay archives every NG frame."""
        if self._thread is None:
            self.start()
        try:
            self._queue.put((result, source), block=wait, timeout=10.0 if wait else None)
            return True
        except queue.Full:
            self.not_saved += 1
            if not self.message.startswith("saving is behind"):
                self._set_message("saving is behind: NG frames are not all archived (disk too slow)")
            return False

    def _writer(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            result, source = item
            try:
                self.save(result, source)
            except ArchiveError:
                self.not_saved += 1  # already reported through on_state
            except Exception as e:  # never let a bug end the writer silently
                log.exception("archive writer")
                self.not_saved += 1
                self._set_message(f"cannot save: {e}")

    def save(self, result: Any, source: str = "") -> str:
        """Save one result now (image, then its CSV row); returns the file name under images/."""
        v, frame = result.verdict, result.frame
        now = dt.datetime.now()
        name = f"{now:%Y%m%d-%H%M%S-%f}"[:-3] + f"_{frame.index:06d}_{v.label}_p{int(v.pin):02d}.png"
        row = [
            now.isoformat(timespec="milliseconds"),
            name,
            v.label,
            int(v.pin),
            *(f"{float(v.scores.get(c, float('nan'))):.4f}" for c in CLASSES),
            source,
            *((f"{result.where[0]:.1f}", f"{result.where[1]:.1f}") if getattr(result, "where", None) else ("", "")),
        ]
        try:
            with self._lock:
                self.images.mkdir(parents=True, exist_ok=True)
                free = shutil.disk_usage(self.root).free
                if free < self.min_free_bytes:
                    raise OSError(errno.ENOSPC, f"only {free / 2**20:.0f} MB free")
                ok, png = cv2.imencode(".png", np.ascontiguousarray(frame.image), _PNG)
                if not ok:
                    raise OSError(errno.EIO, "PNG encoding failed")
                self._write_atomic(self.images / name, png.tobytes())
                try:
                    self._append_row(self.root / "flagged.csv", FLAGGED_HEADER, row)
                except OSError:
                    (self.images / name).unlink(missing_ok=True)  # no image without its row
                    raise
        except OSError as e:
            detail = e.strerror if e.errno == errno.ENOSPC and e.strerror and "free" in e.strerror else ""
            msg = f"cannot save NG frames to {self.root}: {_reason(e)}" + (f" ({detail})" if detail else "")
            self._set_message(msg)
            raise ArchiveError(msg) from None
        self.saved += 1
        self._set_message("")
        return name

    @staticmethod
    def _write_atomic(path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".part-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @staticmethod
    def _append_row(path: Path, header: list[str], row: list[Any]) -> None:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        new = not path.exists() or path.stat().st_size == 0
        if new:
            w.writerow(header)
        elif Archive._cut_off(path):  # power lost mid-row: end that row, or the new one is glued onto it
            log.warning("%s: its last row was cut off; ended it so the new row starts on its own line", path)
            buf.write("\n")
        w.writerow(row)
        with open(path, "a", newline="") as f:
            size = f.tell()
            try:
                f.write(buf.getvalue())
                f.flush()
            except OSError:
                f.truncate(size)  # a half-written row would corrupt every later read
                raise

    @staticmethod
    def _cut_off(path: Path) -> bool:
        """Whether the file's last line lacks its newline."""
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"

    # -- reading and relabelling ----------------------------------------------------------------

    def labels(self) -> dict[str, tuple[str, int]]:
        """The reviewed labels, file -> (label, pin)."""
        path = self.root / "labels.csv"
        if not path.exists() or path.stat().st_size == 0:
            return {}
        try:
            rows = read_labels(path, self.n_pins, allow_empty=True)
        except LabelsError as e:
            # refused rather than skipped: a relabel rewrites the file, and must not drop a row
            raise ArchiveError(f"{e}; fix or remove that row") from None
        return {f: (CLASSES[c], pin) for f, (c, pin) in rows.items()}

    def flagged(self) -> list[FlaggedRow]:
        """Every saved NG frame, newest first, with its reviewed label when there is one."""
        path = self.root / "flagged.csv"
        if not path.exists():
            return []
        try:
            reviewed = self.labels()
        except ArchiveError as e:  # the flagged frames stay listable; relabel refuses until it is fixed
            log.warning("%s", e)
            reviewed = {}
        rows = []
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                if not r.get("file"):
                    continue
                scores = {}
                for c in CLASSES:
                    try:
                        scores[c] = float(r.get(f"score_{c}") or "nan")
                    except ValueError:
                        scores[c] = float("nan")
                try:
                    pin = int(r.get("pin") or 0)
                except ValueError:
                    pin = 0
                try:
                    where: tuple[float, float] | None = (float(r["x"]), float(r["y"]))
                except (KeyError, TypeError, ValueError):
                    where = None
                row = FlaggedRow(r["time"], r["file"], r.get("label") or "?", pin, scores, r.get("source") or "")
                row.reviewed, row.where = reviewed.get(r["file"]), where
                rows.append(row)
        return rows[::-1]

    def check_label(self, label: str, pin: int) -> None:
        if label not in CLASSES:
            raise ArchiveError(f"label must be one of {', '.join(CLASSES)}, got {label!r}")
        if label == "OK" and pin != 0:
            raise ArchiveError("an OK part has no defective pin (pin 0)")
        if label != "OK" and not 1 <= pin <= self.n_pins:
            raise ArchiveError(f"a {label} needs its pin, 1..{self.n_pins}")

    def relabel(self, file: str, label: str, pin: int) -> None:
        """Record a person's label for a flagged image in labels.csv (rewritten atomically)."""
        self.check_label(label, pin)
        if Path(file).name != file or not (self.images / file).is_file():
            raise ArchiveError(f"{file}: not an image in {self.images}")
        with self._lock:
            rows = self.labels()
            rows[file] = (label, int(pin))
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(LABELS_HEADER)
            for f, (lab, p) in sorted(rows.items()):
                w.writerow([f, lab, p])
            try:
                self._write_atomic(self.root / "labels.csv", buf.getvalue().encode())
            except OSError as e:
                raise ArchiveError(f"cannot write {self.root / 'labels.csv'}: {_reason(e)}") from None
