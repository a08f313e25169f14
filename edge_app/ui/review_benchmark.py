"""How long the review dialog takes to open on a large archive (a benchmark, not a test).

  python -m edge_app.ui.review_benchmark                 # 100,000 rows, 3 runs
  python -m edge_app.ui.review_benchmark --rows 1000000

Fills a throwaway archive index with `--rows` flagged frames (rows only: the dialog reads images
one page at a time), then times opening the dialog until its first page shows. Runs offscreen
when no display is set.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from models.cpu import cpu_name, isa_text


def fill(root: Path, rows: int) -> None:
    from edge_app.archive import Archive

    a = Archive(root)
    a.count()  # creates archive.db
    conn = a._db()
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO frames (file, time, frame, label, pin, score_BENDNG, score_NUKENG, score_OK, margin, kept) "
        "VALUES (?, ?, ?, 'BENDNG', 3, 0.6, 0.2, 0.2, ?, 'ng')",
        ((f"20250101-000000-000_{i:06d}_BENDNG_p03.png", "2025-01-01T00:00:00", i, (i * 7919 % 1000) / 1000)
         for i in range(rows)),
    )  # fmt: skip
    conn.execute("COMMIT")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edge_app.ui.review_benchmark", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000, help="archive rows (default 100000)")
    ap.add_argument("--runs", type=int, default=3, help="times the dialog is opened (default 3)")
    args = ap.parse_args(argv)
    if args.rows < 1 or args.runs < 1:
        ap.error("--rows and --runs must be at least 1")
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PyQt6.QtWidgets import QApplication

    from edge_app.archive import Archive
    from edge_app.ui.dialogs import ReviewDialog

    app = QApplication.instance() or QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "archive"
        print(f"filling an archive with {args.rows} rows...", file=sys.stderr)
        fill(root, args.rows)
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            dlg = ReviewDialog(Archive(root))
            app.processEvents()
            times.append(time.perf_counter() - t0)
            shown = dlg.table.rowCount()
            dlg.deleteLater()
    print(f"| rows | first page | open, median of {args.runs} | slowest | CPU |")
    print("|---|---|---|---|---|")
    cpu = f"{cpu_name()} ({isa_text()})"
    print(f"| {args.rows} | {shown} rows | {statistics.median(times):.3f} s | {max(times):.3f} s | {cpu} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
