"""The station on the line with the shipped model: a real pymodbus client and a real asyncua client
on loopback drive handshake cycles against the station on the simulator; every result the PLC reads
is the station's own verdict for a frame captured after that cycle's trigger."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edge_app.plc.client import ModbusPlc, OpcUaPlc, cycle, wait_for
from edge_app.plc.registers import ResultCode, Table, in_table
from edge_app.settings import StationConfig
from edge_app.station import Station

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_station(plc: str, port: int) -> tuple[Station, list]:
    cfg = StationConfig(
        source="sim", sim_fps=0, sim_pool=16, plc=plc, plc_host="127.0.0.1", plc_port=port, archive_enabled=False
    )
    verdicts: list = []
    st = Station(cfg, on_result=verdicts.append)
    st.open_plc()
    st.start()
    return st, verdicts


def drive_and_check(client, st: Station, verdicts: list, n: int) -> list:
    wait_for(client, "Ready", 1, 60)
    first = client.read()["Sequence"]
    cycles = [cycle(client, timeout_s=10) for _ in range(n)]
    seqs = [c.signals["Sequence"] for c in cycles]
    assert seqs == [(first + i + 1) % 65536 for i in range(n)]  # +1 every cycle: none lost, none repeated
    assert len(verdicts) == n  # one inspection per trigger, none extra
    for c, r in zip(cycles, verdicts, strict=True):
        s = c.signals
        assert r.trigger is not None and r.trigger.origin == "plc"
        assert r.frame.t_capture >= r.trigger.t  # never a frame from before the trigger
        assert s["Result"] == ResultCode[r.verdict.label]
        assert s["Pin"] == (int(r.verdict.pin) if r.verdict.label != "OK" else 0)
        assert (s["OK"], s["NG"]) == ((1, 0) if r.verdict.label == "OK" else (0, 1))
        assert s["Fault"] == 0 and s["FaultCode"] == 0
    ids = [r.trigger.id for r in verdicts]
    assert ids == sorted(set(ids))
    assert st.plc.handshake.ignored == 0 and st.plc.handshake.late == 0
    return cycles


def test_modbus_250_cycles_no_lost_duplicated_or_stale_result():
    port = free_port()
    st, verdicts = start_station("modbus", port)
    try:
        client = ModbusPlc("127.0.0.1", port)
        cycles = drive_and_check(client, st, verdicts, 250)
        assert {c.signals["Result"] for c in cycles} >= {ResultCode.OK}
        client.close()
        link = st.plc.link()
        assert link["cycles"] == 250 and link["cycle_ms"]["p99"] is not None
    finally:
        st.close()


def test_opcua_100_cycles_no_lost_duplicated_or_stale_result():
    port = free_port()
    st, verdicts = start_station("opcua", port)
    try:
        client = OpcUaPlc("127.0.0.1", port)
        drive_and_check(client, st, verdicts, 100)
        assert st.plc.link()["clients"]  # the window and the summary show who is connected
        client.close()
    finally:
        st.close()


def run_cli(*args, **kw):
    env = {**os.environ, "XDG_CONFIG_HOME": os.environ.get("XDG_CONFIG_HOME", "/nonexistent")}
    return subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
    )


def test_headless_cli_serves_the_map_and_plc_sim_drives_it():
    port = free_port()
    station = run_cli(
        "-m", "edge_app", "--headless", "--source", "sim", "--sim-pool", "8", "--no-archive",
        "--plc", f"modbus:127.0.0.1:{port}",
    )  # fmt: skip
    try:
        deadline = time.time() + 60
        while True:
            try:
                client = ModbusPlc("127.0.0.1", port)
                break
            except Exception:
                assert time.time() < deadline and station.poll() is None, (
                    station.stderr.read() if station.poll() else ""
                )
                time.sleep(0.2)
        # every address of the map answers, and one past the registers does not
        bits = client.client.read_discrete_inputs(0, count=len(in_table(Table.DISCRETE_INPUT)), device_id=1)
        regs = client.client.read_input_registers(0, count=len(in_table(Table.INPUT_REGISTER)), device_id=1)
        coils = client.client.read_coils(0, count=len(in_table(Table.COIL)), device_id=1)
        assert not bits.isError() and not regs.isError() and not coils.isError()
        assert client.client.read_input_registers(len(in_table(Table.INPUT_REGISTER)), count=1, device_id=1).isError()
        wait_for(client, "Ready", 1, 60)
        client.close()
        sim = subprocess.run(
            [sys.executable, "-m", "edge_app.plc_sim", "--plc", f"modbus:127.0.0.1:{port}", "--cycles", "20", "--json"]
            + ["--timeout", "60"],  # what is checked is every result, not speed: a busy CPU may be slow
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert sim.returncode == 0, sim.stderr
        report = json.loads(sim.stdout)
        assert report["cycles"] == 20 and report["problems"] == [] and report["results"]["NO_RESULT"] == 0
    finally:
        station.terminate()
        out, err = station.communicate(timeout=30)
    lines = [json.loads(line) for line in out.splitlines()]
    summary = lines[-1]["summary"]
    assert summary["plc"]["cycles"] == 20 and summary["frames"] == 20
    assert [rec["sequence"] for rec in lines[:-1]] == list(range(1, 21))  # the verdict log carries the Sequence
    assert "trigger->result" in err and "ignored triggers 0" in err


def test_plc_sim_help_and_bad_arguments():
    p = subprocess.run([sys.executable, "-m", "edge_app.plc_sim", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0 and "--cycles" in p.stdout and "python -m edge_app --headless" in p.stdout
    p = subprocess.run(
        [sys.executable, "-m", "edge_app.plc_sim", "--plc", "modbus:127.0.0.1:99999"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "plc_port" in p.stderr


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["modbus", "opcua"])
def test_10000_cycles(protocol):
    """The benchmark of the README: 10,000 cycles, nothing lost; prints p50 / p99 trigger->ResultValid."""
    import numpy as np

    port = free_port()
    st, verdicts = start_station(protocol, port)
    try:
        client = ModbusPlc("127.0.0.1", port) if protocol == "modbus" else OpcUaPlc("127.0.0.1", port)
        cycles = drive_and_check(client, st, verdicts, 10_000)
        client.close()
    finally:
        st.close()
    ms = np.array([c.trigger_to_valid_ms for c in cycles])
    p50, p99 = np.percentile(ms, 50), np.percentile(ms, 99)
    print(f"{protocol}: 10000 cycles, trigger->ResultValid p50 {p50:.1f} ms, p99 {p99:.1f} ms")


def test_a_change_after_the_opcua_server_stopped_is_dropped_not_raised(monkeypatch):
    """The heartbeat thread outlives the server's event loop by up to a beat when the station stops:
    the change it emits then must not kill the thread with 'Event loop is closed'."""
    from edge_app.plc.handshake import Handshake
    from edge_app.plc.opcua import OpcUaServer

    died: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: died.append(args.exc_value))
    hs = Handshake(lambda: None, heartbeat_s=0.05)
    server = OpcUaServer(hs, "127.0.0.1", free_port())
    server.start()
    hs.start()
    server.close()
    time.sleep(0.5)  # a few beats, each handed to the closed loop
    alive = hs._beat is not None and hs._beat.is_alive()
    hs.close()
    assert not died, died
    assert alive  # the heartbeat goes on for the station's other PLC links and the window
