"""One scorer for every model: run it over frames, apply the verdict rule, compare with the labels.

`score(model, folder)` is what `training.evaluate` (a torch checkpoint), `edge_app.predict` (the
station's runtime), the export gate and `export.benchmark` (every model in a bundle) all call, so
the four cannot drift apart in preprocessing, decision or metrics. A model is anything with the
runtime's `input_spec`, `thresholds` and `infer_batch`: `models.runtime.Runtime` for ONNX Runtime
and OpenVINO, `models.checkpoint.TorchModel` for torch. Torch-free.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from models.decision import decide
from models.labels import LabelsError, list_images, read_labels
from models.metrics import metrics
from models.part import CLASSES
from models.preprocess import InputSpec, preprocess, readable_frames

Outputs = tuple[np.ndarray, np.ndarray, np.ndarray]  # scores (N, 3), pin logits (N, P+1), heatmap (N, gh, gw)


class Model(Protocol):
    @property
    def input_spec(self) -> InputSpec: ...

    @property
    def thresholds(self) -> dict[str, float]: ...

    def infer_batch(self, x: np.ndarray) -> Outputs: ...


class Batch(NamedTuple):
    names: list[str]
    x: np.ndarray  # float32 NCHW model input
    frames: list[np.ndarray] | None = None  # the full frames, where a caller draws on them


OnBatch = Callable[[Batch, Outputs, np.ndarray, np.ndarray], None]  # (batch, outputs, labels, pins)


@dataclass
class Scored:
    """A model's verdicts on a set of frames, and how they compare with the labels."""

    files: list[str]
    scores: np.ndarray  # (N, 3), CLASSES order
    labels: np.ndarray  # (N,) predicted class index
    pins: np.ndarray  # (N,) predicted pin, 0 for OK
    truth: np.ndarray | None = None  # (N,) true class index, -1 where unlabelled; None: no labels at all
    truth_pins: np.ndarray | None = None
    skipped: list[str] = field(default_factory=list)  # unreadable frames
    outputs: Outputs | None = None  # the raw outputs, when asked for (parity checks)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def unlabelled(self) -> int:
        return 0 if self.truth is None else int((self.truth < 0).sum())

    def label_with(self, truth: dict[str, tuple[int, int]]) -> Scored:
        """Attach labels (file -> (class, pin)); frames without one are predicted, not scored."""
        self.truth = np.array([truth.get(f, (-1, 0))[0] for f in self.files], int)
        self.truth_pins = np.array([truth.get(f, (-1, 0))[1] for f in self.files], int)
        return self

    def rows(self) -> list[dict[str, Any]]:
        """One predictions-CSV row per frame: file, label, pin, score per class."""
        return [
            {
                "file": f,
                "label": CLASSES[int(self.labels[i])],
                "pin": int(self.pins[i]),
                **{f"score_{c}": float(self.scores[i, j]) for j, c in enumerate(CLASSES)},
            }
            for i, f in enumerate(self.files)
        ]

    def metrics(self) -> dict[str, Any] | None:
        """models.metrics over the labelled frames (None without labels)."""
        if self.truth is None or self.truth_pins is None:
            return None
        known = self.truth >= 0
        return metrics(self.truth[known], self.labels[known], self.truth_pins[known], self.pins[known])


def run(model: Model, batches: Iterable[Batch], keep_outputs: bool = False, on_batch: OnBatch | None = None) -> Scored:
    """Score batches with `model` and the verdict rule (its thresholds). `keep_outputs` keeps the
    raw outputs (heatmaps included: memory); `on_batch` sees each batch as it is scored."""
    files: list[str] = []
    scores, labels, pins = [], [], []
    outs: list[Outputs] = []
    for b in batches:
        if not b.names:
            continue
        out = model.infer_batch(b.x)
        lab, pin = decide(out[0], out[1], model.thresholds)
        if on_batch is not None:
            on_batch(b, out, lab, pin)
        files += b.names
        scores.append(out[0])
        labels.append(np.asarray(lab, int))
        pins.append(np.asarray(pin, int))
        if keep_outputs:
            outs.append(out)
    if not files:
        empty = np.zeros(0, int)
        return Scored([], np.zeros((0, len(CLASSES)), np.float32), empty, empty)
    scored = Scored(files, np.concatenate(scores), np.concatenate(labels), np.concatenate(pins))
    if keep_outputs:
        scored.outputs = (
            np.concatenate([o[0] for o in outs]),
            np.concatenate([o[1] for o in outs]),
            np.concatenate([o[2] for o in outs]),
        )
    return scored


def folder_batches(
    root: Path, names: list[str], spec: InputSpec, batch: int, keep_frames: bool = False
) -> Iterator[Batch]:
    """Batches of a folder's readable frames (the others are skipped with a warning naming them).
    `keep_frames` leaves the full frames in each batch (for drawing on them)."""
    chunk: list[str] = []
    full: list[np.ndarray] = []
    for name, img in readable_frames(root, names, spec):
        chunk.append(name)
        full.append(img)
        if len(chunk) == batch:
            yield Batch(chunk, preprocess(full, spec), full if keep_frames else None)
            chunk, full = [], []
    if chunk:
        yield Batch(chunk, preprocess(full, spec), full if keep_frames else None)


def score(
    model: Model,
    images: Path,
    labels: Path | None = None,
    n_pins: int | None = None,
    batch: int = 16,
    progress: bool = True,
    desc: str = "scoring",
    on_batch: OnBatch | None = None,
    keep_frames: bool = False,
) -> Scored:
    """Score every readable frame of `images` (a folder of frames, or DIR/images + DIR/labels.csv).
    Labels come from `labels`, else from the folder's labels.csv when it has one; `n_pins` checks
    their pin numbers. LabelsError (one line naming the folder) when no frame is readable."""
    from tqdm import tqdm

    root, names = list_images(images)
    labels_path = labels or (Path(images) / "labels.csv" if (Path(images) / "labels.csv").exists() else None)
    truth = read_labels(labels_path, n_pins) if labels_path else None
    bar = tqdm(total=len(names), desc=desc, unit="img", disable=not progress)

    def counted() -> Iterator[Batch]:
        for b in folder_batches(root, names, model.input_spec, batch, keep_frames):
            yield b
            bar.update(len(b.names))

    try:
        scored = run(model, counted(), on_batch=on_batch)
    finally:
        bar.close()
    if not scored.files:
        raise LabelsError(f"{root}: none of the {len(names)} images could be read (see the warnings); nothing written")
    read = set(scored.files)
    scored.skipped = [n for n in names if n not in read]
    return scored.label_with(truth) if truth is not None else scored
