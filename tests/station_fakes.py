"""Stand-ins for models.runtime.Runtime in the station's tests: same interface, no model."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.decision import decide
from models.part import CLASSES
from models.preprocess import InputSpec, check_frame


@dataclass
class FakeVerdict:
    label: str
    pin: int
    scores: dict[str, float]
    heatmap: np.ndarray = field(default_factory=lambda: np.zeros((12, 20), np.float32))


def heatmap_at(spec: InputSpec, xy: tuple[float, float] | None) -> np.ndarray:
    """A heatmap hot under frame pixel `xy` (what a good model would give)."""
    gh, gw = spec.grid
    hm = np.full((gh, gw), 0.02, np.float32)
    if xy is not None:
        x_in, y_in = spec.frame_to_input(np.array(xy))
        c = int(np.clip(x_in / spec.width * gw, 0, gw - 1))
        r = int(np.clip(y_in / spec.height * gh, 0, gh - 1))
        hm[r, c] = 0.95
        for dr, dc in ((0, 1), (1, 0), (0, -1), (-1, 0)):
            if 0 <= r + dr < gh and 0 <= c + dc < gw:
                hm[r + dr, c + dc] = 0.4
    return hm


class FakeRuntime:
    """Answers from a lookup of the frames it is shown (the simulator's pool: frame -> truth),
    right with probability `accuracy` (a deterministic per-frame draw), after `delay_s` seconds.
    Its scores (0.96 for the answer, 0.02 for the rest) go through the real decision rule with its
    thresholds, so raising a threshold above 0.96 turns its NG answers into OK, as on a real model.
    Frames it does not know get `default`. Refuses frames of the wrong size, as the real one does."""

    name = "fake-pinvit"
    backend = "fake"
    precision = "fp32"

    def __init__(
        self,
        source: Any = None,
        accuracy: float = 1.0,
        delay_s: float = 0.0,
        default: str = "OK",
        seed: int = 0,
    ):
        self.source, self.accuracy, self.delay_s, self.default, self.seed = source, accuracy, delay_s, default, seed
        self.input_spec = InputSpec()
        self.info = {"name": self.name, "version": "0.0-test", "classes": ["BENDNG", "NUKENG", "OK"]}
        self.thresholds = {"BENDNG": 0.5, "NUKENG": 0.5}
        self.calls = 0
        self.seen: list[int] = []  # ids of the frames inferred, in order
        self._lock = threading.Lock()

    def set_thresholds(self, thresholds: dict[str, float]) -> None:
        self.thresholds = {**self.thresholds, **thresholds}

    def _lookup(self, frame: np.ndarray) -> tuple[int, Any]:
        pool = getattr(self.source, "pool", None) or []
        for i, (img, truth) in enumerate(pool):
            if img is frame:
                return i, truth
        return -1, None

    def is_right(self, pool_index: int) -> bool:
        """Whether the fake answers pool frame `pool_index` right: a fixed, spread-out subset."""
        return (pool_index * 37 + self.seed) % 100 < round(self.accuracy * 100)

    def infer(self, frames: list[np.ndarray]) -> list[FakeVerdict]:
        out = []
        for f in frames:
            check_frame(f, self.input_spec)
            with self._lock:
                self.calls += 1
                self.seen.append(id(f))
            if self.delay_s:
                time.sleep(self.delay_s)
            idx, truth = self._lookup(f)
            label, pin, xy = (truth.label, truth.pin, truth.xy) if truth else (self.default, 0, None)
            if truth is not None and not self.is_right(idx):  # a wrong answer, still a consistent one
                label, pin, xy = ("OK", 0, None) if label != "OK" else ("BENDNG", 1, None)
            if label != "OK" and pin == 0:
                pin = 1
            scores = {c: 0.02 for c in CLASSES}
            scores[label] = 0.96
            # the verdict comes from the scores by the real decision rule, so thresholds act as they do
            pins = np.zeros(28)
            pins[pin] = 1.0
            k, pin = (int(v[0]) for v in decide(np.array([[scores[c] for c in CLASSES]]), pins[None], self.thresholds))
            label = CLASSES[k]
            hm = heatmap_at(self.input_spec, xy if label != "OK" else None)
            out.append(FakeVerdict(label, pin, scores, hm))
        return out
