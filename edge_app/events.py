"""What the station's pipeline reports: the source and model states, a trigger, a result. No Qt.

These are the pipeline's outputs; the window, the headless printer, the archive and the PLC link
read them and never reach into the pipeline itself.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edge_app.sources import Frame


class SourceState(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    RUNNING = "running"
    DISCONNECTED = "disconnected"  # a camera fault; retried with backoff
    ENDED = "ended"  # a video or folder has no more frames
    FAILED = "failed"  # cannot be used and retrying will not help (missing file, bad spec)
    STOPPED = "stopped"


class ModelState(enum.Enum):
    NOT_LOADED = "not loaded"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class Status:
    source: SourceState = SourceState.IDLE
    source_msg: str = ""
    model: ModelState = ModelState.NOT_LOADED
    model_msg: str = ""
    running: bool = False  # threads alive
    frame_msg: str = ""  # why the model refuses the current frames (wrong size...); "" when it takes them


class VerdictLike(Protocol):
    label: str
    pin: int
    scores: dict[str, float]
    heatmap: np.ndarray


@dataclass(frozen=True)
class Trigger:
    id: int  # 1, 2, ... per pipeline
    t: float  # time.perf_counter() when the trigger arrived
    origin: str  # "plc", "key", "stdin", ...


@dataclass
class Result:
    frame: Frame
    verdict: VerdictLike  # models.runtime.Verdict
    latency_ms: float  # capture to verdict
    t_done: float  # time.perf_counter()
    infer_ms: float = float("nan")  # inside runtime.infer
    where: tuple[float, float] | None = None  # frame pixel of the defect (NG only), from the heatmap
    model: str = ""  # the version of the model that gave the verdict (recorded with archived frames)
    margin: float = float("nan")  # distance of the scores to the nearest threshold (small: borderline)
    trigger: Trigger | None = None  # what asked for this inspection (triggered mode)
    sequence: int | None = None  # the PLC Sequence this verdict was handed over with (PLC mode)

    @property
    def trigger_ms(self) -> float:
        """Trigger to verdict (nan when free-running)."""
        return (self.t_done - self.trigger.t) * 1000.0 if self.trigger is not None else float("nan")

    @property
    def ng(self) -> bool:
        return self.verdict.label != "OK"
