"""The live view: the newest frame, scaled to fit, or a plain panel saying why there is none."""

from __future__ import annotations

import numpy as np
from PyQt6.QtCore import QRectF, QSize, Qt
from PyQt6.QtGui import QColor, QFont, QImage, QPainter, QPaintEvent
from PyQt6.QtWidgets import QSizePolicy, QWidget


def to_qimage(bgr: np.ndarray) -> QImage:
    """A QImage owning a copy of a BGR uint8 frame."""
    bgr = np.ascontiguousarray(bgr)
    h, w = bgr.shape[:2]
    return QImage(bgr.data, w, h, bgr.strides[0], QImage.Format.Format_BGR888).copy()  # type: ignore[call-overload]


class VideoView(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._image: QImage | None = None
        self._notice = "Press Start"
        self._notice_colour = QColor(200, 200, 200)
        self.setMinimumSize(320, 240)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:
        return QSize(640, 480)

    def show_frame(self, bgr: np.ndarray) -> None:
        self._image = to_qimage(bgr)
        self._notice = ""
        self.update()

    def show_notice(self, text: str, colour: QColor | None = None, keep_frame: bool = True) -> None:
        """A message over the view (e.g. a camera fault). The last frame stays, dimmed, so no one
        mistakes it for a live picture; `keep_frame=False` clears it."""
        self._notice = text
        self._notice_colour = colour or QColor(230, 230, 230)
        if not keep_frame:
            self._image = None
        self.update()

    @property
    def notice(self) -> str:
        return self._notice

    def paintEvent(self, event: QPaintEvent | None) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(32, 32, 36))
        if self._image is not None:
            iw, ih = self._image.width(), self._image.height()
            s = min(self.width() / iw, self.height() / ih)
            w, h = iw * s, ih * s
            target = QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            p.drawImage(target, self._image)
            if self._notice:
                p.fillRect(target, QColor(0, 0, 0, 160))
        if self._notice:
            f = QFont(self.font())
            f.setPointSize(18)
            f.setBold(True)
            p.setFont(f)
            p.setPen(self._notice_colour)
            p.drawText(
                self.rect().adjusted(20, 20, -20, -20),
                Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                self._notice,
            )
        p.end()
