"""The PLC handshake over the signals of edge_app.plc.registers: protocol-free and Qt-free.

The Modbus and OPC UA servers only move values: a PLC write goes to `write`, a PLC read comes from
`snapshot`, and listeners hear every change in order. The station side calls `trigger` (given),
and answers with `on_result` / `on_trigger_failed`; `set_condition` says whether it can inspect.

    PLC waits for Ready, sets Trigger -> Ready 0, Busy 1, one frame inspected
    result registers written, then ResultValid 1, Busy 0
    PLC reads, sets Ack, clears Trigger -> ResultValid 0, Ready 1 again; the PLC clears Ack

A trigger while not Ready is ignored and counted. A cycle that cannot give a verdict answers
Result 3 (no result) with Fault and FaultCode set: never a fake OK. Sequence counts every answered
cycle, so a PLC sees +1 per cycle, no gap, no repeat.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from edge_app.events import ModelState, Result, SourceState, Status, Trigger
from edge_app.plc.registers import BY_NAME, HEARTBEAT_S, SIGNALS, FaultCode, ResultCode, Table

Listener = Callable[[list[tuple[str, int]]], None]
FAULT_OF_KIND = {"camera": FaultCode.CAMERA, "model": FaultCode.MODEL, "archive": FaultCode.ARCHIVE}
# result registers before the bits, so a PLC that sees ResultValid finds the result already there
_ORDER = [s.name for s in SIGNALS if s.table is Table.INPUT_REGISTER] + [
    s.name for s in SIGNALS if s.table is not Table.INPUT_REGISTER
]


def condition_of(status: Status) -> tuple[bool, FaultCode, str]:
    """(can inspect, fault code, why) for a pipeline status; loading or connecting is not a fault."""
    if status.model is ModelState.FAILED:
        return False, FaultCode.MODEL, status.model_msg or "model failed"
    if status.source in (SourceState.DISCONNECTED, SourceState.FAILED, SourceState.ENDED):
        return False, FaultCode.CAMERA, status.source_msg or f"source {status.source.value}"
    if status.source is SourceState.STOPPED and not status.running:
        return False, FaultCode.OTHER, "station stopped"
    ok = status.running and status.source is SourceState.RUNNING and status.model is ModelState.READY
    return ok, FaultCode.NONE, ""


class Handshake:
    def __init__(
        self,
        trigger: Callable[[], Trigger | None],
        reset_counters: Callable[[], None] = lambda: None,
        heartbeat_s: float = HEARTBEAT_S,
    ):
        self._trigger_fn, self._reset_fn, self.heartbeat_s = trigger, reset_counters, heartbeat_s
        self._lock = threading.RLock()
        self._image: dict[str, int] = {s.name: 0 for s in SIGNALS}
        self._image["Result"] = ResultCode.NO_RESULT
        self._listeners: list[Listener] = []
        self._available = False
        self._cond: tuple[FaultCode, str] = (FaultCode.NONE, "")
        self._archive_msg = ""
        self._cycle_fault: tuple[FaultCode, str] = (FaultCode.NONE, "")
        self._open: Trigger | None = None
        self._result_valid = False
        self._t_valid = 0.0
        self.cycles = 0  # answered cycles (results and no-results)
        self.ignored = 0  # triggers while not Ready
        self.late = 0  # answers for a cycle already closed (dropped, never shown to the PLC)
        self.last_trigger_wall: float | None = None
        self.cycle_ms: deque[float] = deque(maxlen=10000)  # trigger to ResultValid
        self.clients: list[str] = []
        self.endpoint = ""
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._refresh()

    # -- lifetime ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the heartbeat."""
        if self._beat is None:
            self._beat = threading.Thread(target=self._heartbeat, name="pininspect-plc-heartbeat", daemon=True)
            self._beat.start()

    def close(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(2 * self.heartbeat_s)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with self._lock:
                self._image["Heartbeat"] ^= 1
                self._emit([("Heartbeat", self._image["Heartbeat"])])

    def add_listener(self, listener: Listener) -> None:
        """`listener(changes)` hears every change, in order, under the handshake's lock: it must
        not block (the OPC UA server hands the changes to its event loop)."""
        with self._lock:
            self._listeners.append(listener)
            listener([(name, self._image[name]) for name in _ORDER])

    # -- the PLC side ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._image)

    def write(self, name: str, value: int | bool) -> None:
        """The PLC wrote a coil."""
        if name not in BY_NAME or not BY_NAME[name].table.plc_writes:
            raise KeyError(f"{name} is not a signal the PLC writes")
        with self._lock:
            old, new = self._image[name], int(bool(value))
            self._image[name] = new
            before = dict(self._image)
            if name == "Trigger" and new and not old:
                self._on_trigger_edge()
            if name == "ResetCounters" and new and not old:
                self.cycles = self.ignored = self.late = 0
                self.cycle_ms.clear()
                self._reset_fn()
            if self._result_valid and self._image["Ack"] and not self._image["Trigger"]:
                self._result_valid = False
            self._refresh(before)

    def _on_trigger_edge(self) -> None:
        self.last_trigger_wall = time.time()
        if not self._image["Ready"]:
            self.ignored += 1
            return
        t = self._trigger_fn()
        if t is None:  # the station could not take it after all (stopping, camera just lost)
            code = self._cond[0] if self._cond[0] is not FaultCode.NONE else FaultCode.OTHER
            self._answer(None, code, "the station could not take the trigger", time.perf_counter())
            return
        self._open = t

    # -- the station side ---------------------------------------------------------------------

    def on_result(self, r: Result) -> int | None:
        """A verdict for the open trigger: the result registers, then ResultValid. Returns the
        Sequence it was given (None for a result no PLC cycle asked for)."""
        with self._lock:
            if r.trigger is None or r.trigger is not self._open:
                if r.trigger is not None and r.trigger.origin == "plc":
                    self.late += 1
                return None
            return self._answer(r, FaultCode.NONE, "", time.perf_counter())

    def on_trigger_failed(self, t: Trigger, kind: str, msg: str) -> int | None:
        with self._lock:
            if t is not self._open:
                return None
            return self._answer(None, FAULT_OF_KIND.get(kind, FaultCode.OTHER), msg, time.perf_counter())

    def _answer(self, r: Result | None, code: FaultCode, msg: str, now: float) -> int:
        before = dict(self._image)
        im = self._image
        t0 = self._open.t if self._open is not None else now
        if r is not None:
            label = r.verdict.label
            im["Result"] = ResultCode[label] if label in ResultCode.__members__ else ResultCode.NO_RESULT
            im["Pin"] = int(r.verdict.pin) if label != "OK" else 0
            defects = [float(v) for k, v in r.verdict.scores.items() if k != "OK"]
            im["Score"] = int(round(1000 * max(defects, default=0.0)))
            self._cycle_fault = (FaultCode.NONE, "")
        else:
            im["Result"], im["Pin"], im["Score"] = ResultCode.NO_RESULT, 0, 0
            self._cycle_fault = (code, msg)
        im["Latency"] = int(min(65535, round((now - t0) * 10000)))
        im["Sequence"] = (im["Sequence"] + 1) % 65536
        im["OK"] = int(r is not None and r.verdict.label == "OK")
        im["NG"] = int(r is not None and r.verdict.label != "OK")
        self._open, self._result_valid, self._t_valid = None, True, now
        self.cycles += 1
        self.cycle_ms.append((now - t0) * 1000.0)
        self._refresh(before)
        return im["Sequence"]

    def set_condition(self, status: Status) -> None:
        """The pipeline's status: whether a trigger can be taken, and the fault if not."""
        available, code, msg = condition_of(status)
        with self._lock:
            before = dict(self._image)
            if available and not self._available:
                self._cycle_fault = (FaultCode.NONE, "")  # recovered: the failed cycle's fault is over
            self._available, self._cond = available, (code, msg)
            self._refresh(before)

    def set_archive(self, message: str) -> None:
        """The archive's state ("" when saving works): a fault the PLC sees, inspection goes on."""
        with self._lock:
            before = dict(self._image)
            self._archive_msg = message
            self._refresh(before)

    # -- derived signals ------------------------------------------------------------------------

    def fault(self) -> tuple[FaultCode, str]:
        with self._lock:
            for code, msg in (self._cond, self._cycle_fault):
                if code is not FaultCode.NONE:
                    return code, msg
            if self._archive_msg:
                return FaultCode.ARCHIVE, self._archive_msg
            return FaultCode.NONE, ""

    def _refresh(self, before: dict[str, int] | None = None) -> None:
        im = self._image
        im["Busy"] = int(self._open is not None)
        im["ResultValid"] = int(self._result_valid)
        im["Ready"] = int(self._available and self._open is None and not self._result_valid)
        code, _ = self.fault()
        im["Fault"], im["FaultCode"] = int(code is not FaultCode.NONE), int(code)
        if before is not None:
            changes = [(n, im[n]) for n in _ORDER if im[n] != before.get(n)]
            if changes:
                self._emit(changes)

    def _emit(self, changes: list[tuple[str, int]]) -> None:
        for listener in self._listeners:
            listener(changes)

    # -- what the window and the summary show -------------------------------------------------

    def link(self) -> dict[str, Any]:
        with self._lock:
            ms = np.asarray(self.cycle_ms, np.float64)
            code, msg = self.fault()
            return {
                "endpoint": self.endpoint,
                "clients": list(self.clients),
                "last_trigger": (
                    time.strftime("%H:%M:%S", time.localtime(self.last_trigger_wall))
                    if self.last_trigger_wall
                    else None
                ),
                "cycles": self.cycles,
                "sequence": self._image["Sequence"],
                "ignored": self.ignored,
                "late": self.late,
                "cycle_ms": {
                    "last": round(float(ms[-1]), 2) if ms.size else None,
                    "p50": round(float(np.percentile(ms, 50)), 2) if ms.size else None,
                    "p99": round(float(np.percentile(ms, 99)), 2) if ms.size else None,
                },
                "fault": f"{code.name.lower()}: {msg}" if code is not FaultCode.NONE else "",
            }


def format_link(link: dict[str, Any]) -> str:
    """The PLC lines of the headless summary (the window shows the same fields)."""
    c = link.get("cycle_ms") or {}
    clients = ", ".join(link.get("clients") or []) or "none connected"
    lines = [
        f"plc      {link.get('endpoint', '?')}: {clients}",
        f"cycles   {link.get('cycles', 0)} (last trigger {link.get('last_trigger') or '-'}), trigger->result "
        f"last {c.get('last')} ms, p50 {c.get('p50')} ms, p99 {c.get('p99')} ms; "
        f"ignored triggers {link.get('ignored', 0)}",
    ]
    if link.get("fault"):
        lines.append(f"plc fault {link['fault']}")
    return "\n".join(lines)
