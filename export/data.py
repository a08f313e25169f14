"""Frames for calibration and evaluation: rendered on demand, or read from a folder.

Images are kept cropped and resized (uint8, ~180 kB each) and normalised batch by batch with the
one preprocessing definition (`models.preprocess`), so a 600-image evaluation set fits in ~110 MB.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.labels import list_images, read_labels
from models.part import PartSpec
from models.preprocess import InputSpec, crop_resize, normalize, readable_frames
from models.scoring import Batch
from models.synth.dataset import SynthConfig, generate, parse_styles


@dataclass
class FrameSet:
    """Cropped, resized frames and (when known) their labels."""

    name: str
    small: np.ndarray  # (N, h, w, 3) uint8 BGR: crop_resize output
    labels: np.ndarray | None  # (N,) class index, or None for an unlabelled folder
    pins: np.ndarray | None
    files: list[str]
    ispec: InputSpec

    def __len__(self) -> int:
        return len(self.files)

    def inputs(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Float32 NCHW model input for frames [start, stop)."""
        return normalize(list(self.small[start:stop]), self.ispec)

    def subset(self, start: int, stop: int) -> FrameSet:
        return FrameSet(
            self.name,
            self.small[start:stop],
            None if self.labels is None else self.labels[start:stop],
            None if self.pins is None else self.pins[start:stop],
            self.files[start:stop],
            self.ispec,
        )

    def batches(self, size: int) -> Iterator[np.ndarray]:
        for i in range(0, len(self), size):
            yield self.inputs(i, i + size)

    def scoring_batches(self, size: int) -> Iterator[Batch]:
        """The same batches, named, for models.scoring."""
        for i in range(0, len(self), size):
            yield Batch(self.files[i : i + size], self.inputs(i, i + size))


def render(
    part: PartSpec, out: Path, n: int, seed: int, styles: str, widen: float, workers: int, progress: bool = True
) -> Path:
    """Render a labelled folder with the synthetic data engine (training.synth)."""
    cfg = SynthConfig(n=n, seed=seed, styles=parse_styles(styles), widen=widen, workers=max(1, workers))
    generate(part, cfg, out, overwrite=True, progress=progress)
    return out


def load(folder: Path, ispec: InputSpec, name: str, limit: int | None = None) -> FrameSet:
    """Read a folder of frames (labelled or not). Unreadable frames are skipped with a warning."""
    root, names = list_images(folder)
    if limit:
        names = names[:limit]
    labels_csv = Path(folder) / "labels.csv"
    truth = read_labels(labels_csv) if labels_csv.exists() else None
    small, files, labels, pins = [], [], [], []
    for n, img in readable_frames(root, names, ispec):
        if truth is not None and n not in truth:
            continue  # labelled folder: an image without a label cannot be scored
        small.append(crop_resize(img, ispec))
        files.append(n)
        if truth is not None:
            labels.append(truth[n][0])
            pins.append(truth[n][1])
    if not files:
        raise ValueError(f"{root}: no usable frames")
    return FrameSet(
        name=name,
        small=np.stack(small),
        labels=np.array(labels, int) if truth is not None else None,
        pins=np.array(pins, int) if truth is not None else None,
        files=files,
        ispec=ispec,
    )
