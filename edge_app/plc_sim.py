"""`python -m edge_app.plc_sim`: a PLC simulator for commissioning a line without its PLC.

It connects to a running station's PLC server (Modbus TCP or OPC UA), drives N handshake cycles
exactly as a PLC program written against the register map would, checks every answer (Sequence +1
each cycle, OK/NG agreeing with Result, no result without Fault), and prints a table of the
results and the cycle times (p50 / p99 trigger-to-ResultValid, as the PLC sees it).
Exit status: 0 when every cycle was answered correctly, 1 when one was not, 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

from edge_app.plc.client import Cycle, PlcClientError, connect, cycle, wait_for
from edge_app.plc.registers import FaultCode, ResultCode
from models.cli import command_parser

EPILOG = """\
start the station first, e.g.
  python -m edge_app --headless --source sim --plc modbus:0.0.0.0:5020 --quiet
then, on the same PC or on one in the PLC's network:
  python -m edge_app.plc_sim --plc modbus:127.0.0.1:5020 --cycles 100
  python -m edge_app.plc_sim --plc opcua:10.0.0.7:4840 --cycles 1000 --poll-ms 10
The register map and the handshake are in the README, "The station on the line".
"""


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "python -m edge_app.plc_sim",
        EPILOG,
        description="Drive N PLC handshake cycles against a running station and report results and cycle times.",
    )
    p.add_argument(
        "--plc", required=True, metavar="PROTO[:HOST[:PORT]]", help="modbus[:HOST[:PORT]] or opcua[:HOST[:PORT]]"
    )
    p.add_argument("--unit", type=int, default=1, help="Modbus unit id of the station (default 1)")
    p.add_argument("--cycles", type=int, default=100, help="handshake cycles to drive (default 100)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each step (default 5)")
    p.add_argument(
        "--wait-ready", type=float, default=60.0, help="seconds to wait for a station still starting (default 60)"
    )
    p.add_argument("--poll-ms", type=float, default=0.0, help="pause between reads, as a PLC scan (default 0)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object instead of a table")
    return p


def check(cycles: list[Cycle], first_sequence: int | None = None) -> list[str]:
    """What is wrong with the answers, one line each (empty when the station answered every cycle right)."""
    problems = []
    prev = first_sequence
    for i, c in enumerate(cycles):
        s = c.signals
        if prev is not None and s["Sequence"] != (prev + 1) % 65536:
            problems.append(f"cycle {i + 1}: Sequence {s['Sequence']} after {prev} (lost or repeated result)")
        prev = s["Sequence"]
        if s["Result"] == ResultCode.OK and not (s["OK"] and not s["NG"]):
            problems.append(f"cycle {i + 1}: Result OK but OK={s['OK']} NG={s['NG']}")
        if s["Result"] in (ResultCode.BENDNG, ResultCode.NUKENG) and not (s["NG"] and not s["OK"] and s["Pin"]):
            problems.append(f"cycle {i + 1}: Result NG but OK={s['OK']} NG={s['NG']} Pin={s['Pin']}")
        if s["Result"] == ResultCode.NO_RESULT and not (s["Fault"] and s["FaultCode"]):
            problems.append(f"cycle {i + 1}: no result without Fault / FaultCode")
    return problems


def report(cycles: list[Cycle], problems: list[str], seconds: float) -> dict[str, Any]:
    ms = np.asarray([c.trigger_to_valid_ms for c in cycles], np.float64)
    station = np.asarray([c.signals["Latency"] / 10.0 for c in cycles], np.float64)
    results = {code.name: sum(1 for c in cycles if c.signals["Result"] == code) for code in ResultCode}
    faults = {code.name: sum(1 for c in cycles if c.signals["FaultCode"] == code) for code in FaultCode if code}

    def pct(a: np.ndarray, q: float) -> float | None:
        return round(float(np.percentile(a, q)), 2) if a.size else None

    return {
        "cycles": len(cycles),
        "seconds": round(seconds, 2),
        "cycles_per_s": round(len(cycles) / seconds, 1) if seconds > 0 else None,
        "results": results,
        "faults": {k: v for k, v in faults.items() if v},
        "trigger_to_result_valid_ms": {"p50": pct(ms, 50), "p99": pct(ms, 99), "max": pct(ms, 100)},
        "station_latency_ms": {"p50": pct(station, 50), "p99": pct(station, 99)},
        "problems": problems,
    }


def format_report(r: dict[str, Any]) -> str:
    t, s = r["trigger_to_result_valid_ms"], r["station_latency_ms"]
    rows = [
        ("cycles", f"{r['cycles']} in {r['seconds']} s ({r['cycles_per_s']} /s)"),
        *((f"  {k}", str(v)) for k, v in r["results"].items()),
        ("trigger->ResultValid", f"p50 {t['p50']} ms, p99 {t['p99']} ms, max {t['max']} ms (as the PLC sees it)"),
        ("station Latency reg", f"p50 {s['p50']} ms, p99 {s['p99']} ms (trigger to result, inside the station)"),
        ("faults", ", ".join(f"{k} {v}" for k, v in r["faults"].items()) or "none"),
        ("problems", str(len(r["problems"])) if r["problems"] else "none: Sequence +1 every cycle"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    lines += [f"  {p}" for p in r["problems"][:20]]
    return "\n".join(lines)


def run(
    spec: str, n: int, unit: int = 1, timeout_s: float = 5.0, poll_s: float = 0.0, wait_ready_s: float = 60.0
) -> dict[str, Any]:
    """Drive `n` cycles; the report (raises PlcClientError when the station stops answering)."""
    deadline = time.perf_counter() + wait_ready_s
    while True:  # a station just started may not listen yet, and renders and loads before it is Ready
        try:
            plc = connect(spec, unit)
            break
        except PlcClientError:
            if time.perf_counter() > deadline:
                raise
            time.sleep(0.5)
    try:
        wait_for(plc, "Ready", 1, max(0.0, deadline - time.perf_counter()), 0.05)
        first = plc.read()["Sequence"]
        cycles: list[Cycle] = []
        t0 = time.perf_counter()
        for _ in range(n):
            cycles.append(cycle(plc, timeout_s, poll_s))
        seconds = time.perf_counter() - t0
    finally:
        plc.close()
    return report(cycles, check(cycles, first), seconds)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from edge_app.plc import parse_plc

    try:
        parse_plc(args.plc)
    except ValueError as e:
        print(f"error: --plc {args.plc!r}: {e}", file=sys.stderr)
        return 2
    if not 1 <= args.unit <= 247:
        print(f"error: --unit: {args.unit} is outside [1, 247]", file=sys.stderr)
        return 2
    if args.cycles < 1:
        print("error: --cycles must be at least 1", file=sys.stderr)
        return 2
    try:
        r = run(args.plc, args.cycles, args.unit, args.timeout, args.poll_ms / 1000.0, args.wait_ready)
    except PlcClientError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(r) if args.json else format_report(r))
    return 1 if r["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
