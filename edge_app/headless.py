"""Headless station: the same pipeline as the window, one JSON line per verdict on stdout and a
summary at the end (frames, fps, latency p50/p95/p99, counts, accuracy vs truth when known).

    {"frame": 12, "label": "BENDNG", "pin": 5, "scores": {...}, "latency_ms": 4.1, "truth": {"label": ..., "pin": ...}}
    ...
    {"summary": {"frames": 600, "fps": 212.4, "latency_ms": {"p50": ..., "p95": ..., "p99": ...}, ...}}

Triggered (`trigger` other than free, or a `plc` server): one frame is inspected per trigger, from
the PLC (`--plc modbus[:HOST[:PORT]]` / `opcua[:...]`) or from stdin (`--trigger stdin`: one
inspection per line; the run ends once stdin ends and the last one is answered). Each verdict line
then also carries its trigger (id, origin, trigger->verdict ms) and the PLC Sequence it was given;
a trigger that got no verdict is a line {"trigger": ..., "result": "no result", "fault": ...}.

A readable copy of the summary goes to stderr. Exit status: 0 when the run ended normally (frame
count reached, the video/folder ended, or SIGINT / SIGTERM: the frame being inspected is finished,
the archive flushed and the summary printed), 1 when the model or the source failed or nothing at
all was inspected (the reason on stderr). A second signal ends the process at once.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from edge_app.events import ModelState, Result, SourceState, Trigger
from edge_app.model import RuntimeLike, model_choice, model_title, runtime_factory
from edge_app.pipeline import Pipeline
from edge_app.settings import StationConfig
from edge_app.station import Station

log = logging.getLogger(__name__)
STOP_WAIT_S = 3.0  # how long a stop waits for the capture and inference threads


def result_record(r: Result) -> dict[str, Any]:
    v, f = r.verdict, r.frame
    rec: dict[str, Any] = {
        "frame": f.index,
        "label": v.label,
        "pin": int(v.pin),
        "scores": {k: round(float(s), 4) for k, s in v.scores.items()},
        "latency_ms": round(r.latency_ms, 2),
    }
    if f.name:
        rec["file"] = f.name
    if f.truth is not None:
        rec["truth"] = {"label": f.truth.label, "pin": f.truth.pin}
    if r.trigger is not None:
        rec["trigger"] = {"id": r.trigger.id, "origin": r.trigger.origin, "ms": round(r.trigger_ms, 2)}
    return rec


def format_summary(s: dict[str, Any]) -> str:
    lat = s.get("latency_ms", {})
    head = [
        f"model    {s.get('model', '?')}",
        *([f"choice   {s['model_choice']}"] if s.get("model_choice") else []),
        f"source   {s.get('source', '?')}",
    ]
    if not s.get("frames"):
        plc: list[str] = []
        if s.get("plc"):
            from edge_app.plc.handshake import format_link

            plc = [format_link(s["plc"])]
        return "\n".join([*head, "frames   0 inspected", *plc])
    lines = [
        *head,
        f"frames   {s['frames']} in {s['seconds']} s = {s['fps']} fps"
        + (f" ({s['dropped']} dropped by latest-frame-wins)" if s.get("dropped") else ""),
        f"latency  capture->verdict p50 {lat.get('p50')} ms, p95 {lat.get('p95')} ms, p99 {lat.get('p99')} ms"
        f" (model alone p50 {s.get('infer_ms_p50')} ms)",
        "counts   " + ", ".join(f"{k} {v}" for k, v in s["counts"].items()) + f"  (yield {s.get('yield')})",
    ]
    if s.get("rejected"):
        lines.append(f"rejected {s['rejected']} frames the model could not take")
    if "accuracy" in s:
        a = s["accuracy"]
        lines.append(
            f"accuracy vs truth ({s['truth_known']} frames): label {a['label']}, NG-vs-OK {a['ng_vs_ok']}, "
            f"pin (defects) {a['pin']}"
        )
    if s.get("archive"):
        lines.append(f"archive  {s['archive']}")
    if s.get("plc"):
        from edge_app.plc.handshake import format_link

        lines.append(format_link(s["plc"]))
    return "\n".join(lines)


def run(
    cfg: StationConfig,
    frames: int | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    quiet: bool = False,
    load_runtime: Callable[[], RuntimeLike] | None = None,
    stdin: TextIO | None = None,
    on_plc: Callable[[Any], None] = lambda link: None,
) -> tuple[int, dict[str, Any]]:
    """Run the station (the window's core, `Station`) without a window; returns (exit status,
    summary). Exit 2 when the PLC server cannot listen. `on_plc` gets the PlcLink once it
    listens (tests read its port)."""
    out = out or sys.stdout
    err = err or sys.stderr
    output = _Output(out, err, quiet)
    station = Station(
        cfg,
        on_result=output.on_result,
        on_message=output.on_message,
        load_runtime=(lambda c: load_runtime) if load_runtime is not None else runtime_factory,
        on_trigger_failed=output.on_trigger_failed,
        log_messages=False,
    )
    try:
        if cfg.plc:
            from edge_app.plc.serving import PlcServerError

            try:
                station.open_plc()
            except PlcServerError as e:
                print(f"error: {e}", file=err)
                return 2, {}
            assert station.plc is not None
            print(f"plc: serving {station.plc.describe()}", file=err)
            on_plc(station.plc)
        if not station.start(max_frames=frames, keep_all_latencies=True):
            print(f"error: {output.last_error}", file=err)
            return 1, {}
        assert station.pipeline is not None
        stopped_by: list[str] = []  # the signal that ended the run, once one has
        old_handlers = _stop_on_signals(station.pipeline, stopped_by)
        try:
            if station.triggered and cfg.trigger == "stdin":
                args = (station.pipeline, stdin or sys.stdin, err)
                threading.Thread(target=_stdin_triggers, args=args, daemon=True).start()
            return _run_to_end(station, stopped_by, output)
        finally:
            for signum, handler in old_handlers.items():
                signal.signal(signum, handler)
    finally:
        station.close()


class _Output:
    """stdout: one JSON line per verdict (and per trigger that got none), from the pipeline's
    threads; stderr: warnings as they happen. Errors end the run and are printed once at the end,
    so stdout stays a clean JSON stream."""

    def __init__(self, out: TextIO, err: TextIO, quiet: bool):
        self.out, self.err, self.quiet = out, err, quiet
        self.lock = threading.Lock()
        self.last_error = ""

    def write(self, rec: dict[str, Any]) -> None:
        if not self.quiet:
            line = json.dumps(rec)
            with self.lock:
                self.out.write(line + "\n")
                self.out.flush()

    def on_result(self, r: Result) -> None:
        rec = result_record(r)
        if r.sequence is not None:
            rec["sequence"] = r.sequence
        self.write(rec)

    def on_trigger_failed(self, t: Trigger, kind: str, msg: str, seq: int | None) -> None:
        rec: dict[str, Any] = {"trigger": {"id": t.id, "origin": t.origin}, "result": "no result", "fault": kind}
        self.write({**rec, "message": msg, **({"sequence": seq} if seq is not None else {})})

    def on_message(self, level: int, msg: str) -> None:
        if level >= logging.ERROR:
            self.last_error = msg  # printed once at the end, or when the run cannot start
        elif level == logging.WARNING:  # skipped images, camera retries, triggers without a verdict
            print(f"warning: {msg}", file=self.err)
        elif level < logging.WARNING:
            log.info("%s", msg)


def _stop_on_signals(pipe: Pipeline, stopped_by: list[str]) -> dict[int, Any]:
    """SIGINT / SIGTERM finish the frame in hand and end the run (a second one ends the process at
    once); returns the handlers they replaced. Only the main thread can take signals."""
    old: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return old

    def on_stop_signal(signum: int, frame: Any) -> None:
        if stopped_by:  # asked twice: the operator does not want to wait for the archive
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        stopped_by.append(signal.Signals(signum).name)
        pipe.stop(timeout=0)

    for sig in (signal.SIGINT, signal.SIGTERM):
        old[sig] = signal.signal(sig, on_stop_signal)
    return old


def _stdin_triggers(pipe: Pipeline, stdin: TextIO, err: TextIO) -> None:
    """One trigger per line, each once the previous one is answered; at the end of stdin, the run
    ends when the last trigger is answered."""
    while not pipe.status.running:  # until the run has started
        time.sleep(0.01)
    for _line in stdin:
        while pipe.status.running and pipe.trigger("stdin") is None:
            time.sleep(0.002)  # the previous trigger is still open, or the camera is not running yet
    while pipe.status.running and pipe.trigger_open is not None:
        time.sleep(0.002)
    pipe.stop(timeout=0)


def _run_to_end(station: Station, stopped_by: list[str], output: _Output) -> tuple[int, dict[str, Any]]:
    pipe, cfg, err = station.pipeline, station.cfg, output.err
    assert pipe is not None
    try:
        while not stopped_by and not pipe.wait(timeout=0.2):
            pass
    finally:
        # bounded: a source stuck in a read (a hung network camera) is left behind; its thread is a
        # daemon and does not keep the process alive. The frame being inferred is finished.
        station.stop(timeout=STOP_WAIT_S)
        if station.archive is not None:
            station.archive.close()
    st = pipe.status
    summary = pipe.summary()
    summary["model"] = model_title(station.model.runtime) or str(cfg.model_dir())
    if model_choice(station.model.runtime):
        summary["model_choice"] = model_choice(station.model.runtime)
    summary["source"] = station.source_name
    summary["end"] = f"{st.source.value}" + (f": {st.source_msg}" if st.source_msg else "")
    if stopped_by:
        summary["end"] = f"stopped by {stopped_by[0]}"
    if station.plc is not None:
        summary["plc"] = station.plc.link()
    if station.archive is not None:
        archive = station.archive
        summary["archive"] = archive.summary() + (f"; {archive.message}" if archive.message else "")
    with output.lock:
        output.out.write(json.dumps({"summary": summary}) + "\n")
        output.out.flush()
    print(format_summary(summary), file=err)
    if stopped_by:
        print(f"stopped by {stopped_by[0]}", file=err)
    if st.model is ModelState.FAILED:
        print(f"error: model: {st.model_msg}", file=err)
        return 1, summary
    if st.source is SourceState.FAILED:
        print(f"error: source: {st.source_msg}", file=err)
        return 1, summary
    plc_cycles = station.plc is not None and summary["plc"]["cycles"]
    if not stopped_by and not summary.get("frames") and not plc_cycles:
        why = (
            f"the model refused all {summary['rejected']} frames ({st.frame_msg})"
            if summary.get("rejected")
            else f"the source gave no frames ({summary['end']})"
        )
        print(f"error: nothing inspected: {why}", file=err)
        return 1, summary
    return 0, summary
