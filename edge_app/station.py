"""The station without its widgets: config, model, archive and the current pipeline. No Qt.

The window forwards clicks here (start, stop, thresholds, new settings) and shows what comes
back through the callbacks, which run on worker threads; the Qt layer turns them into signals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from edge_app.archive import Archive
from edge_app.pipeline import (
    ModelHolder,
    Pipeline,
    PipelineOptions,
    Result,
    RuntimeLike,
    Stats,
    Status,
    runtime_factory,
)
from edge_app.settings import StationConfig
from edge_app.sources import SourceError, make_source

log = logging.getLogger(__name__)

_MODEL_FIELDS = ("model", "backend", "precision", "part")


class Station:
    def __init__(
        self,
        cfg: StationConfig,
        on_result: Callable[[Result], None] = lambda r: None,
        on_status: Callable[[Status], None] = lambda s: None,
        on_message: Callable[[int, str], None] = lambda level, msg: None,
        on_archive: Callable[[str], None] = lambda msg: None,
        load_runtime: Callable[[StationConfig], Callable[[], RuntimeLike]] = runtime_factory,
    ):
        self.cfg = cfg
        self._on_result, self._on_status, self._on_message = on_result, on_status, on_message
        self._on_archive = on_archive
        self._load_runtime = load_runtime
        self.model = ModelHolder(load_runtime(cfg), describe=str(cfg.model_dir()))
        self.archive: Archive | None = self._make_archive(cfg)
        self.pipeline: Pipeline | None = None
        self.stats = Stats()  # the session's counters, across start / stop, until reset
        self.source_name = ""

    def _make_archive(self, cfg: StationConfig) -> Archive | None:
        return Archive(cfg.archive_path(), on_state=self._on_archive) if cfg.archive_enabled else None

    @property
    def running(self) -> bool:
        return self.pipeline is not None and self.pipeline.status.running

    def start(self) -> bool:
        """Start inspecting from the configured source; False (and a message) if it cannot be made."""
        self.stop()
        try:
            source = make_source(self.cfg.source, self.cfg)
        except (SourceError, ValueError) as e:
            self._on_message(logging.ERROR, f"source: {e}")
            return False
        self.source_name = source.describe()
        self.pipeline = Pipeline(
            source,
            self.model,
            self._result,
            on_status=self._on_status,
            on_message=self._message,
            archive=self.archive,
            options=PipelineOptions(retry_max_s=self.cfg.retry_max_s),
        )
        self.pipeline.set_thresholds(self.cfg.thresholds)
        self.pipeline.start()
        return True

    def _message(self, level: int, msg: str) -> None:
        log.log(level, "%s", msg)  # the station's log (journal, terminal) as well as the window
        self._on_message(level, msg)

    def _result(self, r: Result) -> None:
        self.stats.add(r)
        self._on_result(r)

    def stop(self, timeout: float = 3.0) -> None:
        if self.pipeline is not None:
            self.pipeline.stop(timeout)

    def close(self) -> None:
        self.stop()
        if self.archive is not None:
            self.archive.close()

    def reset_counters(self) -> None:
        self.stats = Stats()

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
        if was_running:
            return self.start()
        return False

    def input_spec(self) -> Any:
        rt = self.model.runtime
        return getattr(rt, "input_spec", None) if rt is not None else None
