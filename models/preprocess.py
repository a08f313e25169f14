"""The one preprocessing definition: frame -> model input, and pin coordinates -> token grid.

Training, export and the station all call `preprocess` with the `InputSpec` that travels with
the model (in the checkpoint, the ONNX metadata, the OpenVINO rt_info and bundle.json), so the
crop, resize and normalisation can never drift apart. numpy + OpenCV only.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np


@dataclass(frozen=True)
class InputSpec:
    frame_width: int = 640
    frame_height: int = 480
    crop: tuple[int, int, int, int] = (0, 48, 640, 432)  # x0, y0, x1, y1 in frame pixels
    width: int = 320  # model input
    height: int = 192
    patch: int = 16  # one output token per patch x patch input pixels
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # RGB, on 0..1
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, cols) of the output token grid."""
        return self.height // self.patch, self.width // self.patch

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        d = dict(d)
        for k in ("crop", "mean", "std"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)

    def frame_to_input(self, xy: np.ndarray) -> np.ndarray:
        """Frame pixel coordinates (..., 2) -> model input pixel coordinates."""
        x0, y0, x1, y1 = self.crop
        return (np.asarray(xy, np.float64) - [x0, y0]) * [self.width / (x1 - x0), self.height / (y1 - y0)]

    def input_to_frame(self, xy: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = self.crop
        return np.asarray(xy, np.float64) / [self.width / (x1 - x0), self.height / (y1 - y0)] + [x0, y0]


class FrameError(ValueError):
    """A frame the model cannot take (wrong size or channels)."""


def check_frame(frame: np.ndarray, spec: InputSpec) -> None:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise FrameError(f"expected an 8-bit BGR image, got {getattr(frame, 'shape', type(frame))}")
    if frame.shape[:2] != (spec.frame_height, spec.frame_width):
        raise FrameError(
            f"frame is {frame.shape[1]}x{frame.shape[0]}, the model was trained on "
            f"{spec.frame_width}x{spec.frame_height} frames"
        )


def crop_resize(frame: np.ndarray, spec: InputSpec) -> np.ndarray:
    """BGR uint8 frame -> BGR uint8 (height, width, 3): the crop of the part, resized."""
    check_frame(frame, spec)
    x0, y0, x1, y1 = spec.crop
    return cv2.resize(frame[y0:y1, x0:x1], (spec.width, spec.height), interpolation=cv2.INTER_AREA)


def normalize(small_bgr: np.ndarray | list[np.ndarray], spec: InputSpec) -> np.ndarray:
    """BGR uint8 (h, w, 3) or a list of them -> float32 NCHW, RGB, normalised."""
    batch = np.asarray(small_bgr)
    if batch.ndim == 3:
        batch = batch[None]
    x = batch[..., ::-1].astype(np.float32) * (1 / 255.0)
    x -= np.asarray(spec.mean, np.float32)
    x /= np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def preprocess(frames: np.ndarray | list[np.ndarray], spec: InputSpec) -> np.ndarray:
    """One frame (H, W, 3) or a list of frames -> float32 NCHW model input."""
    if isinstance(frames, np.ndarray) and frames.ndim == 3:
        frames = [frames]
    return normalize([crop_resize(f, spec) for f in frames], spec)


def read_image(path: Any) -> np.ndarray:
    """Read one BGR image from disk; FrameError names the file and what is wrong.

    Only regular files are opened: a FIFO or device named like an image would block the reader
    (and the station with it) forever, a folder is no image."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise FrameError(f"{path}: cannot read ({e.strerror})") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a special file"
        raise FrameError(f"{path}: not a regular file ({kind})")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FrameError(f"{path}: not a readable image (empty, corrupt or not an image)")
    return img


def read_frame(path: Any, spec: InputSpec) -> np.ndarray:
    """Read one frame from disk for the model; FrameError names the file and what is wrong."""
    img = read_image(path)
    try:
        check_frame(img, spec)
    except FrameError as e:
        raise FrameError(f"{path}: {e}") from None
    return img


def readable_frames(root: Path | str, names: Iterable[str], spec: InputSpec) -> Iterator[tuple[str, np.ndarray]]:
    """(name, frame) for every file under `root` that reads as a frame for `spec`; an unreadable
    or wrong-size one is skipped with a warning on stderr that names it."""
    for name in names:
        try:
            yield name, read_frame(Path(root) / name, spec)
        except FrameError as e:
            print(f"warning: skipping {e}", file=sys.stderr)
