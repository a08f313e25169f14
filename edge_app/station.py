"""The station without its widgets: config, model, archive and the current pipeline. No Qt.

The window forwards clicks here (start, stop, thresholds, new settings) and shows what comes
back through the callbacks, which run on worker threads; the Qt layer turns them into signals.
With `trigger` other than free, each `trigger()` (the window's button, or the PLC through
`open_plc`) inspects one frame; the PLC server lives across start / stop, so the PLC sees Fault
while the station is stopped rather than losing the connection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from edge_app.archive import Archive, KeepPolicy, part_pins
from edge_app.events import Result, Status, Trigger
from edge_app.model import ModelHolder, RuntimeLike, model_title, runtime_factory
from edge_app.pipeline import Pipeline, PipelineOptions
from edge_app.settings import MODEL_HISTORY, StationConfig
from edge_app.sources import Source, SourceError, make_source
from edge_app.stats import Stats
from models.overlay import pin_radius
from models.part import PartSpecError, part_from_dict

if TYPE_CHECKING:
    from edge_app.plc import PlcLink

log = logging.getLogger(__name__)

NO_MODEL_RADIUS = 0  # nothing is circled before a model (and its part) is loaded
_MODEL_FIELDS = ("model", "backend", "precision", "part")
_PLC_FIELDS = ("plc", "plc_host", "plc_port", "plc_unit")


class Station:
    def __init__(
        self,
        cfg: StationConfig,
        on_result: Callable[[Result], None] = lambda r: None,
        on_status: Callable[[Status], None] = lambda s: None,
        on_message: Callable[[int, str], None] = lambda level, msg: None,
        on_archive: Callable[[str], None] = lambda msg: None,
        load_runtime: Callable[[StationConfig], Callable[[], RuntimeLike]] = runtime_factory,
        on_trigger_failed: Callable[[Trigger, str, str, int | None], None] = lambda t, kind, msg, seq: None,
        log_messages: bool = True,
        wrap_source: Callable[[Source], Source] = lambda source: source,
        fsync: bool = True,
        retry_initial_s: float = PipelineOptions.retry_initial_s,
    ):
        """Callbacks run on the pipeline's threads. `on_trigger_failed(trigger, kind, message,
        sequence)`: a trigger that got no verdict, with the PLC Sequence it was answered with (None
        without a PLC); a verdict's Sequence is `Result.sequence`. `log_messages`: messages also go
        to the log (the window's journal); off where `on_message` prints them itself (headless).
        The soak benchmark's hooks: `wrap_source` wraps each source made (a fault injector),
        `fsync` is the archive's, `retry_initial_s` the first wait before reopening a source."""
        self.cfg = cfg
        self._log_messages = log_messages
        self._on_result, self._on_status, self._on_message = on_result, on_status, on_message
        self._on_trigger_failed = on_trigger_failed
        self.plc: PlcLink | None = None  # once open_plc has run
        self._on_archive = on_archive
        self._load_runtime = load_runtime
        self._wrap_source, self._fsync, self._retry_initial_s = wrap_source, fsync, retry_initial_s
        self.model = ModelHolder(load_runtime(cfg), describe=str(cfg.model_dir()))
        self.archive: Archive | None = self._make_archive(cfg)  # needs self.plc (its state goes to the PLC)
        self.pipeline: Pipeline | None = None
        self.stats = Stats()  # the session's counters, across start / stop, until reset
        self.source_name = ""
        self._radius_of: tuple[Any, int] = (None, NO_MODEL_RADIUS)

    def _make_archive(self, cfg: StationConfig) -> Archive | None:
        keep = KeepPolicy.of(cfg)
        if not cfg.archive_enabled:
            return None
        return Archive(
            cfg.archive_path(),
            keep=keep,
            on_state=self._archive_state,
            n_pins=part_pins(cfg.part),
            max_bytes=cfg.archive_max_bytes(),
            fsync=self._fsync,
        )

    def _archive_state(self, msg: str) -> None:
        if self.plc is not None:
            self.plc.on_archive(msg)
        self._on_archive(msg)

    @property
    def running(self) -> bool:
        return self.pipeline is not None and self.pipeline.status.running

    def start(self, max_frames: int | None = None, keep_all_latencies: bool = False) -> bool:
        """Start inspecting from the configured source; False (and a message) if it cannot be made.
        `max_frames` ends the run after that many verdicts; `keep_all_latencies` keeps every
        latency for the run's summary (headless) instead of a rolling window (the window)."""
        self.stop()
        try:
            source = self._wrap_source(make_source(self.cfg.source, self.cfg))
        except (SourceError, ValueError) as e:
            self._message(logging.ERROR, f"source: {e}")
            return False
        self.source_name = source.describe()
        self.pipeline = Pipeline(
            source,
            self.model,
            self._result,
            on_status=self._status,
            on_message=self._message,
            archive=self.archive,
            options=PipelineOptions(
                max_frames=max_frames,
                retry_initial_s=self._retry_initial_s,
                retry_max_s=self.cfg.retry_max_s,
                keep_all_latencies=keep_all_latencies,
                triggered=self.triggered,
            ),
            on_trigger_failed=self._trigger_failed,
        )
        self.pipeline.set_thresholds(self.cfg.thresholds)
        self.pipeline.start()
        return True

    def _message(self, level: int, msg: str) -> None:
        if self._log_messages:
            log.log(level, "%s", msg)  # the station's log (journal, terminal) as well as the window
        self._on_message(level, msg)

    @property
    def triggered(self) -> bool:
        return self.cfg.trigger != "free" or bool(self.cfg.plc)

    def trigger(self, origin: str = "key") -> Trigger | None:
        """Inspect the next frame captured from now (triggered mode); None when not taken (a
        trigger is still open, or the station is not inspecting)."""
        pipe = self.pipeline
        return pipe.trigger(origin) if pipe is not None else None

    def open_plc(self) -> None:
        """Start the PLC server the settings ask for (none when `plc` is empty); raises
        edge_app.plc.serving.PlcServerError (one line naming the setting) when it cannot listen."""
        self.close_plc()
        if not self.cfg.plc:
            return
        from edge_app.plc import PlcLink

        link = PlcLink(self.cfg, self.trigger, self.reset_counters)
        link.start()
        self.plc = link
        if self.pipeline is not None:
            link.on_status(self.pipeline.status)
        if self.archive is not None:
            link.on_archive(self.archive.message)
        self._message(logging.INFO, f"PLC server: {link.describe()}")

    def close_plc(self) -> None:
        if self.plc is not None:
            self.plc.close()
            self.plc = None

    def _status(self, st: Status) -> None:
        if self.plc is not None:
            self.plc.on_status(st)
        self._on_status(st)

    def _trigger_failed(self, t: Trigger, kind: str, msg: str) -> None:
        seq = self.plc.on_trigger_failed(t, kind, msg) if self.plc is not None else None
        self._message(logging.WARNING, f"trigger {t.id} ({t.origin}): no result, {kind}: {msg}")
        self._on_trigger_failed(t, kind, msg, seq)

    def _result(self, r: Result) -> None:
        if self.plc is not None:
            r.sequence = self.plc.on_result(r)  # the PLC first: it is the one waiting on the line
        self.stats.add(r)
        self._on_result(r)

    def stop(self, timeout: float = 3.0) -> None:
        if self.pipeline is not None:
            self.pipeline.stop(timeout)

    def close(self) -> None:
        self.stop()
        self.close_plc()
        if self.archive is not None:
            self.archive.close()

    def reset_counters(self) -> None:
        """Zero the session's counters and the current run's (the PLC's reset command does this)."""
        self.stats = Stats()
        if self.pipeline is not None:
            self.pipeline.reset_stats()

    def set_thresholds(self, thresholds: dict[str, float]) -> None:
        self.cfg = replace(self.cfg, thresholds={**self.cfg.thresholds, **thresholds})
        if self.pipeline is not None:
            self.pipeline.set_thresholds(self.cfg.thresholds)

    def apply_config(self, cfg: StationConfig) -> bool:
        """Use new settings: reload the model only if its fields changed, reopen the archive only
        if it moved, restart the pipeline if it was running. Returns whether it restarted."""
        was_running = self.running
        self.stop()
        old, self.cfg = self.cfg, cfg
        if any(getattr(old, f) != getattr(cfg, f) for f in _MODEL_FIELDS) or self.model.error:
            self.model = ModelHolder(self._load_runtime(cfg), describe=str(cfg.model_dir()))
        if (old.archive_path(), old.archive_enabled) != (cfg.archive_path(), cfg.archive_enabled):
            if self.archive is not None:
                self.archive.close()
            self.archive = self._make_archive(cfg)
        elif self.archive is not None:
            self.archive.keep = KeepPolicy.of(cfg)
            self.archive.n_pins = part_pins(cfg.part)
            self.archive.max_bytes = cfg.archive_max_bytes()
        if any(getattr(old, f) != getattr(cfg, f) for f in _PLC_FIELDS) and (self.plc is not None or cfg.plc):
            from edge_app.plc.serving import PlcServerError

            try:
                self.open_plc()
            except PlcServerError as e:
                self._message(logging.ERROR, str(e))
        if was_running:
            return self.start()
        return False

    def switch_model(self, folder: str) -> tuple[bool, str]:
        """Run the bundle in `folder` ("" = the shipped one) from the next frame on, without
        stopping the line; the bundle it replaces heads `cfg.model_history` for a rollback. A
        bundle that does not load changes nothing: the running model stays. Returns (switched,
        one line saying what happened)."""
        cfg = replace(self.cfg, model=folder)
        try:
            runtime = self._load_runtime(cfg)()
        except Exception as e:  # the runtime's BundleError, or anything a broken bundle raises
            why = (str(e).strip().splitlines() or [type(e).__name__])[0]
            still = model_title(self.model.runtime) or str(self.cfg.model_dir())
            msg = f"model {cfg.model_dir()} not loaded ({why}); still running {still}"
            self._message(logging.ERROR, msg)
            return False, msg
        if self.cfg.thresholds:
            runtime.set_thresholds(self.cfg.thresholds)  # the operator's thresholds hold for the new model too
        history = [m for m in (self.cfg.model, *self.cfg.model_history) if m != folder][:MODEL_HISTORY]
        self.cfg = replace(cfg, model_history=history)
        old = self.model.swap(runtime, describe=str(cfg.model_dir()))
        msg = f"model switched to {model_title(runtime)} ({cfg.model_dir()})"
        msg += f"; {model_title(old)} kept for a rollback" if old is not None else ""
        self._message(logging.INFO, msg)
        return True, msg

    def rollback_model(self) -> tuple[bool, str]:
        """Back to the bundle run before this one (the head of `cfg.model_history`)."""
        if not self.cfg.model_history:
            return False, "no earlier model to roll back to"
        return self.switch_model(self.cfg.model_history[0])

    def input_spec(self) -> Any:
        rt = self.model.runtime
        return getattr(rt, "input_spec", None) if rt is not None else None

    def pin_radius(self) -> int:
        """The circle around a defective pin on the live view: one pitch of the running model's part
        (the bundle carries it), read once per model."""
        rt = self.model.runtime
        if rt is not self._radius_of[0]:
            part = getattr(rt, "info", {}).get("part") if rt is not None else None
            try:
                radius = pin_radius(part_from_dict(part, source="the model's part")) if part else NO_MODEL_RADIUS
            except PartSpecError as e:  # read_bundle checked it; a circle is not worth a crash
                log.warning("%s", e)
                radius = NO_MODEL_RADIUS
            self._radius_of = (rt, radius)
        return self._radius_of[1]
