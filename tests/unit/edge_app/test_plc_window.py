"""The window on the line: the Trigger button / space bar, and the PLC link panel."""

import socket

import pytest
from station_fakes import FakeRuntime

from edge_app.plc.client import ModbusPlc, cycle, wait_for
from edge_app.settings import StationConfig

pytestmark = pytest.mark.gui


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_window(qtbot, tmp_path, cfg):
    from edge_app.ui.window import StationWindow

    holder = {}

    def load_runtime(c):
        def load():
            holder["rt"] = FakeRuntime(holder["win"].station.pipeline.source)
            return holder["rt"]

        return load

    win = StationWindow(cfg, tmp_path / "station.json", load_runtime=load_runtime, file_config=StationConfig())
    holder["win"] = win
    qtbot.addWidget(win)
    win.show()
    return win, holder


def test_trigger_button_inspects_one_frame_per_press(qtbot, tmp_path):
    cfg = StationConfig(source="sim", sim_fps=40, sim_pool=8, archive_enabled=False, trigger="key")
    win, holder = make_window(qtbot, tmp_path, cfg)
    try:
        win.start()
        qtbot.waitUntil(lambda: win.trigger_button.isEnabled(), timeout=10000)
        assert win.trigger_button.isVisible() and not win.plc_box.isVisible()
        qtbot.wait(200)
        assert holder["rt"].calls == 0  # nothing inspected without a trigger
        for n in (1, 2, 3):
            with qtbot.waitSignal(win.verdictShown, timeout=5000) as blocker:
                win.trigger_button.click()
            assert blocker.args[0].trigger.origin == "key"
            qtbot.waitUntil(lambda n=n: win.station.stats.n == n, timeout=2000)
        assert holder["rt"].calls == 3
    finally:
        win.station.close()


def test_plc_link_panel_shows_client_cycle_time_and_ignored_triggers(qtbot, tmp_path):
    port = free_port()
    cfg = StationConfig(
        source="sim", sim_fps=40, sim_pool=8, archive_enabled=False, plc="modbus", plc_host="127.0.0.1", plc_port=port
    )
    win, holder = make_window(qtbot, tmp_path, cfg)
    try:
        win.start()
        plc = ModbusPlc("127.0.0.1", port)
        wait_for(plc, "Ready", 1, 10)
        for _ in range(3):
            cycle(plc)
        plc.write(Trigger=True)  # the next one: ...
        plc.write(Trigger=False)
        plc.write(Trigger=True)  # ... and one while Busy / ResultValid, ignored
        qtbot.waitUntil(lambda: win.plc_labels["ignored"].text() == "1", timeout=5000)
        assert win.plc_box.isVisible() and not win.trigger_button.isEnabled()  # the PLC triggers, not the operator
        assert f"127.0.0.1:{port}" in win.plc_labels["endpoint"].text()
        assert win.plc_labels["clients"].text().startswith("127.0.0.1:")
        assert "ms (p99" in win.plc_labels["cycle"].text() and win.plc_labels["last_trigger"].text() != "-"
        plc.close()
    finally:
        win.station.close()
