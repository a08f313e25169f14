"""Writing a file so that a reader never sees half of it: a temporary file beside it, then a rename.

A crash, a full disk or a pulled plug mid-write leaves the previous file whole (and no stray
temporary file where the write failed in this process). Standard library only: the station, the
training commands and the Blender renderer's interpreter all use it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def atomic_write(path: Path | str, data: str | bytes, fsync: bool = False, newline: str | None = None) -> None:
    """Replace `path` with `data` in one step. `fsync` also flushes it to the disk before the rename
    (what survives a power cut, not only a crash). Raises OSError; the old file is then unchanged."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        if isinstance(data, str):
            f = os.fdopen(fd, "w", encoding="utf-8", newline=newline)
        else:
            f = os.fdopen(fd, "wb")
        with f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # on a read-only or full disk the clean-up may fail too
            os.unlink(tmp)
        raise
