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

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from edge_app.archive import Archive
from edge_app.events import ModelState, Result, SourceState, Status, Trigger
from edge_app.mailbox import Mailbox, MailboxClosed
from edge_app.model import (
    ModelHolder,
    ModelLoadError,
    RuntimeLike,
    defect_position,
    model_title,
    model_version,
    one_line,
    threshold_margin,
)
from edge_app.sources import EndOfStream, Frame, Source, SourceError
from edge_app.stats import Stats

log = logging.getLogger(__name__)


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
        archive: Archive | None = None,  # gets every NG result and the samples its policy keeps
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

    def reset_stats(self) -> None:
        """Count from zero (a PLC's reset); `max_frames` then counts from here too."""
        self.stats = Stats(keep_all=self.options.keep_all_latencies)

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
            final = (SourceState.FAILED, f"capture error: {one_line(e)}")
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
            self._set(model=ModelState.FAILED, model_msg=f"inference error: {one_line(e)}")
            self._fail_trigger("model", f"inference error: {one_line(e)}")
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
            result.where = defect_position(verdict, runtime)
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
