"""Start the Qt application with the station window."""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import QApplication

from edge_app.settings import StationConfig
from edge_app.ui.window import StationWindow


def run_window(
    cfg: StationConfig,
    config_path: Path | None,
    warnings: Sequence[str] = (),
    autostart: bool = True,
    file_config: StationConfig | None = None,
) -> int:
    """Open the window and, unless the model failed to load, start inspecting right away: a line
    worker should see verdicts without knowing which button to press first."""
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("pininspect station")
    win = StationWindow(cfg, config_path, warnings, file_config=file_config)
    win.show()
    # Ctrl-C in the terminal closes the window cleanly (Python only sees signals between Qt events)
    signal.signal(signal.SIGINT, lambda *_: win.close())
    tick = QTimer()
    tick.start(200)
    tick.timeout.connect(lambda: None)
    if autostart:
        QTimer.singleShot(0, win.start)
    return int(app.exec())
