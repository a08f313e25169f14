"""The PLC handshake, its register map, triggered acquisition, and the Modbus server under faults
(FakeRuntime: the model is not what is tested here)."""

import gc
import re
import socket
import threading
import time
import warnings
from pathlib import Path

import pytest
from station_fakes import FakeRuntime

import edge_app.station as station_mod
from edge_app.events import ModelState, SourceState, Status, Trigger
from edge_app.model import ModelHolder
from edge_app.pipeline import Pipeline, PipelineOptions
from edge_app.plc import parse_plc
from edge_app.plc.client import ModbusPlc, PlcClientError, cycle, wait_for
from edge_app.plc.handshake import Handshake
from edge_app.plc.registers import SIGNALS, FaultCode, ResultCode, Table, markdown_table
from edge_app.settings import StationConfig, apply
from edge_app.sources import SimSource, SourceError
from edge_app.station import Station

ROOT = Path(__file__).resolve().parents[3]
RUNNING = Status(source=SourceState.RUNNING, model=ModelState.READY, running=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the map --------------------------------------------------------------------------------------


def test_readme_shows_the_register_map_of_the_code():
    assert markdown_table() in (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_map_is_the_issues_map():
    names = {t: [s.name for s in SIGNALS if s.table is t] for t in Table}
    assert names[Table.COIL] == ["Trigger", "Ack", "ResetCounters"]
    assert names[Table.DISCRETE_INPUT] == ["Ready", "Busy", "ResultValid", "OK", "NG", "Fault", "Heartbeat"]
    assert names[Table.INPUT_REGISTER] == ["Result", "Pin", "Sequence", "Score", "Latency", "FaultCode"]


# -- settings and the command line ----------------------------------------------------------------


def test_parse_plc():
    assert parse_plc("modbus") == {"plc": "modbus"}
    assert parse_plc("modbus:127.0.0.1:15020") == {"plc": "modbus", "plc_host": "127.0.0.1", "plc_port": 15020}
    assert parse_plc("opcua:line-7.local") == {"plc": "opcua", "plc_host": "line-7.local"}
    for bad, field in (("modbus:1.2.3.4:99999", "plc_port"), ("modbus:no host:1", "plc_host"), ("s7", "plc")):
        with pytest.raises(ValueError, match=f"^{field}: "):
            parse_plc(bad)


def test_settings_name_the_bad_plc_field():
    _, problems = apply(StationConfig(), {"plc_port": 70000, "plc_unit": 300, "plc_host": "a b", "plc": "s7"})
    assert [p.split(":")[0] for p in problems] == ["plc_port", "plc_unit", "plc_host", "plc"]


def test_cli_bad_plc_settings_exit_2_with_one_line(capsys, tmp_path):
    from edge_app.__main__ import main

    for argv, field in (
        (["--plc", "modbus:127.0.0.1:0x10"], "plc_port"),
        (["--plc", "modbus", "--plc-unit", "0"], "plc_unit"),
        (["--plc", "modbus:bad_host!"], "plc_host"),
        (["--trigger", "plc"], "trigger"),
    ):
        assert main(["--headless", "--config", str(tmp_path / "s.json"), *argv]) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("warning: ")]
        assert len(err) == 1 and field in err[0] and err[0].startswith("error: "), err


# -- the handshake alone ----------------------------------------------------------------------------


class FakeStation:
    def __init__(self):
        self.triggers: list[Trigger] = []
        self.resets = 0

    def trigger(self):
        t = Trigger(len(self.triggers) + 1, time.perf_counter(), "plc")
        self.triggers.append(t)
        return t


class FakeVerdictResult:
    def __init__(self, trigger, label="OK", pin=0, score=0.02):
        from station_fakes import FakeVerdict

        self.trigger = trigger
        self.verdict = FakeVerdict(label, pin, {"BENDNG": score, "NUKENG": 0.01, "OK": 1 - score})


def test_handshake_sequence_as_the_issue_says():
    st = FakeStation()
    hs = Handshake(st.trigger)
    seen = []
    hs.add_listener(seen.extend)
    assert hs.snapshot()["Ready"] == 0  # not yet inspecting
    hs.set_condition(RUNNING)
    assert hs.snapshot()["Ready"] == 1 and hs.snapshot()["Fault"] == 0
    hs.write("Trigger", 1)
    im = hs.snapshot()
    assert (im["Ready"], im["Busy"], im["ResultValid"]) == (0, 1, 0) and len(st.triggers) == 1
    hs.write("Trigger", 0)
    hs.write("Trigger", 1)  # not Ready: ignored and counted
    assert hs.ignored == 1 and len(st.triggers) == 1
    seen.clear()
    assert hs.on_result(FakeVerdictResult(st.triggers[0], "BENDNG", 7, 0.91)) == 1
    im = hs.snapshot()
    assert (im["Result"], im["Pin"], im["Sequence"], im["Score"]) == (ResultCode.BENDNG, 7, 1, 910)
    assert (im["ResultValid"], im["Busy"], im["Ready"], im["OK"], im["NG"]) == (1, 0, 0, 0, 1)
    order = [name for name, _ in seen]
    assert order.index("Sequence") < order.index("ResultValid")  # registers before ResultValid
    hs.write("Ack", 1)  # Trigger still set: ResultValid stays
    assert hs.snapshot()["ResultValid"] == 1
    hs.write("Trigger", 0)
    assert (hs.snapshot()["ResultValid"], hs.snapshot()["Ready"]) == (0, 1)
    hs.write("Ack", 0)
    # a late answer for a closed cycle never reaches the PLC
    assert hs.on_result(FakeVerdictResult(st.triggers[0])) is None and hs.late == 1
    assert hs.snapshot()["Sequence"] == 1


def test_a_failed_cycle_is_no_result_with_fault_never_ok_and_recovery_clears_it():
    st = FakeStation()
    hs = Handshake(st.trigger)
    hs.set_condition(RUNNING)
    hs.write("Trigger", 1)
    hs.on_trigger_failed(st.triggers[0], "camera", "camera 0: no frame")
    im = hs.snapshot()
    assert (im["Result"], im["OK"], im["NG"], im["Fault"], im["FaultCode"]) == (ResultCode.NO_RESULT, 0, 0, 1, 1)
    assert im["ResultValid"] == 1 and im["Sequence"] == 1
    hs.set_condition(Status(source=SourceState.DISCONNECTED, model=ModelState.READY, running=True))
    hs.write("Trigger", 0)
    hs.write("Ack", 1)
    assert hs.snapshot()["Ready"] == 0 and hs.snapshot()["FaultCode"] == FaultCode.CAMERA  # still faulted
    hs.set_condition(RUNNING)
    im = hs.snapshot()
    assert (im["Ready"], im["Fault"], im["FaultCode"]) == (1, 0, 0)


def test_sequence_wraps_and_reset_counters_keeps_it():
    st = FakeStation()
    hs = Handshake(st.trigger, reset_counters=lambda: setattr(st, "resets", st.resets + 1))
    hs.set_condition(RUNNING)
    hs._image["Sequence"] = 65535
    hs.write("Trigger", 1)
    assert hs.on_result(FakeVerdictResult(st.triggers[-1])) == 0
    hs.write("ResetCounters", 1)
    assert st.resets == 1 and hs.cycles == 0 and hs.snapshot()["Sequence"] == 0


def test_heartbeat_toggles():
    hs = Handshake(lambda: None, heartbeat_s=0.05)
    hs.start()
    values = set()
    deadline = time.time() + 2
    while len(values) < 2 and time.time() < deadline:
        values.add(hs.snapshot()["Heartbeat"])
        time.sleep(0.01)
    hs.close()
    assert values == {0, 1}


# -- triggered acquisition ----------------------------------------------------------------------------


def triggered_pipeline(src, delay_s=0.0, on_result=None, on_failed=None):
    rt = FakeRuntime(src, delay_s=delay_s)
    pipe = Pipeline(
        src,
        ModelHolder(lambda: rt),
        on_result or (lambda r: None),
        options=PipelineOptions(triggered=True, retry_initial_s=0.05),
        on_trigger_failed=on_failed,
    )
    return pipe, rt


def wait_running(pipe, timeout=20.0):
    deadline = time.time() + timeout
    while pipe.status.source is not SourceState.RUNNING:
        assert time.time() < deadline, pipe.status
        time.sleep(0.01)


def test_a_trigger_inspects_the_first_frame_captured_after_it_on_a_live_camera():
    src = SimSource(defect_rate=0.5, fps=100, pool=8)  # live: frames stream whether asked for or not
    results = []
    pipe, rt = triggered_pipeline(src, on_result=results.append)
    reads = []
    real_read = src.read

    def read():  # the pipeline stamps its read a moment before this one starts
        t = time.perf_counter()
        f = real_read()
        reads.append((t, time.perf_counter(), f.index))
        return f

    src.read = read
    pipe.start()
    wait_running(pipe)
    time.sleep(0.1)
    assert rt.calls == 0  # streaming, nothing inspected without a trigger
    for _ in range(10):
        t = pipe.trigger("key")
        assert t is not None and pipe.trigger("key") is None  # one open at a time
        while pipe.trigger_open is not None:
            time.sleep(0.001)
        r = results[-1]
        assert r.trigger is t and r.frame.t_capture >= t.t and r.trigger_ms >= 0
        # never an older buffered frame: the frame's read began after the trigger...
        taken = next(k for k, (_, _, i) in enumerate(reads) if i == r.frame.index)
        assert reads[taken][0] >= t.t
        # ...and none was skipped that surely did: a read begun after the one before it ended
        ended_after = next(k for k, (_, end, _) in enumerate(reads) if end >= t.t)
        assert taken <= ended_after + 1, (taken, ended_after)
        time.sleep(0.03)
    pipe.stop()
    assert len(results) == 10 and rt.calls == 10


class FlakyCamera(SimSource):
    """A simulated camera that can be unplugged (read and open fail) and plugged back."""

    retry = True

    def __init__(self, **kw):
        super().__init__(**kw)
        self.unplugged = threading.Event()
        self.exposed = threading.Event()  # a read (the exposure) ends only once this is set...
        self.exposed.set()  # ...and is checked for unplugging at its end

    def open(self):
        if self.unplugged.is_set():
            raise SourceError("camera 9: cannot open (not connected)")
        super().open()

    def read(self):
        assert self.exposed.wait(30), "the test never ended the exposure"
        if self.unplugged.is_set():
            raise SourceError("camera 9: no frame (unplugged)")
        return super().read()


def test_camera_lost_before_the_frame_answers_the_trigger_as_failed():
    src = FlakyCamera(defect_rate=0.5, fps=20, pool=4)
    failed = []
    pipe, _ = triggered_pipeline(src, on_failed=lambda t, kind, msg: failed.append((t, kind, msg)))
    pipe.start()
    wait_running(pipe)
    src.unplugged.set()
    t = pipe.trigger("key")
    deadline = time.time() + 5
    while not failed and time.time() < deadline:
        time.sleep(0.01)
    pipe.stop()
    assert failed and failed[0][0] is t and failed[0][1] == "camera"


# -- the Modbus server under faults -----------------------------------------------------------------------


@pytest.fixture
def modbus_station(monkeypatch, tmp_path):
    src = FlakyCamera(defect_rate=0.3, fps=50, pool=8)
    monkeypatch.setattr(station_mod, "make_source", lambda text, cfg=None: src)
    port = free_port()
    cfg = StationConfig(
        source="sim", plc="modbus", plc_host="127.0.0.1", plc_port=port, archive_enabled=False, retry_max_s=0.2
    )
    verdicts = []
    st = Station(cfg, on_result=verdicts.append, load_runtime=lambda c: lambda: FakeRuntime(src, delay_s=0.005))
    st.open_plc()
    st.start()
    plc = ModbusPlc("127.0.0.1", port)
    wait_for(plc, "Ready", 1, 20)
    yield st, plc, src, port, verdicts
    plc.close()
    st.close()


def test_camera_fault_mid_cycle_gives_fault_within_one_cycle_and_recovery_clears_it(modbus_station):
    st, plc, src, port, verdicts = modbus_station
    for _ in range(5):
        assert cycle(plc).signals["FaultCode"] == 0
    wait_for(plc, "Ready", 1, 5)
    src.exposed.clear()  # every frame from now on is still being exposed until the test says
    plc.write(Trigger=True)
    wait_for(plc, "Busy", 1, 5)
    src.unplugged.set()  # during the cycle: the frame for this trigger is still being exposed
    src.exposed.set()
    bits = wait_for(plc, "ResultValid", 1, 3)  # answered, not left hanging
    im = plc.read()
    assert im["Result"] == ResultCode.NO_RESULT and im["OK"] == 0 and im["NG"] == 0
    assert bits["Fault"] == 1 and im["FaultCode"] == FaultCode.CAMERA and im["Sequence"] == 6
    plc.write(Trigger=False, Ack=True)
    wait_for(plc, "ResultValid", 0, 3)
    plc.write(Ack=False)
    # camera still gone: not Ready, still Fault (the station hears of the loss from the source as
    # well as from the failed cycle, in either order: on a busy CPU, a moment after the Ack)
    bits = wait_for(plc, "Ready", 0, 5)
    assert bits["Fault"] == 1
    plc.write(Trigger=True)  # ignored, counted
    plc.write(Trigger=False)
    assert st.plc.handshake.ignored == 1
    src.unplugged.clear()
    bits = wait_for(plc, "Ready", 1, 10)
    assert bits["Fault"] == 0 and plc.read()["FaultCode"] == 0
    c = cycle(plc)
    assert c.signals["Sequence"] == 7 and c.signals["Result"] != ResultCode.NO_RESULT


def test_killing_the_plc_client_mid_cycle_leaves_the_station_ready_for_the_next(modbus_station):
    st, plc, src, port, verdicts = modbus_station
    cycle(plc)
    wait_for(plc, "Ready", 1, 5)
    plc.write(Trigger=True)
    wait_for(plc, "ResultValid", 1, 5)
    plc.client.close()  # the PLC dies holding Trigger, before its Ack
    plc2 = ModbusPlc("127.0.0.1", port)  # restarted PLC: its program starts by clearing its coils
    plc2.write(Trigger=False, Ack=True)
    wait_for(plc2, "ResultValid", 0, 5)
    plc2.write(Ack=False)
    c = cycle(plc2)
    assert c.signals["Sequence"] == 3 and len(verdicts) == 3
    plc2.close()


def test_a_wrong_unit_id_is_refused():
    hs = Handshake(lambda: None)
    from edge_app.plc.modbus import ModbusServer

    port = free_port()
    srv = ModbusServer(hs, "127.0.0.1", port, unit=3)
    srv.start()
    try:
        plc = ModbusPlc("127.0.0.1", port, unit=4)
        with pytest.raises(PlcClientError):
            plc.read()
        plc.close()
        assert ModbusPlc("127.0.0.1", port, unit=3).read()["Result"] == ResultCode.NO_RESULT
    finally:
        srv.close()


def test_closing_a_modbus_server_whose_loop_just_ended_leaves_nothing_behind():
    """The station may close the server as its loop ends: close returns at once and raises
    nothing; the listener is closed (the port is free again) and no shutdown coroutine is left
    that was never run (pytest's 'coroutine ... was never awaited'); closing again does nothing."""
    from edge_app.plc.modbus import ModbusServer

    port = free_port()
    srv = ModbusServer(Handshake(lambda: None), "127.0.0.1", port)
    srv.start()
    loop = srv._loop
    gc.collect()  # what earlier tests left is theirs, not this server's
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loop.call_soon_threadsafe(srv._server.serving.set_result, True)  # the loop ends on its own
        srv._thread.join(5)
        assert loop.is_closed()
        t0 = time.monotonic()
        srv.close()
        srv.close()
        del loop, srv
        gc.collect()
    assert time.monotonic() - t0 < 2
    left = [str(w.message) for w in caught]
    assert not [w for w in left if "never awaited" in w or ("unclosed" in w and f", {port})" in w)], left
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # nothing listens there any more


def test_a_port_in_use_is_one_line_naming_the_setting():
    from edge_app.plc.modbus import ModbusServer
    from edge_app.plc.serving import PlcServerError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(
                PlcServerError, match=re.escape(f"plc_host/plc_port: cannot listen on 127.0.0.1:{port}")
            ):
                ModbusServer(Handshake(lambda: None), "127.0.0.1", port).start()
            gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)], [str(w.message) for w in caught]


def test_headless_stdin_trigger_inspects_one_frame_per_line(monkeypatch):
    import io
    import json

    import edge_app.headless as headless

    made = {}
    real = station_mod.make_source

    def make_source(text, cfg=None):
        made["src"] = real(text, cfg)
        return made["src"]

    monkeypatch.setattr(station_mod, "make_source", make_source)
    cfg = StationConfig(source="sim", sim_fps=30, sim_pool=8, archive_enabled=False, trigger="stdin")
    out, err = io.StringIO(), io.StringIO()
    status, summary = headless.run(
        cfg, out=out, err=err, stdin=io.StringIO("\n" * 4), load_runtime=lambda: FakeRuntime(made["src"])
    )
    assert status == 0, err.getvalue()
    records = [json.loads(line) for line in out.getvalue().splitlines()[:-1]]
    assert [r["trigger"]["id"] for r in records] == [1, 2, 3, 4] and summary["frames"] == 4
    assert all(r["trigger"]["origin"] == "stdin" and r["trigger"]["ms"] >= 0 for r in records)
