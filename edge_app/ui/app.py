"""Start the Qt application with the station window."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import QApplication, QMessageBox, QWidget

from edge_app.settings import StationConfig
from edge_app.ui.window import StationWindow

log = logging.getLogger(__name__)
ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], Any]


def slot_error_hook(parent: QWidget | None) -> ExceptHook:
    """sys.excepthook for the window. PyQt6 aborts the process (SIGABRT) when an exception leaves a
    slot and the hook is Python's default; this one logs it with its traceback and tells the operator
    in one message box, and the station keeps running."""
    showing = False

    def hook(etype: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        nonlocal showing
        if issubclass(etype, KeyboardInterrupt):
            sys.__excepthook__(etype, value, tb)
            return
        log.error("unexpected error in the station window", exc_info=(etype, value, tb))
        if showing:  # a slot failing over and over must not stack up message boxes
            return
        showing = True
        try:
            text = f"{etype.__name__}: {value}".splitlines()[0]
            QMessageBox.warning(parent, "pininspect station", f"Unexpected error (the station keeps running):\n{text}")
        finally:
            showing = False

    return hook


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
    sys.excepthook = slot_error_hook(win)
    win.show()
    # Ctrl-C in the terminal closes the window cleanly (Python only sees signals between Qt events)
    signal.signal(signal.SIGINT, lambda *_: win.close())
    tick = QTimer()
    tick.start(200)
    tick.timeout.connect(lambda: None)
    if autostart:
        QTimer.singleShot(0, win.start)
    return int(app.exec())
