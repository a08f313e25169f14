"""The station's archive: the frames worth reviewing as PNG files, indexed in SQLite.

    ARCHIVE/images/<time>_<frame>_<label>_p<pin>.png   each kept frame (the model's verdict in the name)
    ARCHIVE/archive.db    SQLite (WAL): one row per image -- the model's verdict and scores, where it
                          saw the defect, the model version that said so, why the frame was kept
                          (ng, uncertain, ok-sample) -- and every review a person made
    ARCHIVE/labels.csv    file,label,pin,x,y: the reviewed frames (x,y: where a person clicked the
                          pin, when they did), exported from archive.db by each review

`labels.csv` lists only reviewed images, so ARCHIVE is a labelled folder (images/ + labels.csv) that
`training.data` reads as it is: a model's guesses never become training labels by themselves. A
hand edit of labels.csv is read back (and checked) before the next review, so it is not overwritten.

Several processes may write one archive at once (a station, the review dialog, a second station):
every change is one SQLite transaction. A save writes the image to `images/.part-<pid>-<name>`
(locked, fsynced), commits its row, then renames the image into place, so a process killed at any
moment leaves either a temporary file (removed by the next check) or a row whose finished image
only needs its rename (done by the next check). `check()` runs when the writer starts and repairs
or reports, in one line, any difference between rows and images.

Writing never crashes the station and never damages what is already there: a full disk or an
unwritable folder becomes a one-line state (`on_state`) until a later save succeeds. An archive of
an earlier version (flagged.csv) is read into archive.db when first opened; the old file is kept as
flagged.csv.migrated.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import errno
import functools
import io
import logging
import math
import os
import queue
import re
import shutil
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from models.files import atomic_write
from models.labels import LABEL_FIELDS, LabelsError, read_labels
from models.part import CLASSES

try:
    import fcntl
except ImportError:  # not POSIX: temporary files are told apart by age alone
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

DB_FILE = "archive.db"
LABELS_FILE = "labels.csv"
LEGACY_FILE = "flagged.csv"
TEMP_PREFIX = ".part-"
PRUNE_PREFIX = ".pruned-"  # an image on its way out under the size limit (its row is being deleted)
PRUNE_TO = 0.9  # pruning frees space down to this share of the limit, so it runs once in a while
RESCAN_S = 60.0  # how often pruning re-reads the images' size (other processes save too) instead of counting
MIN_FREE_BYTES = 50 * 2**20  # leave the disk to the rest of the PC before it is completely full
BUSY_TIMEOUT_S = 15.0  # how long a writer waits for another process's transaction
TEMP_GRACE_S = 30.0  # without file locks: a temporary file younger than this may be another writer's
# SUB filter + Huffman only: half the time of zlib level 1 at about the same size (~0.45 MB a frame)
_PNG = [
    cv2.IMWRITE_PNG_COMPRESSION,
    1,
    cv2.IMWRITE_PNG_FILTER,
    cv2.IMWRITE_PNG_FILTER_SUB,
    cv2.IMWRITE_PNG_STRATEGY,
    cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
]
NAME_RE = re.compile(r"^(\d{8}-\d{6}-\d{3})_(\d+)_([A-Z]+)_p(\d+)(?:_\d+)?\.png$")
_SCORES = [f"score_{c}" for c in CLASSES]
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS frames (
    id INTEGER PRIMARY KEY,
    file TEXT NOT NULL UNIQUE,
    time TEXT NOT NULL,
    frame INTEGER,
    label TEXT NOT NULL,
    pin INTEGER NOT NULL,
    {", ".join(f"{s} REAL" for s in _SCORES)},
    margin REAL,
    kept TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    x REAL,
    y REAL,
    model TEXT NOT NULL DEFAULT '',
    missing INTEGER NOT NULL DEFAULT 0,
    review_label TEXT,
    review_pin INTEGER,
    review_x REAL,
    review_y REAL,
    reviewed_at TEXT
);
DROP INDEX IF EXISTS frames_uncertain;
CREATE INDEX IF NOT EXISTS frames_by_margin ON frames (ifnull(margin, 1e9), id, review_label, missing);
CREATE INDEX IF NOT EXISTS frames_todo ON frames (review_label, missing);  -- counts what is left
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY,
    file TEXT NOT NULL,
    time TEXT NOT NULL,
    label TEXT,
    pin INTEGER,
    x REAL,
    y REAL,
    origin TEXT NOT NULL
);
"""
# (index to read, order): the margin index holds the review columns, so skipping to a deep page of
# what is left reads the index alone
ORDERS = {"newest": ("", "id DESC"), "uncertain": ("INDEXED BY frames_by_margin", "ifnull(margin, 1e9), id")}


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
    reviewed: tuple[str, int] | None = None  # (label, pin) a person gave
    where: tuple[float, float] | None = None  # frame pixel the model pointed at
    kept: str = "ng"  # why it was kept: ng, uncertain, ok-sample (comma-joined), recovered
    margin: float = math.nan  # distance of the scores to the nearest threshold (small: borderline)
    model: str = ""  # the model version that gave the verdict
    missing: bool = False  # the row's image is gone
    click: tuple[float, float] | None = None  # frame pixel a person clicked as the pin


@dataclass
class KeepPolicy:
    """Which frames are worth keeping beyond the NG ones: every `ok_every`-th OK frame, at most
    `ok_per_hour` of them an hour (0: no cap), and every frame whose scores sit within `margin` of
    a threshold (the borderline ones a person's label teaches most; 0: none)."""

    ok_every: int = 0
    ok_per_hour: int = 0
    margin: float = 0.0
    _ok_seen: int = field(default=0, repr=False)
    _ok_kept: deque[float] = field(default_factory=deque, repr=False)

    @classmethod
    def of(cls, cfg: Any) -> KeepPolicy:
        """The policy a StationConfig sets (archive_ok_every, archive_ok_per_hour, archive_margin)."""
        return cls(cfg.archive_ok_every, cfg.archive_ok_per_hour, cfg.archive_margin)

    def why(self, result: Any, now: float | None = None) -> str:
        """Comma-joined reasons to keep `result` ('' to let it go). Called once per verdict."""
        reasons = []
        if result.verdict.label != "OK":
            reasons.append("ng")
        m = float(getattr(result, "margin", math.nan))
        if self.margin > 0 and m <= self.margin:
            reasons.append("uncertain")
        if not reasons and self.ok_every > 0:
            self._ok_seen += 1
            if self._ok_seen % self.ok_every == 0:
                now = time.monotonic() if now is None else now
                while self._ok_kept and self._ok_kept[0] <= now - 3600.0:
                    self._ok_kept.popleft()
                if not self.ok_per_hour or len(self._ok_kept) < self.ok_per_hour:
                    self._ok_kept.append(now)
                    reasons.append("ok-sample")
        return ",".join(reasons)


@dataclass
class CheckReport:
    """What `Archive.check` found and did; `line()` says it in one line."""

    root: Path
    rows: int = 0  # rows with their image
    images: int = 0
    completed: int = 0  # saves killed between the row and the rename, finished
    temp_removed: int = 0  # temporary files of saves killed before their row
    reindexed: int = 0  # images without a row, given one from their name
    marked_missing: int = 0  # rows whose image is gone
    found_again: int = 0  # rows marked missing whose image is back
    in_progress: int = 0  # another process's saves under way
    unindexed: list[str] = field(default_factory=list)  # images without a row whose name says nothing

    @property
    def consistent(self) -> bool:
        return self.rows == self.images and not self.unindexed

    def line(self) -> str:
        fixed = [
            (self.completed, "unfinished save completed", "unfinished saves completed"),
            (self.temp_removed, "orphan temporary file removed", "orphan temporary files removed"),
            (self.reindexed, "image without a row re-indexed", "images without a row re-indexed"),
            (self.marked_missing, "row marked missing (image gone)", "rows marked missing (image gone)"),
            (self.found_again, "missing image found again", "missing images found again"),
        ]
        done = [f"{n} {one if n == 1 else many}" for n, one, many in fixed if n]
        text = f"archive {self.root}: {self.rows} rows, {self.images} images; "
        text += ("repaired: " + ", ".join(done)) if done else "nothing to repair"
        if self.unindexed:
            text += f"; {len(self.unindexed)} images not indexed (name not understood, e.g. {self.unindexed[0]})"
        if self.in_progress:
            text += f"; {self.in_progress} saves of another process under way"
        return text


def _reason(e: BaseException) -> str:
    if isinstance(e, sqlite3.Error):
        text = str(e)
        if "disk is full" in text or "database or disk is full" in text:
            return "disk full"
        if "readonly" in text or "unable to open" in text:
            return "not writable"
        return f"database: {text}"
    if isinstance(e, OSError):
        if e.errno == errno.ENOSPC:
            return "disk full"
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return "not writable"
        return e.strerror or str(e)
    return str(e)


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


def _stamp(path: Path) -> str:
    """Identifies one version of a file (a rename gives a new inode): '' when there is none."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return ""
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def _lock(fd: int, block: bool) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        return True
    except BlockingIOError:
        return False


def _alive(pid: str) -> bool:
    """Whether process `pid` (of a temporary file's name) still runs on this machine."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (ValueError, OSError):
        return True  # not ours to signal, or not a number: assume it may
    return True


class Archive:
    def __init__(
        self,
        root: Path | str,
        on_state: Callable[[str], None] | None = None,
        n_pins: int | None = None,  # the part's (part_pins); None: unknown (any pin from 1 is taken)
        max_pending: int = 32,
        min_free_bytes: int = MIN_FREE_BYTES,
        keep: KeepPolicy | None = None,
        fsync: bool = True,
        max_bytes: int = 0,
    ):
        """`max_bytes` (0: none) caps the images' size: past it, the oldest unreviewed frames go,
        the OK samples and borderline ones before the NG ones; reviewed frames are never removed."""
        self.root = Path(root).expanduser()
        self.images = self.root / "images"
        self.db_path = self.root / DB_FILE
        self.n_pins = n_pins
        self.min_free_bytes = min_free_bytes
        self.keep = keep or KeepPolicy()
        self.fsync = fsync
        self.on_state = on_state or (lambda msg: None)
        self.message = ""  # "" while saving works; else why it does not
        self._published = ""  # what on_state was last told
        self.saved = 0
        self.saved_by: Counter[str] = Counter()  # saves per reason kept (ng, uncertain, ok-sample)
        self.not_saved = 0
        self.max_bytes = max_bytes
        self.pruned = 0
        self.limit_note = ""  # set when only reviewed frames are left over the limit
        self._bytes: int | None = None  # the images' size, scanned when first needed
        self._scanned = -math.inf  # time.monotonic() of the last scan
        self.last_check: CheckReport | None = None
        self._local = threading.local()  # one SQLite connection per thread
        self._open_lock = threading.Lock()
        self._ready = False
        self._queue: queue.Queue[tuple[Any, str, str] | None] = queue.Queue(maxsize=max_pending)
        self._thread: threading.Thread | None = None

    # -- the database ---------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        """This thread's connection; the first one creates the schema and migrates flagged.csv."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        self.images.mkdir(parents=True, exist_ok=True)
        conn = self._local.conn = self._connect()
        with self._open_lock:
            if not self._ready:
                try:
                    self._create()
                except BaseException:
                    self._close_db()
                    raise
                self._ready = True
        return conn

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")  # readers never wait for a writer
        conn.execute("PRAGMA synchronous = NORMAL")  # WAL: a killed process loses nothing committed
        conn.row_factory = sqlite3.Row
        return conn

    def _create(self) -> None:
        with self._write() as c:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    c.execute(stmt)
        if (self.root / LEGACY_FILE).exists():
            self._migrate()
        try:  # the reviews of an archive of the CSV version, or a hand edit made while closed
            with self._write() as c:
                self._import_labels(c)
        except ArchiveError as e:  # frames still save; a review is refused until the file is fixed
            log.warning("%s", e)

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE) so it never deadlocks on upgrade."""
        conn = getattr(self._local, "conn", None) or self._db()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _close_db(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _meta(self, conn: sqlite3.Connection, key: str) -> str:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else ""

    @staticmethod
    def _set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- state ----------------------------------------------------------------------------------

    def _set_message(self, msg: str) -> None:
        if msg == self.message:
            return
        self.message = msg
        if msg:
            log.error("archive: %s", msg)
        else:
            log.info("archive: saving again to %s", self.root)
        self._publish()

    def _publish(self) -> None:
        """Tell `on_state` (the window, the PLC's FaultCode) what is wrong: a save that failed, else
        a size limit that only reviewed frames fill; "" when both are over."""
        state = self.message or self.limit_note
        if state != self._published:
            self._published = state
            self.on_state(state)

    def _set_limit_note(self, note: str) -> None:
        if note != self.limit_note:
            self.limit_note = note
            if note:
                log.warning("archive %s: %s", self.root, note)
            self._publish()

    def summary(self) -> str:
        """'N NG frames saved to ROOT', and what else was kept this session and why."""
        ng = self.saved_by.get("ng", 0)
        others = {k: n for k, n in self.saved_by.items() if k != "ng"}
        text = f"{ng} NG frames saved to {self.root}"
        if others:
            text += " (also kept for review: " + ", ".join(f"{n} {k}" for k, n in sorted(others.items())) + ")"
        if self.pruned:
            text += f"; {self.pruned} older unreviewed frames removed to stay under {self.max_bytes / 1e9:g} GB"
        if self.limit_note:
            text += f"; {self.limit_note}"
        return text

    # -- saving ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Save submitted results on a writer thread (PNG encoding must not slow inference); it
        checks the archive first (see `check`)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._writer, name="pininspect-archive", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Write what is pending, then end the writer thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None
        self._close_db()

    def submit(self, result: Any, source: str = "", wait: bool = False) -> bool:
        """Offer a verdict for saving; the keep policy says whether it is worth it (every NG frame,
        plus the OK and borderline frames it is set to keep). When the writer is `max_pending`
        behind, a live line (`wait=False`) drops the frame with a state message rather than slow
        inspection down; a recorded source (`wait=True`) waits for room, so a replay loses none.
        True when queued."""
        kept = self.keep.why(result)
        if not kept:
            return False
        if self._thread is None:
            self.start()
        try:
            self._queue.put((result, source, kept), block=wait, timeout=10.0 if wait else None)
            return True
        except queue.Full:
            self.not_saved += 1
            if not self.message.startswith("saving is behind"):
                self._set_message("saving is behind: frames are not all archived (disk too slow)")
            return False

    def _writer(self) -> None:
        try:
            self.check()
        except Exception as e:  # reported; saving is tried anyway and reports its own failures
            log.warning("archive %s: check failed: %s", self.root, _reason(e))
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                result, source, kept = item
                try:
                    self.save(result, source, kept)
                except ArchiveError:
                    self.not_saved += 1  # already reported through on_state
                except Exception as e:  # never let a bug end the writer silently
                    log.exception("archive writer")
                    self.not_saved += 1
                    self._set_message(f"cannot save: {e}")
        finally:
            self._close_db()

    def save(self, result: Any, source: str = "", kept: str = "") -> str:
        """Save one result now: image to a locked temporary file, its row committed, then the image
        renamed into place. Returns the file name under images/."""
        v, frame = result.verdict, result.frame
        kept = kept or ("ng" if v.label != "OK" else "saved")
        now = dt.datetime.now()
        name = f"{now:%Y%m%d-%H%M%S-%f}"[:-3] + f"_{frame.index:06d}_{v.label}_p{int(v.pin):02d}.png"
        where = getattr(result, "where", None)
        values = {
            "time": now.isoformat(timespec="milliseconds"),
            "frame": int(frame.index),
            "label": v.label,
            "pin": int(v.pin),
            **{f"score_{c}": _finite(v.scores.get(c)) for c in CLASSES},
            "margin": _finite(getattr(result, "margin", None)),
            "kept": kept,
            "source": source,
            "x": float(f"{where[0]:.1f}") if where else None,
            "y": float(f"{where[1]:.1f}") if where else None,
            "model": str(getattr(result, "model", "") or ""),
        }
        try:
            conn = self._db()
            free = shutil.disk_usage(self.root).free
            if free < self.min_free_bytes:
                raise OSError(errno.ENOSPC, f"only {free / 2**20:.0f} MB free")
            ok, png = cv2.imencode(".png", np.ascontiguousarray(frame.image), _PNG)
            if not ok:
                raise OSError(errno.EIO, "PNG encoding failed")
            name = self._store(conn, name, png.tobytes(), values)
            if self._bytes is not None:  # counted once known, limit or not, so a limit set later starts right
                self._bytes += len(png)
            if self.max_bytes and self._bytes is None:
                self._bytes = self._images_bytes()
            if self.max_bytes and self._bytes is not None and self._bytes > self.max_bytes:
                self.prune()
            else:
                self._set_limit_note("")  # under the limit (or none) again
        except (OSError, sqlite3.Error) as e:
            detail = e.strerror if isinstance(e, OSError) and e.errno == errno.ENOSPC and "free" in str(e) else ""
            msg = f"cannot save NG frames to {self.root}: {_reason(e)}" + (f" ({detail})" if detail else "")
            self._set_message(msg)
            raise ArchiveError(msg) from None
        self.saved += 1
        for reason in kept.split(","):
            self.saved_by[reason] += 1
        self._set_message("")
        return name

    def _store(self, conn: sqlite3.Connection, name: str, data: bytes, values: dict[str, Any]) -> str:
        tmp = self.images / f"{TEMP_PREFIX}{os.getpid()}-{name}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _lock(fd, block=True)  # held until the rename: another process's check leaves it alone
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if self.fsync:
                    os.fsync(fd)
                with self._write() as c:
                    if c.execute("SELECT 1 FROM frames WHERE file = ?", (name,)).fetchone():
                        # another station saved the same frame number in the same millisecond
                        name = name[:-4] + f"_{os.getpid()}.png"
                        new_tmp = self.images / f"{TEMP_PREFIX}{os.getpid()}-{name}"
                        os.replace(tmp, new_tmp)
                        tmp = new_tmp
                    cols = ["file", *values]
                    c.execute(
                        f"INSERT INTO frames ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                        [name, *values.values()],
                    )
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            # committed: from here a kill leaves a row and its finished image, which check() renames
            try:
                os.replace(tmp, self.images / name)
            except FileNotFoundError:
                if not (self.images / name).exists():  # taken away under us: no row without its image
                    with self._write() as c:
                        c.execute("DELETE FROM frames WHERE file = ?", (name,))
                    raise
        finally:
            os.close(fd)
        return name

    # -- the size limit -------------------------------------------------------------------------

    def _images_bytes(self) -> int:
        self._scanned = time.monotonic()
        return sum(
            e.stat().st_size for e in os.scandir(self.images) if e.name.endswith(".png") and not e.name.startswith(".")
        )

    def prune(self, batch: int = 100) -> int:
        """Remove the oldest unreviewed frames until the images take at most PRUNE_TO of
        `max_bytes`: OK samples and borderline frames first, then NG ones; reviewed frames (a
        person's labels: the next training's data) stay. Each image is renamed out of the way
        before its row is deleted, so a kill leaves nothing `check` cannot tidy. Returns how many
        went."""
        if not self.max_bytes:
            self._set_limit_note("")
            return 0
        conn = self._db()
        # counted since the last scan, re-read once a minute: over the limit with reviewed frames only
        # every save prunes, and a scan of a large archive on each save would slow the writer
        stale = self._bytes is None or time.monotonic() - self._scanned > RESCAN_S
        total = self._images_bytes() if stale or self._bytes is None else self._bytes
        target, gone = int(self.max_bytes * PRUNE_TO), 0
        if total > target:
            try:  # a label a person added to labels.csv by hand counts as reviewed: take it in first
                with self._write() as c:
                    self._import_labels(c)
            except ArchiveError as e:  # unreadable: which frames are labelled is unknown, so none goes
                self._set_limit_note(f"over its {self.max_bytes / 1e9:g} GB limit, nothing removed: {e}")
                self._bytes = total
                return 0
        while total > target:
            files = [
                r[0]
                for r in conn.execute(
                    "SELECT file FROM frames WHERE review_label IS NULL AND missing = 0 "
                    "ORDER BY (',' || kept || ',') LIKE '%,ng,%', id LIMIT ?",
                    (batch,),
                )
            ]
            if not files:
                note = (
                    f"over its {self.max_bytes / 1e9:g} GB limit with reviewed frames only: new frames are removed as "
                    "they come until the reviewed ones are moved out (a labelled folder) or the limit is raised"
                )
                self._set_limit_note(note)
                break
            moved = []
            for f in files:  # oldest first, only as many as it takes
                src, dst = self.images / f, self.images / f"{PRUNE_PREFIX}{f}"
                try:
                    size = src.stat().st_size
                    os.replace(src, dst)
                except FileNotFoundError:
                    size = 0  # gone already: its row goes all the same
                moved.append((f, dst))
                total -= size
                if total <= target:
                    break
            with self._write() as c:
                c.executemany("DELETE FROM frames WHERE file = ?", [(f,) for f, _ in moved])
            for _, dst in moved:
                dst.unlink(missing_ok=True)
            gone += len(moved)
        else:
            self._set_limit_note("")
        self.pruned += gone
        self._bytes = total
        return gone

    # -- the startup check ----------------------------------------------------------------------

    def check(self) -> CheckReport:
        """Make rows and images agree after a crash, a kill or a hand edit, and say so in one line
        (logged, and kept as `last_check`): temporary files of killed saves are removed or, when
        their row was committed, renamed into place; images without a row get one from their name
        (kept = recovered); rows without an image are marked missing. Safe while other processes
        write: their locked temporary files are left alone."""
        conn = self._db()
        rep = CheckReport(self.root)
        entries = {e.name: e for e in os.scandir(self.images)}
        files = {n for n, e in entries.items() if not n.startswith(".") and n.lower().endswith(".png")}
        rows = {r[0]: bool(r[1]) for r in conn.execute("SELECT file, missing FROM frames")}
        now = time.time()
        grace = TEMP_GRACE_S if fcntl is None else 1.0
        for n, e in entries.items():
            if n.startswith(PRUNE_PREFIX):  # a prune killed before it finished: its row is, or is about to be, gone
                os.unlink(e.path)
                rep.temp_removed += 1
                continue
            if not n.startswith(TEMP_PREFIX):
                continue
            pid, _, target = n[len(TEMP_PREFIX) :].partition("-")
            try:
                fd = os.open(e.path, os.O_RDONLY)
            except FileNotFoundError:
                continue  # its writer just finished
            try:
                if not _lock(fd, block=False):
                    rep.in_progress += 1
                    continue
                committed = target in rows or bool(
                    conn.execute("SELECT 1 FROM frames WHERE file = ?", (target,)).fetchone()
                )
                if committed and target not in files:
                    os.replace(e.path, self.images / target)
                    files.add(target)
                    rows.setdefault(target, False)
                    rep.completed += 1
                    continue
                if not committed and now - e.stat().st_mtime <= grace and _alive(pid):
                    rep.in_progress += 1  # its writer between creating and locking it (or no locks here)
                    continue
                os.unlink(e.path)  # unlocked: its writer was killed before its row (a live one holds the lock)
                rep.temp_removed += 1
            finally:
                os.close(fd)
        orphans = sorted(files - set(rows))
        gone = [f for f, missing in rows.items() if not missing and f not in files]
        back = [f for f, missing in rows.items() if missing and f in files]
        if orphans or gone or back:
            with self._write() as c:
                for f in orphans:
                    m = NAME_RE.match(f)
                    if m is None:
                        rep.unindexed.append(f)
                        continue
                    stamp, index, label, pin = m.groups()
                    t = dt.datetime.strptime(stamp, "%Y%m%d-%H%M%S-%f").isoformat(timespec="milliseconds")
                    c.execute(
                        "INSERT OR IGNORE INTO frames (file, time, frame, label, pin, kept) VALUES (?, ?, ?, ?, ?, ?)",
                        (f, t, int(index), label if label in CLASSES else "?", int(pin), "recovered"),
                    )
                    rep.reindexed += 1
                for f in gone:
                    # a save of another process may have renamed its image since the listing
                    if (self.images / f).exists() or any(self.images.glob(f"{TEMP_PREFIX}*-{f}")):
                        continue
                    c.execute("UPDATE frames SET missing = 1 WHERE file = ?", (f,))
                    rep.marked_missing += 1
                for f in back:
                    c.execute("UPDATE frames SET missing = 0 WHERE file = ?", (f,))
                    rep.found_again += 1
        rep.rows = conn.execute("SELECT count(*) FROM frames WHERE missing = 0").fetchone()[0]
        rep.images = sum(1 for n in os.listdir(self.images) if not n.startswith(".") and n.lower().endswith(".png"))
        self.last_check = rep
        (log.info if rep.consistent and not (rep.completed or rep.temp_removed) else log.warning)("%s", rep.line())
        return rep

    # -- migration from flagged.csv -------------------------------------------------------------

    def _migrate(self) -> None:
        """Read an earlier archive's flagged.csv into archive.db (a row cut off by a power loss is
        skipped; its image is re-indexed by the next check), then keep the file as .migrated."""
        path = self.root / LEGACY_FILE
        added = bad = 0
        try:
            f = open(path, newline="", encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return  # another process migrated it a moment ago
        with f:
            reader = csv.reader(f)
            header = next(reader, None) or []
            with self._write() as c:
                for r in reader:
                    rec = dict(zip(header, r, strict=False))
                    file = rec.get("file", "")
                    if len(r) != len(header) or not NAME_RE.match(file) or rec.get("label") not in CLASSES:
                        bad += 1
                        continue
                    try:
                        values = (
                            file,
                            rec["time"],
                            int(NAME_RE.match(file).group(2)),  # type: ignore[union-attr]
                            rec["label"],
                            int(rec.get("pin") or 0),
                            *(_finite(_float(rec.get(s))) for s in _SCORES),
                            rec.get("source", ""),
                            _finite(_float(rec.get("x"))),
                            _finite(_float(rec.get("y"))),
                        )
                    except ValueError:
                        bad += 1
                        continue
                    cur = c.execute(
                        f"INSERT OR IGNORE INTO frames (file, time, frame, label, pin, {', '.join(_SCORES)}, "
                        "source, x, y, kept) VALUES (" + ", ".join("?" * (8 + len(_SCORES))) + ", 'ng')",
                        values,
                    )
                    added += cur.rowcount
        dest = path.with_name(LEGACY_FILE + ".migrated")
        n = 1
        while dest.exists():
            n += 1
            dest = path.with_name(f"{LEGACY_FILE}.migrated{n}")
        try:
            os.replace(path, dest)
        except FileNotFoundError:
            return
        log.warning(
            "archive %s: %d rows read from %s into %s%s; the old file is kept as %s",
            self.root, added, LEGACY_FILE, DB_FILE, f" ({bad} malformed rows skipped)" if bad else "", dest.name,
        )  # fmt: skip

    # -- reading --------------------------------------------------------------------------------

    def _row(self, r: sqlite3.Row) -> FlaggedRow:
        return FlaggedRow(
            time=r["time"],
            file=r["file"],
            label=r["label"],
            pin=int(r["pin"]),
            scores={c: _num(r[f"score_{c}"]) for c in CLASSES},
            source=r["source"] or "",
            reviewed=(r["review_label"], int(r["review_pin"] or 0)) if r["review_label"] else None,
            where=(r["x"], r["y"]) if r["x"] is not None and r["y"] is not None else None,
            kept=r["kept"],
            margin=_num(r["margin"]),
            model=r["model"] or "",
            missing=bool(r["missing"]),
            click=(r["review_x"], r["review_y"]) if r["review_x"] is not None else None,
        )

    def _read(self, query: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        if not self.db_path.exists() and not (self.root / LEGACY_FILE).exists():
            return []  # reading never creates an archive
        try:
            return self._db().execute(query, args).fetchall()
        except (OSError, sqlite3.Error) as e:
            raise ArchiveError(f"cannot read the archive {self.db_path}: {_reason(e)}") from None

    def flagged(self) -> list[FlaggedRow]:
        """Every saved frame, newest first, with its reviewed label when there is one."""
        return [self._row(r) for r in self._read("SELECT * FROM frames ORDER BY id DESC")]

    def page(self, offset: int = 0, limit: int = 100, order: str = "newest", todo: bool = False) -> list[FlaggedRow]:
        """`limit` rows from `offset` on, newest first or most uncertain first (`order`); `todo`:
        only the frames nobody has reviewed yet. Reads only those rows, so a large archive pages."""
        where = "WHERE review_label IS NULL AND missing = 0" if todo else ""
        index, by = ORDERS[order]
        q = f"SELECT * FROM frames {index} {where} ORDER BY {by} LIMIT ? OFFSET ?"
        return [self._row(r) for r in self._read(q, (int(limit), int(offset)))]

    def count(self, todo: bool = False) -> int:
        """How many frames the archive holds; `todo`: how many are left to review."""
        where = " WHERE review_label IS NULL AND missing = 0" if todo else ""
        rows = self._read(f"SELECT count(*) FROM frames{where}")
        return int(rows[0][0]) if rows else 0

    def labels(self) -> dict[str, tuple[str, int]]:
        """The reviewed labels, file -> (label, pin); a hand edit of labels.csv is read in first."""
        if not self.db_path.exists() and not (self.root / LABELS_FILE).exists():
            return {}
        try:
            conn = self._db()
            if _stamp(self.root / LABELS_FILE) != self._meta(conn, "labels_stamp"):
                with self._write() as c:
                    self._import_labels(c)
            rows = conn.execute("SELECT file, review_label, review_pin FROM frames WHERE review_label IS NOT NULL")
            return {f: (lab, int(p or 0)) for f, lab, p in rows}
        except (OSError, sqlite3.Error) as e:
            raise ArchiveError(f"cannot read the archive {self.db_path}: {_reason(e)}") from None

    def model_versions(self) -> dict[str, int]:
        """Frames kept per model version, the versions as the verdicts recorded them."""
        return {r[0]: r[1] for r in self._read("SELECT model, count(*) FROM frames GROUP BY model ORDER BY 2 DESC")}

    # -- reviewing ------------------------------------------------------------------------------

    def check_label(self, label: str, pin: int) -> None:
        if label not in CLASSES:
            raise ArchiveError(f"label must be one of {', '.join(CLASSES)}, got {label!r}")
        if label == "OK" and pin != 0:
            raise ArchiveError("an OK part has no defective pin (pin 0)")
        if label != "OK" and not 1 <= pin <= (self.n_pins or pin):
            raise ArchiveError(f"a {label} needs its pin, 1..{self.n_pins or 'n'}")

    def relabel(self, file: str, label: str, pin: int, click: tuple[float, float] | None = None) -> None:
        """Record a person's label for an archived image (and, when they clicked the pin on the
        frame, where): one transaction, which also exports labels.csv, so two processes reviewing
        at once lose nothing."""
        self.check_label(label, pin)
        if Path(file).name != file or not (self.images / file).is_file():
            raise ArchiveError(f"{file}: not an image in {self.images}")
        now = dt.datetime.now().isoformat(timespec="milliseconds")
        if label == "OK":
            click = None  # an OK part has no defective pin to point at
        cx, cy = (float(click[0]), float(click[1])) if click is not None else (None, None)
        try:
            with self._write() as c:
                self._import_labels(c)  # a hand edit first, or the export below would undo it
                if not c.execute("SELECT 1 FROM frames WHERE file = ?", (file,)).fetchone():
                    raise ArchiveError(f"{file}: not indexed in {self.db_path} (run the archive check)")
                self._review(c, file, label, int(pin), cx, cy, now, "review")
                self._export_labels(c)
        except LabelsError as e:
            raise ArchiveError(f"{e}; fix or remove that row") from None
        except (OSError, sqlite3.Error) as e:
            if isinstance(e, ArchiveError):
                raise
            raise ArchiveError(f"cannot write {self.root / LABELS_FILE}: {_reason(e)}") from None

    @staticmethod
    def _review(
        c: sqlite3.Connection, file: str, label: str | None, pin: int | None, x: Any, y: Any, now: str, origin: str
    ) -> None:
        c.execute(
            "UPDATE frames SET review_label = ?, review_pin = ?, review_x = ?, review_y = ?, reviewed_at = ? "
            "WHERE file = ?",
            (label, pin, x, y, now if label else None, file),
        )
        c.execute(
            "INSERT INTO reviews (file, time, label, pin, x, y, origin) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (file, now, label, pin, x, y, origin),
        )

    def _import_labels(self, c: sqlite3.Connection) -> None:
        """Inside a write transaction: take in labels.csv when it is not the file the last export
        wrote (edited by hand, or the archive of an earlier version). Raises LabelsError as
        `labels.csv:LINE: what is wrong`; nothing changes then."""
        path = self.root / LABELS_FILE
        stamp = _stamp(path)
        if stamp == self._meta(c, "labels_stamp"):
            return
        if not stamp:  # removed by hand: the reviews stay in archive.db, and the next export restores it
            return
        try:
            rows = read_labels(path, self.n_pins, allow_empty=True)
        except LabelsError as e:
            raise ArchiveError(f"{e}; fix or remove that row") from None
        now = dt.datetime.now().isoformat(timespec="milliseconds")
        current = {
            f: (lab, int(p or 0))
            for f, lab, p in c.execute(
                "SELECT file, review_label, review_pin FROM frames WHERE review_label IS NOT NULL"
            )
        }
        for f, (k, pin) in rows.items():
            if current.get(f) == (CLASSES[k], pin):
                continue
            if not c.execute("SELECT 1 FROM frames WHERE file = ?", (f,)).fetchone():
                log.warning("%s: %s is not an archived frame; left out of %s", path, f, DB_FILE)
                continue
            self._review(c, f, CLASSES[k], pin, None, None, now, "labels.csv")
        for f in set(current) - set(rows):
            self._review(c, f, None, None, None, None, now, "labels.csv")
        self._set_meta(c, "labels_stamp", stamp)

    def _export_labels(self, c: sqlite3.Connection) -> None:
        """Inside the write transaction that changed a review: labels.csv as archive.db has it
        (no other process can commit in between, so the file is never an older export)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(LABEL_FIELDS)
        rows = c.execute(
            "SELECT file, review_label, review_pin, review_x, review_y FROM frames "
            "WHERE review_label IS NOT NULL ORDER BY file"
        )
        w.writerows((f, lab, pin, _pixel(x), _pixel(y)) for f, lab, pin, x, y in rows)
        path = self.root / LABELS_FILE
        atomic_write(path, buf.getvalue().encode(), fsync=self.fsync)
        self._set_meta(c, "labels_stamp", _stamp(path))

    def export_labels(self) -> Path:
        """Write labels.csv from archive.db now (after a restore, or when it was removed)."""
        try:
            with self._write() as c:
                self._import_labels(c)
                self._export_labels(c)
        except (OSError, sqlite3.Error) as e:
            if isinstance(e, ArchiveError):
                raise
            raise ArchiveError(f"cannot write {self.root / LABELS_FILE}: {_reason(e)}") from None
        return self.root / LABELS_FILE


def _pixel(v: float | None) -> str:
    return "" if v is None else f"{v:.1f}"


def _float(v: Any) -> float | None:
    return float(v) if v not in (None, "") else None


def _finite(v: Any) -> float | None:
    """A number SQLite can index and compare (NaN is stored as NULL)."""
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


@functools.lru_cache(maxsize=4)
def nominal_pins(part: str = "default") -> np.ndarray:
    """(P, 2) frame pixel of each pin's tip, averaged over the camera poses the part spec allows."""
    from models.part import load_part
    from models.synth.render import ground_truth, sample_params

    spec = load_part(part)
    rng = np.random.default_rng(0)
    tips = [
        np.array(ground_truth(spec, sample_params(spec, rng, "OK", 0, "photo", widen=1.0))["pins"])[:, 2:4]
        for _ in range(32)
    ]
    return np.mean(tips, axis=0)


def part_pins(part: str) -> int | None:
    """How many pins the station's part has (for checking reviews); None when the part file does
    not load (the model load then says why)."""
    from models.part import PartSpecError, load_part

    try:
        return load_part(part).n_pins
    except (PartSpecError, OSError, ValueError):
        return None


def pin_at(
    xy: tuple[float, float], anchor: tuple[int, tuple[float, float]] | None = None, part: str = "default"
) -> int:
    """The pin nearest frame pixel `xy` (a person's click on the frame). `anchor` (pin, pixel):
    where the model located a pin in this frame; the part's grid is moved to put it there, which
    takes out most of the pose's shift."""
    pins = nominal_pins(part)
    if anchor is not None:
        pin, where = anchor
        pins = pins + (np.asarray(where, np.float64) - pins[pin - 1])
    return int(np.argmin(((pins - np.asarray(xy, np.float64)) ** 2).sum(1))) + 1
