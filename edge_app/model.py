"""The station's model: what the pipeline needs of a runtime, loaded once and kept across runs,
switched between frames, and described in one line. No Qt, no torch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from edge_app.events import VerdictLike
from edge_app.settings import StationConfig
from models.bundle import BundleError
from models.decision import threshold_distance
from models.overlay import locate
from models.part import CLASSES


class RuntimeLike(Protocol):
    """What the pipeline needs of models.runtime.Runtime (tests pass fakes)."""

    @property
    def name(self) -> str: ...

    @property
    def info(self) -> dict[str, Any]: ...

    @property
    def thresholds(self) -> dict[str, float]: ...

    @property
    def input_spec(self) -> Any: ...

    def infer(self, frames: list[np.ndarray]) -> list[Any]: ...

    def set_thresholds(self, thresholds: dict[str, float]) -> None: ...


class ModelLoadError(RuntimeError):
    pass


class ModelHolder:
    """Loads the runtime on first use (on the inference thread, so the window stays responsive)
    and keeps it across start / stop. A load failure is remembered with its one-line reason."""

    def __init__(self, factory: Callable[[], RuntimeLike], describe: str = "model"):
        self._factory = factory
        self.describe = describe
        self._lock = threading.Lock()
        self.runtime: RuntimeLike | None = None
        self.error: str = ""

    def get(self) -> RuntimeLike:
        with self._lock:
            if self.runtime is None:
                try:
                    self.runtime = self._factory()
                    self.error = ""
                except Exception as e:  # the runtime's BundleError, or anything a broken install raises
                    self.error = one_line(e)
                    raise ModelLoadError(self.error) from e
            return self.runtime

    def swap(self, runtime: RuntimeLike, describe: str) -> RuntimeLike | None:
        """Run `runtime` from the next frame on (a running pipeline picks it up between frames);
        returns the one it replaces."""
        with self._lock:
            old, self.runtime, self.describe, self.error = self.runtime, runtime, describe, ""
            return old


def defect_position(verdict: VerdictLike, runtime: RuntimeLike) -> tuple[float, float] | None:
    """The frame pixel a verdict's heatmap points at (None without a heatmap or input spec)."""
    hm, spec = getattr(verdict, "heatmap", None), getattr(runtime, "input_spec", None)
    if hm is None or spec is None:
        return None
    return locate(hm, spec)


def one_line(e: BaseException) -> str:
    """A load or inference error as the one line the station shows (a BundleError already is one)."""
    if isinstance(e, BundleError):
        return str(e)
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def runtime_factory(cfg: StationConfig) -> Callable[[], RuntimeLike]:
    """How a StationConfig's model is loaded (imports the runtime only when called)."""

    def load() -> RuntimeLike:
        from models.runtime import Runtime

        return Runtime(
            cfg.model_dir(),
            backend=None if cfg.backend == "auto" else cfg.backend,
            precision=None if cfg.precision == "auto" else cfg.precision,
            expected_part=cfg.part,
        )

    return load


def model_title(runtime: RuntimeLike | None) -> str:
    """'name version' of a loaded model, for the window and the summary."""
    if runtime is None:
        return ""
    info = getattr(runtime, "info", {}) or {}
    version = info.get("version") or info.get("model_version") or ""
    parts = [str(getattr(runtime, "name", "") or info.get("name", "model"))]
    if version:
        parts.append(f"v{version}" if str(version)[:1].isdigit() else str(version))
    extra = [str(x) for x in (getattr(runtime, "backend", None), getattr(runtime, "precision", None)) if x]
    return " ".join(parts) + (f" ({', '.join(extra)})" if extra else "")


def model_version(runtime: RuntimeLike | None) -> str:
    """'name version' of the bundle, as archived verdicts record it."""
    if runtime is None:
        return ""
    info = getattr(runtime, "info", {}) or {}
    return f"{info.get('name', getattr(runtime, 'name', 'model'))} {info.get('version', '?')}"


def threshold_margin(scores: dict[str, float], thresholds: dict[str, float]) -> float:
    """How far a verdict's scores sit from the nearest threshold (NaN without all the scores)."""
    try:
        return float(abs(threshold_distance(np.array([[scores[c] for c in CLASSES]]), thresholds)[0]))
    except (KeyError, TypeError, ValueError):
        return float("nan")


def model_choice(runtime: RuntimeLike | None) -> str:
    """Why the runtime runs the model it does (measured on this CPU, cached, forced...); '' if it does not say."""
    return str(getattr(runtime, "choice_reason", "") or "") if runtime is not None else ""
