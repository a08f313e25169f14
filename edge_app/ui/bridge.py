"""Worker-thread callbacks -> Qt signals, without letting a fast pipeline flood the GUI.

Results are coalesced: the bridge keeps only the newest and emits `resultReady` when the GUI has
taken the previous one, so the event queue holds at most one pending result however fast the
model runs (latest frame wins, up to the screen). The counters miss nothing: they are kept in
the core's Stats, not counted from signals.
"""

from __future__ import annotations

import threading
from typing import Any

from PyQt6.QtCore import QObject, pyqtSignal


class Bridge(QObject):
    resultReady = pyqtSignal()  # take it with take_result()
    statusChanged = pyqtSignal(object)  # edge_app.pipeline.Status
    message = pyqtSignal(int, str)  # logging level, text
    archiveState = pyqtSignal(str)  # "" when saving works

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._lock = threading.Lock()
        self._latest: Any = None
        self._pending = False

    # called on worker threads
    def on_result(self, result: Any) -> None:
        with self._lock:
            self._latest = result
            if self._pending:
                return
            self._pending = True
        self.resultReady.emit()

    def on_status(self, status: Any) -> None:
        self.statusChanged.emit(status)

    def on_message(self, level: int, text: str) -> None:
        self.message.emit(level, text)

    def on_archive(self, text: str) -> None:
        self.archiveState.emit(text)

    # called on the GUI thread
    def take_result(self) -> Any:
        with self._lock:
            result, self._latest, self._pending = self._latest, None, False
            return result
