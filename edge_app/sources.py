"""Where frames come from: an OpenCV camera, a video file, a folder of images, or a simulated camera.

Every source hands out `Frame`s (the BGR image, its index in the stream, the capture time and,
when the source knows it, the truth). Failures are exceptions the pipeline turns into explicit
states, never a black frame:

* `SourceError`: the source cannot deliver now (camera unplugged, file missing). `retry` on the
  source says whether waiting and reopening can help (a camera: yes; a missing file: no).
* `EndOfStream`: a video ended or a folder is exhausted (unless `loop`).

A corrupt image in a folder is skipped with a warning (through `on_warning`), not an error.

Source specs on the command line and in the config: `auto`, `sim`, `camera:0`, `camera:URL`,
`video:PATH`, `folder:PATH` (see `parse_source`).
"""

from __future__ import annotations

import glob
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from models.labels import IMAGE_SUFFIXES, LabelsError, read_labels
from models.part import CLASSES
from models.preprocess import FrameError, read_image

log = logging.getLogger(__name__)

KINDS = ("auto", "sim", "camera", "video", "folder")


class SourceError(RuntimeError):
    """The source cannot deliver frames now; the message says why in one line."""


class EndOfStream(Exception):
    """A recorded source has no more frames."""


@dataclass(frozen=True)
class Truth:
    label: str
    pin: int
    xy: tuple[float, float] | None = None  # frame pixel of the defective pin's tip, when known


@dataclass
class Frame:
    image: np.ndarray  # BGR uint8, as OpenCV delivers it; never written to (may be shared)
    index: int  # position in the source's stream, from 0
    t_capture: float  # time.perf_counter() when the frame was read
    truth: Truth | None = None
    name: str = ""  # file name, for folder sources


@dataclass(frozen=True)
class SourceSpec:
    kind: str
    arg: str = ""

    def __str__(self) -> str:
        return f"{self.kind}:{self.arg}" if self.arg else self.kind


def parse_source(text: str) -> SourceSpec:
    """'sim' | 'auto' | 'camera[:N|:URL]' | 'video:PATH' | 'folder:PATH' -> SourceSpec.

    Paths are not checked here (a camera may be plugged in later); opening the source does."""
    text = text.strip()
    kind, sep, arg = text.partition(":")
    kind = kind.lower()
    if kind not in KINDS:
        raise SourceError(f"unknown source {text!r} (use auto, sim, camera:N, camera:URL, video:PATH or folder:PATH)")
    if kind in ("auto", "sim") and arg:
        raise SourceError(f"source {kind!r} takes no argument, got {text!r}")
    if kind == "camera":
        arg = arg or "0"
    if kind in ("video", "folder") and not arg:
        raise SourceError(f"source {kind!r} needs a path: {kind}:PATH")
    return SourceSpec(kind, arg)


def camera_present() -> bool:
    """Whether a camera is plugged in. On Linux the device nodes say so without opening (opening a
    missing camera makes OpenCV print warnings and can take seconds); elsewhere, try index 0."""
    if sys.platform.startswith("linux"):
        return bool(glob.glob("/dev/video*"))
    cap = cv2.VideoCapture(0)
    try:
        return bool(cap.isOpened())
    finally:
        cap.release()


def resolve_auto(spec: SourceSpec) -> SourceSpec:
    """`auto` -> camera 0 when a camera is present, else the simulator."""
    if spec.kind != "auto":
        return spec
    return SourceSpec("camera", "0") if camera_present() else SourceSpec("sim")


class Source:
    """Base of every source. `live` sources (cameras, a paced simulator) produce frames whether or
    not anyone reads them, so the pipeline keeps only the newest; recorded ones (video, folder,
    unpaced simulator) wait for inference so no frame is skipped."""

    live: bool = True
    retry: bool = False  # whether reopening after a SourceError can help
    fps: float = 0.0  # pacing applied by the pipeline; 0 = no pacing (the device paces itself)

    def __init__(self) -> None:
        self.on_warning: Callable[[str], None] = lambda msg: log.warning("%s", msg)
        self.on_progress: Callable[[str], None] = lambda msg: log.info("%s", msg)
        self.cancel = threading.Event()  # set by the pipeline to abort a long open()
        self._index = 0

    def describe(self) -> str:
        raise NotImplementedError

    def open(self) -> None:
        """Prepare to read; raises SourceError."""

    def read(self) -> Frame:
        """The next frame; raises SourceError or EndOfStream."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file; safe to call twice."""

    def _frame(self, image: np.ndarray, truth: Truth | None = None, name: str = "") -> Frame:
        f = Frame(image, self._index, time.perf_counter(), truth, name)
        self._index += 1
        return f


class _CaptureSource(Source):
    """A source read through an OpenCV VideoCapture (`self._cap`, None while closed)."""

    _cap: cv2.VideoCapture | None = None

    def _capture(self) -> cv2.VideoCapture:
        if self._cap is None:
            raise SourceError(f"{self.describe()}: not open")
        return self._cap

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class CameraSource(_CaptureSource):
    live = True
    retry = True

    def __init__(self, device: str = "0", width: int = 640, height: int = 480):
        super().__init__()
        self.device: int | str = int(device) if device.isdigit() else device
        self.width, self.height = width, height
        self._cap: cv2.VideoCapture | None = None

    def describe(self) -> str:
        return f"camera {self.device}"

    def open(self) -> None:
        self.close()
        cap = cv2.VideoCapture(self.device)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.describe()}: cannot open (not connected, or in use by another program)")
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        self._cap = cap

    def read(self) -> Frame:
        ok, img = self._capture().read()
        if not ok or img is None or img.size == 0:
            raise SourceError(f"{self.describe()}: no frame (unplugged or stopped)")
        return self._frame(img)


class VideoSource(_CaptureSource):
    live = False
    retry = False

    def __init__(self, path: str, loop: bool = False, fps: float = 0.0):
        super().__init__()
        self.path, self.loop, self.fps = Path(path).expanduser(), loop, fps
        self._cap: cv2.VideoCapture | None = None
        self._in_pass = 0

    def describe(self) -> str:
        return f"video {self.path.name}"

    def open(self) -> None:
        self.close()
        if not self.path.is_file():
            raise SourceError(f"{self.path}: no such video file")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.path}: cannot decode this video")
        self._cap, self._in_pass = cap, 0

    def read(self) -> Frame:
        cap = self._capture()
        ok, img = cap.read()
        if not ok and self.loop and self._in_pass > 0:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._in_pass = 0
            ok, img = cap.read()
        if not ok or img is None:
            raise EndOfStream(f"{self.describe()}: ended after {self._index} frames")
        self._in_pass += 1
        return self._frame(img)


class FolderSource(Source):
    """Images in a folder, in name order. A labelled folder (`images/` + `labels.csv`, as the
    generator and the archive write them) also gives the truth of every frame."""

    live = False
    retry = False

    def __init__(self, path: str, loop: bool = False, fps: float = 0.0):
        super().__init__()
        self.path, self.loop, self.fps = Path(path).expanduser(), loop, fps
        self._files: list[Path] = []
        self._truth: dict[str, Truth] = {}
        self._pos = 0
        self._good_in_pass = 0

    def describe(self) -> str:
        return f"folder {self.path.name}"

    def open(self) -> None:
        if not self.path.is_dir():
            raise SourceError(f"{self.path}: no such folder")
        images = self.path / "images" if (self.path / "images").is_dir() else self.path
        self._files = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise SourceError(f"{images}: no images ({', '.join(IMAGE_SUFFIXES)})")
        self._truth = self._read_labels(self.path / "labels.csv")
        self._pos, self._good_in_pass = 0, 0

    def _read_labels(self, path: Path) -> dict[str, Truth]:
        if not path.is_file():
            return {}
        try:
            return {f: Truth(CLASSES[c], pin) for f, (c, pin) in read_labels(path).items()}
        except LabelsError as e:
            self.on_warning(f"labels ignored, the frames have no truth: {e}")
            return {}

    def read(self) -> Frame:
        while True:
            if self._pos >= len(self._files):
                if self._good_in_pass == 0:
                    raise SourceError(f"{self.path}: none of the {len(self._files)} images is readable")
                if not self.loop:
                    raise EndOfStream(f"{self.describe()}: all {len(self._files)} images done")
                self._pos, self._good_in_pass = 0, 0
            path = self._files[self._pos]
            self._pos += 1
            try:
                img = read_image(path)
            except FrameError as e:
                self.on_warning(f"skipped {e}")
                continue
            self._good_in_pass += 1
            return self._frame(img, self._truth.get(path.name), path.name)


class SimSource(Source):
    """A simulated camera over the line: renders of the part (models.synth.render, PART.md's
    camera ranges, photo style) with a chosen defect rate, each frame carrying its truth.

    `pool` > 0 renders that many distinct frames up front (in `open`) and cycles them, so the
    simulator is never the bottleneck (a live render costs ~12 ms on one core). `pool` = 0
    renders every frame live: endless variety, at most ~80 frames/s. `fps` > 0 paces it like a
    real camera (live: the pipeline keeps the newest frame); 0 runs as fast as inference allows
    and no frame is skipped."""

    retry = False

    def __init__(
        self, part: str = "default", defect_rate: float = 0.2, fps: float = 15.0, pool: int = 64, seed: int = 0
    ):
        super().__init__()
        from models.part import load_part

        self.spec = load_part(part)
        self.defect_rate, self.fps, self.pool_size, self.seed = defect_rate, fps, pool, seed
        self.live = fps > 0
        self.pool: list[tuple[np.ndarray, Truth]] = []
        self._rng = np.random.default_rng(seed)

    def describe(self) -> str:
        pace = f"{self.fps:g} fps" if self.fps else "unpaced"
        frames = f"pool of {self.pool_size}" if self.pool_size else "live renders"
        return f"simulator ({self.defect_rate:.0%} defects, {pace}, {frames})"

    def _draw_truth(self, rng: np.random.Generator) -> Truth:
        if rng.random() >= self.defect_rate:
            return Truth("OK", 0)
        return Truth(str(rng.choice(["BENDNG", "NUKENG"])), int(rng.integers(1, self.spec.n_pins + 1)))

    def _render(self, truth: Truth, rng: np.random.Generator) -> tuple[np.ndarray, Truth]:
        from models.synth.render import ground_truth, render, sample_params

        params = sample_params(self.spec, rng, truth.label, truth.pin, "photo", widen=1.0)
        img = render(self.spec, params)
        img.flags.writeable = False  # frames are shared between the pool, the GUI and the archive
        if truth.pin:
            _, _, tx, ty = ground_truth(self.spec, params)["pins"][truth.pin - 1]
            truth = Truth(truth.label, truth.pin, (tx, ty))
        return img, truth

    def open(self) -> None:
        if self.pool_size <= 0 or self.pool:
            return
        rng = np.random.default_rng([self.seed, 1])
        # the pool holds the defect rate exactly (rounded), in random order
        n_ng = int(round(self.defect_rate * self.pool_size))
        labels = ["OK"] * (self.pool_size - n_ng) + ["BENDNG", "NUKENG"] * (n_ng // 2) + ["BENDNG"] * (n_ng % 2)
        rng.shuffle(labels)
        for i, label in enumerate(labels):
            if self.cancel.is_set():
                raise SourceError("simulator: stopped while rendering")
            pin = 0 if label == "OK" else int(rng.integers(1, self.spec.n_pins + 1))
            self.pool.append(self._render(Truth(label, pin), rng))
            if i % 16 == 15:
                self.on_progress(f"simulator: rendered {i + 1}/{self.pool_size} frames")

    def read(self) -> Frame:
        if self.pool_size > 0:
            img, truth = self.pool[self._index % len(self.pool)]
        else:
            img, truth = self._render(self._draw_truth(self._rng), self._rng)
        return self._frame(img, truth)


def make_source(text: str, cfg: object | None = None) -> Source:
    """A Source for a spec string, with the simulator / file options of a StationConfig."""
    from edge_app.settings import StationConfig

    c = cfg if isinstance(cfg, StationConfig) else StationConfig()
    spec = resolve_auto(parse_source(text))
    if spec.kind == "sim":
        return SimSource(c.part, c.sim_defect_rate, c.sim_fps, c.sim_pool, c.sim_seed)
    if spec.kind == "camera":
        return CameraSource(spec.arg)
    if spec.kind == "video":
        return VideoSource(spec.arg, c.loop, c.fps)
    return FolderSource(spec.arg, c.loop, c.fps)
