"""Screenshot of the station for the docs: the window on the simulator, caught on a defect the
model found (right class and pin, so the picture does not flatter a wrong verdict).

    python -m edge_app.ui.screenshot docs/img/station.png [--model DIR] [--heatmap]

Needs a display (or QT_QPA_PLATFORM=offscreen, or xvfb-run). Writes PNG, or JPEG for a .jpg name.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import QApplication

from edge_app.settings import StationConfig
from edge_app.ui.window import StationWindow


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edge_app.ui.screenshot", description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="PNG file to write")
    ap.add_argument("--model", default="", help="bundle folder (default: the shipped model)")
    ap.add_argument("--heatmap", action="store_true", help="with the heatmap overlay on")
    ap.add_argument("--size", default="1280x800", help="window size, WxH")
    ap.add_argument("--after", type=int, default=40, help="verdicts to let pass first (counters fill up)")
    ap.add_argument("--timeout", type=float, default=120, help="give up after this many seconds")
    ap.add_argument("--seed", type=int, default=3, help="seed of the simulated line (default: %(default)s)")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))

    app = QApplication.instance() or QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory() as tmp:
        cfg = StationConfig(
            source="sim",
            model=args.model,
            sim_fps=20,
            sim_pool=64,
            sim_defect_rate=0.3,
            sim_seed=args.seed,
            archive_dir=tmp,
        )
        win = StationWindow(cfg, None)
        win.resize(w, h)
        win.show()
        win.heatmap_box.setChecked(args.heatmap)
        outcome: dict[str, Any] = {"code": 1}

        def on_verdict(r: Any) -> None:
            t, v = r.frame.truth, r.verdict
            if win.station.stats.n < args.after or v.label == "OK" or t is None:
                return
            if (v.label, v.pin) != (t.label, t.pin):
                return
            win.verdictShown.disconnect(on_verdict)
            # freeze this frame and the numbers on screen (stopping would show the STOPPED state)
            win.bridge.resultReady.disconnect(win._show_result)
            win._refresh_numbers()
            win._timer.stop()
            QTimer.singleShot(300, grab)

        def grab() -> None:
            img = win.grab().toImage()
            fmt = "JPG" if args.out.suffix.lower() in (".jpg", ".jpeg") else "PNG"
            args.out.parent.mkdir(parents=True, exist_ok=True)
            ok = img.save(str(args.out), fmt, 88 if fmt == "JPG" else 0)  # PNG: 0 = smallest file
            print(f"{'wrote' if ok else 'could not write'} {args.out}", file=sys.stderr)
            outcome["code"] = 0 if ok else 1
            win.close()
            app.quit()

        def give_up() -> None:
            print(f"no correctly found defect within {args.timeout:.0f} s: {win.problems()}", file=sys.stderr)
            win.close()
            app.quit()

        win.verdictShown.connect(on_verdict)
        QTimer.singleShot(int(args.timeout * 1000), give_up)
        QTimer.singleShot(0, win.start)
        app.exec()
        win.station.close()
    return int(outcome["code"])


if __name__ == "__main__":
    sys.exit(main())
