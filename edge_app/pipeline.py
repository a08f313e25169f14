"""The station core: capture and inference threads joined by a one-slot mailbox. No Qt.

    source --read--> [capture thread] --put--> Mailbox(1) --get--> [inference thread] --> on_result
                                                                              \\--> Archive (NG frames)

* Latest frame wins: a live source (camera, paced simulator) overwrites the slot, so inference
  always works on the newest frame and a slow model drops frames instead of falling behind; a
  recorded source (video, folder, unpaced simulator) waits for the slot to empty, so every frame is
  inspected. There is no unbounded queue anywhere.
* Faults are states: a camera that fails to open or stops delivering is DISCONNECTED (with the
  reason) and reopened with exponential backoff; a video or folder that ends is ENDED; a model
  that cannot load is ModelState.FAILED with the runtime's one-line message. Every change goes to
  `on_status` and the log.
* Results reach the caller through `on_result`, called on the inference thread; the GUI turns it
  into a Qt signal, headless mode prints it.
* Triggered (`PipelineOptions.triggered`): the camera keeps streaming (so its buffer stays
  empty) but a frame is inspected only for a `trigger()`, and it is the first frame whose read
  began after the trigger, never one captured before it. One trigger is open at a time; each
  ends in exactly one `on_result` (the Result carries the Trigger and trigger-to-verdict time)
  or one `on_trigger_failed` (camera lost, model failed, station stopped).
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from edge_app.sources import EndOfStream, Frame, Source, SourceError
from models.part import CLASSES

log = logging.getLogger(__name__)
T = TypeVar("T")


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


@dataclass(frozen=True)
class Trigger:
    id: int  # 1, 2, ... per pipeline
    t: float  # time.perf_counter() when the trigger arrived
    origin: str  # "plc", "key", "stdin", ...


@dataclass
class Result:
    frame: Frame
    verdict: Any  # models.runtime.Verdict
    latency_ms: float  # capture to verdict
    t_done: float  # time.perf_counter()
    infer_ms: float = float("nan")  # inside runtime.infer
    where: tuple[float, float] | None = None  # frame pixel of the defect (NG only), from the heatmap
    model: str = ""  # the version of the model that gave the verdict (recorded with archived frames)
    margin: float = float("nan")  # distance of the scores to the nearest threshold (small: borderline)
    trigger: Trigger | None = None  # what asked for this inspection (triggered mode)

    @property
    def trigger_ms(self) -> float:
        """Trigger to verdict (nan when free-running)."""
        return (self.t_done - self.trigger.t) * 1000.0 if self.trigger is not None else float("nan")

    @property
    def ng(self) -> bool:
        return self.verdict.label != "OK"


# ---------------------------------------------------------------------------------------------
# The one-slot mailbox


class MailboxClosed(Exception):
    pass


class Mailbox(Generic[T]):
    """One slot. `put` replaces what is there (counting it as dropped) or, with `wait`, blocks
    until the reader has taken it; `get` blocks for the next item. After `close`, `get` returns
    what is left, then raises MailboxClosed."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._full = False
        self._closed = False
        self.dropped = 0

    def put(self, item: T, wait: bool = False) -> None:
        with self._cond:
            while wait and self._full and not self._closed:
                self._cond.wait(0.1)
            if self._closed:
                return
            if self._full:
                self.dropped += 1
            self._item, self._full = item, True
            self._cond.notify_all()

    def wait_empty(self) -> None:
        """Block until the reader has taken the item (or the mailbox is closed)."""
        with self._cond:
            while self._full and not self._closed:
                self._cond.wait(0.1)

    def get(self, timeout: float | None = None) -> T | None:
        """The item, or None after `timeout` seconds with nothing to take."""
        with self._cond:
            if not self._full and not self._closed:
                self._cond.wait(timeout)
            if self._full:
                item, self._item, self._full = self._item, None, False
                self._cond.notify_all()
                return item
            if self._closed:
                raise MailboxClosed
            return None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


# ---------------------------------------------------------------------------------------------
# Statistics


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


# ---------------------------------------------------------------------------------------------
# The model, loaded once and shared by successive pipelines


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
                    self.error = _one_line(e)
                    raise ModelLoadError(self.error) from e
            return self.runtime

    def swap(self, runtime: RuntimeLike, describe: str) -> RuntimeLike | None:
        """Run `runtime` from the next frame on (a running pipeline picks it up between frames);
        returns the one it replaces."""
        with self._lock:
            old, self.runtime, self.describe, self.error = self.runtime, runtime, describe, ""
            return old


def _where(verdict: Any, runtime: Any) -> tuple[float, float] | None:
    hm, spec = getattr(verdict, "heatmap", None), getattr(runtime, "input_spec", None)
    if hm is None or spec is None:
        return None
    from models.overlay import locate

    return locate(hm, spec)


def _one_line(e: BaseException) -> str:
    if type(e).__name__ == "BundleError":
        return str(e)
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def runtime_factory(cfg: Any) -> Callable[[], RuntimeLike]:
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
    from models.decision import threshold_distance

    try:
        return float(abs(threshold_distance(np.array([[scores[c] for c in CLASSES]]), thresholds)[0]))
    except (KeyError, TypeError, ValueError):
        return float("nan")


def model_choice(runtime: RuntimeLike | None) -> str:
    """Why the runtime runs the model it does (measured on this CPU, cached, forced...); '' if it does not say."""
    return str(getattr(runtime, "choice_reason", "") or "") if runtime is not None else ""


# ---------------------------------------------------------------------------------------------
# The pipeline


@dataclass
class PipelineOptions:
    max_frames: int | None = None  # stop after this many verdicts (headless --frames)
    retry_initial_s: float = 0.5
    retry_max_s: float = 10.0
    keep_all_latencies: bool = False
    triggered: bool = False  # inspect one frame per trigger() instead of every frame


@dataclass
class _Callbacks:
    on_result: Callable[[Result], None]
    on_status: Callable[[Status], None] = lambda s: None
    on_message: Callable[[int, str], None] = lambda level, msg: None
    on_trigger_failed: Callable[[Trigger, str, str], None] = lambda t, kind, msg: None
    extra: list[Callable[[Result], None]] = field(default_factory=list)


class Pipeline:
    """One run over one source. `start` spawns the two threads; `stop` ends them; `wait` blocks
    until the run ends by itself (source ended or failed, `max_frames` reached, model failed)."""

    def __init__(
        self,
        source: Source,
        model: ModelHolder,
        on_result: Callable[[Result], None],
        on_status: Callable[[Status], None] | None = None,
        on_message: Callable[[int, str], None] | None = None,
        archive: Any = None,  # edge_app.archive.Archive: gets every NG result
        options: PipelineOptions | None = None,
        on_trigger_failed: Callable[[Trigger, str, str], None] | None = None,
    ):
        """`on_trigger_failed(trigger, kind, message)`: a trigger that got no verdict; kind is
        "camera", "model" or "other"."""
        self.source, self.model, self.archive = source, model, archive
        self.options = options or PipelineOptions()
        self._cb = _Callbacks(on_result, on_status or (lambda s: None), on_message or (lambda lv, m: None))
        if on_trigger_failed is not None:
            self._cb.on_trigger_failed = on_trigger_failed
        self._custom_messages = on_message is not None
        self.mailbox: Mailbox[tuple[Frame, Trigger | None]] = Mailbox()
        self._trigger_lock = threading.Lock()
        self._trigger_wanted = threading.Event()  # a trigger waits for its frame
        self._trigger_open: Trigger | None = None  # asked for, not yet answered
        self._trigger_frame_due = False  # the open trigger's frame is not captured yet
        self._trigger_count = 0
        self.stats = Stats(keep_all=self.options.keep_all_latencies)
        self._stop = threading.Event()
        self._model_ready = threading.Event()
        self._status_lock = threading.Lock()
        self._status = Status()
        self._threads: list[threading.Thread] = []
        self._alive = 0
        self._pending_thresholds: dict[str, float] | None = None
        self.source.on_warning = lambda msg: self._message(logging.WARNING, msg)
        self.source.on_progress = lambda msg: self._set(source_msg=msg)

    # -- public -------------------------------------------------------------------------------

    @property
    def status(self) -> Status:
        with self._status_lock:
            return self._status

    def start(self) -> None:
        if self._threads:
            raise RuntimeError("a Pipeline runs once; make a new one to start again")
        self._set(running=True)
        self._alive = 2
        self._threads = [
            threading.Thread(target=self._inference_loop, name="pininspect-inference", daemon=True),
            threading.Thread(target=self._capture_loop, name="pininspect-capture", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.source.cancel.set()
        self.mailbox.close()
        self.wait(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """True when both threads have ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def trigger(self, origin: str = "key") -> Trigger | None:
        """Ask for one inspection of the next frame captured from now (triggered mode). None when
        it cannot be taken: a trigger is still open, or the source or model is not running."""
        st = self.status
        if not self.options.triggered or self._stop.is_set() or not st.running:
            return None
        if st.source is not SourceState.RUNNING or st.model is not ModelState.READY:
            return None
        with self._trigger_lock:
            if self._trigger_open is not None:
                return None
            self._trigger_count += 1
            t = Trigger(self._trigger_count, time.perf_counter(), origin)
            self._trigger_open, self._trigger_frame_due = t, True
            self._trigger_wanted.set()
            return t

    @property
    def trigger_open(self) -> Trigger | None:
        with self._trigger_lock:
            return self._trigger_open

    def _take_trigger(self, t_read: float) -> Trigger | None:
        """The open trigger, if its frame is due and this read began after it."""
        with self._trigger_lock:
            t = self._trigger_open
            if t is None or not self._trigger_frame_due or t_read < t.t:
                return None
            self._trigger_frame_due = False
            self._trigger_wanted.clear()
            return t

    def _close_trigger(self, t: Trigger) -> bool:
        with self._trigger_lock:
            if self._trigger_open is not t:
                return False
            self._trigger_open, self._trigger_frame_due = None, False
            self._trigger_wanted.clear()
            return True

    def _fail_trigger(self, kind: str, msg: str, only_uncaptured: bool = False) -> None:
        """Answer the open trigger with a failure; `only_uncaptured`: not if its frame is already
        on its way to the model (the inference thread answers it)."""
        with self._trigger_lock:
            t = self._trigger_open
            if t is None or (only_uncaptured and not self._trigger_frame_due):
                return
        if self._close_trigger(t):
            self._cb.on_trigger_failed(t, kind, msg)

    def set_thresholds(self, thresholds: dict[str, float]) -> None:
        """Applied by the inference thread before its first or next frame (never mid-inference),
        so thresholds given before the model has loaded hold from the first frame; after the run
        has ended, applied at once, so a change made as the source runs out is not lost."""
        with self._status_lock:
            self._pending_thresholds = dict(thresholds)
            if self._threads and self._alive == 0:
                self._apply_pending_thresholds()

    def _apply_pending_thresholds(self) -> None:
        pending, self._pending_thresholds = self._pending_thresholds, None
        runtime = self.model.runtime
        if pending and runtime is not None:
            runtime.set_thresholds(pending)

    def summary(self) -> dict[str, Any]:
        return self.stats.summary(dropped=self.mailbox.dropped)

    # -- state --------------------------------------------------------------------------------

    def _set(self, **changes: Any) -> None:
        with self._status_lock:
            old = self._status
            self._status = new = replace(old, **changes)
        if new == old:
            return
        if (new.source, new.source_msg) != (old.source, old.source_msg):
            level = {SourceState.DISCONNECTED: logging.WARNING, SourceState.FAILED: logging.ERROR}.get(
                new.source, logging.INFO
            )
            self._message(level, f"source {new.source.value}: {new.source_msg}" if new.source_msg else new.source.value)
        if (new.model, new.model_msg) != (old.model, old.model_msg):
            level = logging.ERROR if new.model is ModelState.FAILED else logging.INFO
            self._message(level, f"model {new.model.value}: {new.model_msg}" if new.model_msg else new.model.value)
        self._cb.on_status(new)

    def _message(self, level: int, msg: str) -> None:
        """Every state change and warning, to `on_message` when given, else to the log."""
        if self._custom_messages:
            self._cb.on_message(level, msg)
        else:
            log.log(level, "%s", msg)

    # -- capture ------------------------------------------------------------------------------

    def _capture_loop(self) -> None:
        src, opts = self.source, self.options
        backoff = opts.retry_initial_s
        final: tuple[SourceState, str] = (SourceState.STOPPED, "")
        try:
            while not self._model_ready.is_set():  # frames captured during a model load would be stale
                if self._stop.wait(0.05):
                    return
            while not self._stop.is_set():
                self._set(source=SourceState.CONNECTING, source_msg=f"opening {src.describe()}")
                try:
                    src.open()
                except SourceError as e:
                    if self._stop.is_set():
                        break
                    if not src.retry:
                        final = (SourceState.FAILED, str(e))
                        break
                    self._set(source=SourceState.DISCONNECTED, source_msg=f"{e}; retrying in {backoff:.1f} s")
                    self._fail_trigger("camera", str(e), only_uncaptured=True)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, opts.retry_max_s)
                    continue
                self._set(source=SourceState.RUNNING, source_msg=src.describe())
                outcome = self._read_until_fault(src)
                if outcome is None:  # stopped
                    break
                state, msg = outcome
                self._fail_trigger("camera", msg, only_uncaptured=True)
                if state is SourceState.DISCONNECTED and src.retry:
                    src.close()
                    self._set(source=state, source_msg=f"{msg}; retrying in {opts.retry_initial_s:.1f} s")
                    backoff = opts.retry_initial_s
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, opts.retry_max_s)
                    continue
                final = (SourceState.FAILED if state is SourceState.DISCONNECTED else state, msg)
                break
        except Exception as e:  # a bug in a source must not vanish silently with its thread
            log.exception("capture thread")
            final = (SourceState.FAILED, f"capture error: {_one_line(e)}")
        finally:
            src.close()
            self.mailbox.close()  # the inference thread finishes what is in the slot, then ends
            self._set(source=final[0], source_msg=final[1])
            self._fail_trigger(
                "camera" if final[0] is not SourceState.STOPPED else "other",
                final[1] or "station stopped",
                only_uncaptured=True,
            )
            self._finish()

    def _read_until_fault(self, src: Source) -> tuple[SourceState, str] | None:
        interval = 1.0 / src.fps if src.fps > 0 else 0.0
        next_t = time.perf_counter()
        while not self._stop.is_set():
            if interval:
                delay = next_t - time.perf_counter()
                if delay > 0 and self._stop.wait(delay):
                    return None
                next_t = max(next_t + interval, time.perf_counter() - interval)
            if self.options.triggered and not src.live:
                # a recorded source is read only for a trigger, so no frame is read ahead of one
                if not self._trigger_wanted.wait(0.05):
                    continue
            elif not src.live:
                # read a recorded frame only once the slot is free: its capture time is then when it
                # could first be inspected, so latency is not inflated by frames read ahead
                self.mailbox.wait_empty()
            t_read = time.perf_counter()
            try:
                frame = src.read()
            except SourceError as e:
                return SourceState.DISCONNECTED, str(e)
            except EndOfStream as e:
                return SourceState.ENDED, str(e)
            trigger = None
            if self.options.triggered:
                trigger = self._take_trigger(t_read)
                if trigger is None:  # a live camera keeps streaming; only a triggered frame is inspected
                    continue
            self.mailbox.put((frame, trigger), wait=not src.live)
        return None

    # -- inference ----------------------------------------------------------------------------

    def _inference_loop(self) -> None:
        try:
            self._set(model=ModelState.LOADING, model_msg=self.model.describe)
            try:
                runtime = self.model.get()
            except ModelLoadError as e:
                self._set(model=ModelState.FAILED, model_msg=str(e))
                self._stop.set()
                self.source.cancel.set()
                return
            self._set(model=ModelState.READY, model_msg=model_title(runtime))
            self._model_ready.set()
            while True:
                try:
                    job = self.mailbox.get(timeout=0.1)
                except MailboxClosed:
                    break
                if job is None:
                    continue
                if self._stop.is_set():
                    break
                if self.model.runtime is not None and self.model.runtime is not runtime:
                    runtime = self.model.runtime  # switched by Station.switch_model, between frames
                    self._set(model_msg=model_title(runtime))
                self._inspect(runtime, *job)
                if self.options.max_frames and self.stats.n >= self.options.max_frames:
                    self._stop.set()
                    self.source.cancel.set()
                    self.mailbox.close()
                    break
        except Exception as e:
            log.exception("inference thread")
            self._set(model=ModelState.FAILED, model_msg=f"inference error: {_one_line(e)}")
            self._fail_trigger("model", f"inference error: {_one_line(e)}")
            self._stop.set()
            self.mailbox.close()
        finally:
            self._finish()

    def _inspect(self, runtime: RuntimeLike, frame: Frame, trigger: Trigger | None = None) -> None:
        pending, self._pending_thresholds = self._pending_thresholds, None
        if pending:
            runtime.set_thresholds(pending)
        t0 = time.perf_counter()
        try:
            verdict = runtime.infer([frame.image])[0]
        except (ValueError, TypeError) as e:  # the runtime refuses this frame (size, channels)
            self.stats.reject()
            if self.stats.rejected in (1, 10, 100) or self.stats.rejected % 1000 == 0:
                self._message(logging.WARNING, f"frame {frame.index} rejected ({self.stats.rejected} so far): {e}")
            if self._status.frame_msg != str(e):
                self._set(frame_msg=str(e))
            if trigger is not None and self._close_trigger(trigger):
                self._cb.on_trigger_failed(trigger, "camera", f"frame refused by the model: {e}")
            return
        if self._status.frame_msg:
            self._set(frame_msg="")
        t = time.perf_counter()
        result = Result(frame, verdict, (t - frame.t_capture) * 1000.0, t, (t - t0) * 1000.0, trigger=trigger)
        if result.ng:
            result.where = _where(verdict, runtime)
        result.model = model_version(runtime)
        result.margin = threshold_margin(verdict.scores, getattr(runtime, "thresholds", None) or {})
        self.stats.add(result)
        if self.archive is not None:  # it keeps every NG frame, and the others it is set to sample
            self.archive.submit(result, source=self.source.describe(), wait=not self.source.live)
        # the trigger closes before the result is reported, so whoever sees the result may trigger again
        if trigger is not None and not self._close_trigger(trigger):
            return  # already answered as failed (the station stopped meanwhile)
        self._cb.on_result(result)

    def _finish(self) -> None:
        """Each thread calls this as it ends; the last one reports the run over."""
        with self._status_lock:
            self._alive -= 1
            last = self._alive == 0
            if last:
                self._apply_pending_thresholds()
        if last:
            self._fail_trigger("other", "station stopped")
            self._set(running=False)
