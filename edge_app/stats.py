"""The station's counters: verdicts per class, latency, fps, and accuracy where the truth is known."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import numpy as np

from edge_app.events import Result
from models.part import CLASSES


def accuracy_of(confusion: np.ndarray, pin_hits: int, pin_total: int) -> dict[str, float]:
    n = confusion.sum()
    ok = CLASSES.index("OK")
    ng_right = confusion[:ok, :ok].sum() + confusion[ok + 1 :, :ok].sum() + confusion[ok, ok]
    return {
        "label": round(float(np.trace(confusion) / n), 4) if n else float("nan"),
        "ng_vs_ok": round(float(ng_right / n), 4) if n else float("nan"),
        "pin": round(pin_hits / pin_total, 4) if pin_total else float("nan"),
    }


class Stats:
    """Counters over every verdict, plus rolling windows for the live fps and latency readouts.
    `keep_all` keeps every latency (headless summaries); otherwise the last `window` ones."""

    def __init__(self, keep_all: bool = False, window: int = 2000):
        self._lock = threading.Lock()
        self.counts = dict.fromkeys(CLASSES, 0)
        self.n = 0
        self.rejected = 0  # frames the runtime refused (wrong size...)
        self.latencies: list[float] | deque[float] = [] if keep_all else deque(maxlen=window)
        self.infer_ms: list[float] | deque[float] = [] if keep_all else deque(maxlen=window)
        self._times: deque[float] = deque(maxlen=window)
        self.t_first: float | None = None  # capture time of the first inspected frame
        self.t_last: float | None = None
        self.confusion = np.zeros((3, 3), np.int64)  # truth x verdict, frames whose truth is known
        self.pin_hits = 0
        self.pin_total = 0

    def add(self, r: Result) -> None:
        with self._lock:
            self.n += 1
            self.counts[r.verdict.label] = self.counts.get(r.verdict.label, 0) + 1
            self.latencies.append(r.latency_ms)
            self.infer_ms.append(r.infer_ms)
            self._times.append(r.t_done)
            if self.t_first is None:
                self.t_first = r.frame.t_capture
            self.t_last = r.t_done
            truth = r.frame.truth
            if truth is not None and truth.label in CLASSES and r.verdict.label in CLASSES:
                self.confusion[CLASSES.index(truth.label), CLASSES.index(r.verdict.label)] += 1
                if truth.label != "OK":
                    self.pin_total += 1
                    self.pin_hits += int(r.verdict.pin == truth.pin)

    def reject(self) -> None:
        with self._lock:
            self.rejected += 1

    def live(self, now: float | None = None, span: float = 2.0) -> dict[str, Any]:
        """What the window shows: counts, yield, fps over the last `span` seconds, latency p50/p95."""
        now = time.perf_counter() if now is None else now
        with self._lock:
            recent = [t for t in self._times if t >= now - span]
            lat = list(self.latencies)[-500:]
            counts, n = dict(self.counts), self.n
        fps = 0.0
        if len(recent) >= 2:
            fps = (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)
        return {
            "n": n,
            "counts": counts,
            "yield": counts.get("OK", 0) / n if n else float("nan"),
            "fps": fps,
            "latency_p50": float(np.percentile(lat, 50)) if lat else float("nan"),
            "latency_p95": float(np.percentile(lat, 95)) if lat else float("nan"),
        }

    def summary(self, dropped: int = 0) -> dict[str, Any]:
        """The end-of-run numbers: frames, fps, latency percentiles, counts, accuracy vs truth."""
        with self._lock:
            lat = np.asarray(self.latencies, np.float64)
            inf = np.asarray(self.infer_ms, np.float64)
            span = (self.t_last - self.t_first) if self.t_first is not None and self.t_last is not None else 0.0
            out: dict[str, Any] = {
                "frames": self.n,
                "seconds": round(span, 3),
                "fps": round(self.n / span, 1) if span > 0 else None,
                "latency_ms": {
                    f"p{q}": round(float(np.percentile(lat, q)), 2) if lat.size else None for q in (50, 95, 99)
                },
                "infer_ms_p50": round(float(np.nanmedian(inf)), 2) if inf.size else None,
                "counts": dict(self.counts),
                "yield": round(self.counts.get("OK", 0) / self.n, 4) if self.n else None,
                "dropped": dropped,
                "rejected": self.rejected,
            }
            known = int(self.confusion.sum())
            if known:
                out["truth_known"] = known
                out["accuracy"] = accuracy_of(self.confusion, self.pin_hits, self.pin_total)
                out["confusion"] = {
                    "rows_truth_cols_verdict": list(CLASSES),
                    "matrix": self.confusion.tolist(),
                }
            return out
