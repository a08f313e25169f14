import json

import pytest

from edge_app.__main__ import build_parser, main, resolve
from edge_app.settings import SettingsError, StationConfig, apply, load_config, save_config, validate


def test_round_trip(tmp_path):
    cfg = StationConfig(source="video:/x.avi", thresholds={"BENDNG": 0.4}, sim_pool=8, loop=True)
    save_config(cfg, tmp_path / "s.json")
    back, problems = load_config(tmp_path / "s.json")
    assert back == cfg and problems == []


def test_missing_file_is_the_defaults(tmp_path):
    assert load_config(tmp_path / "none.json") == (StationConfig(), [])


def test_bad_values_get_a_message_and_keep_the_default(tmp_path):
    p = tmp_path / "s.json"
    p.write_text(
        json.dumps(
            {
                "source": "webcam",
                "sim_defect_rate": 1.5,
                "backend": "tensorrt",
                "thresholds": {"BENDNG": "high"},
                "sim_pool": 2.5,
                "colour": "blue",
                "sim_fps": 30,
            }
        )
    )
    cfg, problems = load_config(p)
    assert cfg.source == "auto" and cfg.sim_defect_rate == 0.2 and cfg.backend == "auto" and cfg.thresholds == {}
    assert cfg.sim_fps == 30.0  # the good value is kept
    text = "\n".join(problems)
    for field in ("source", "sim_defect_rate", "backend", "thresholds.BENDNG", "sim_pool", "colour"):
        assert f": {field}:" in text or f"{field}:" in text, field
    assert len(problems) == 6 and all(str(p) in m for m in problems)


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", "\xff\xfe"])
def test_unusable_file_is_one_message(tmp_path, content):
    p = tmp_path / "s.json"
    p.write_text(content, encoding="latin-1")
    cfg, problems = load_config(p)
    assert cfg == StationConfig() and len(problems) == 1 and "using the defaults" in problems[0]


def test_validate_and_apply():
    assert validate(StationConfig()) == []
    cfg, problems = apply(StationConfig(), {"thresholds": {"NUKENG": 0.7}, "archive_enabled": "yes"})
    assert cfg.thresholds == {"NUKENG": 0.7} and cfg.archive_enabled is True
    assert problems == ["archive_enabled: expected true or false, got 'yes'; keeping true"]
    assert validate(StationConfig(thresholds={"OK": 0.5})) != []


def test_save_to_an_unwritable_place_says_why(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(SettingsError, match="cannot save"):
        save_config(StationConfig(), tmp_path / "f" / "s.json")


def test_cli_overrides_the_file(tmp_path):
    p = tmp_path / "s.json"
    p.write_text(json.dumps({"sim_fps": 5, "thresholds": {"BENDNG": 0.3}}))
    args = build_parser().parse_args(
        ["--config", str(p), "--source", "sim", "--threshold", "NUKENG=0.6", "--no-archive", "--sim-pool", "4"]
    )
    cfg, warnings, errors = resolve(args)
    assert (warnings, errors) == ([], [])
    assert cfg.source == "sim" and cfg.sim_fps == 5 and cfg.sim_pool == 4 and not cfg.archive_enabled
    assert cfg.thresholds == {"BENDNG": 0.3, "NUKENG": 0.6}


def test_headless_sim_is_unpaced_unless_asked():
    cfg, _, _ = resolve(build_parser().parse_args(["--headless", "--config", "/nonexistent/s.json"]))
    assert cfg.sim_fps == 0
    cfg, _, _ = resolve(build_parser().parse_args(["--headless", "--sim-fps", "20", "--config", "/nonexistent/s.json"]))
    assert cfg.sim_fps == 20


@pytest.mark.parametrize(
    "argv, msg",
    [
        (["--sim-defect-rate", "2"], "sim_defect_rate: 2.0 is outside"),
        (["--source", "webcam"], "unknown source"),
        (["--threshold", "BENDNG"], "expected CLASS=SCORE"),
        (["--frames", "0"], "--frames must be at least 1"),
    ],
)
def test_bad_command_line_is_exit_2_with_a_message(tmp_path, capsys, argv, msg):
    assert main(["--headless", "--config", str(tmp_path / "s.json"), *argv]) == 2
    assert msg in capsys.readouterr().err


def _other_value(name, s, current):
    """A valid value of setting `s` that differs from `current`, as the settings file holds it."""
    if s.kind == "bool":
        return not current
    if s.kind == "number":
        mid = s.lo + (min(s.hi, 10_000) - s.lo) / 3
        value = int(mid) if s.integer else round(mid, 2)
        return value if value != current else s.lo
    if s.kind == "choice":
        return next(c for c in s.choices if c != current)
    if s.kind == "source":
        return "sim" if current != "sim" else "auto"
    return {"plc_host": "127.0.0.1", "part": "default"}.get(name, "/srv/elsewhere")


def _settings():
    from edge_app.settings import SETTINGS

    return [(n, s) for n, s in SETTINGS.items() if n != "part"] + [("part", SETTINGS["part"])]


def test_every_flag_is_made_from_its_setting_and_reaches_the_config():
    """A setting's flag, help and check come from the one place it is declared (StationConfig)."""
    from edge_app.__main__ import overrides

    parser = build_parser()
    actions = {a.dest: a for a in parser._actions}
    flagged = [(n, s) for n, s in _settings() if s.flag]
    assert {n for n, _ in flagged} >= {"source", "model", "backend", "sim_fps", "sim_pool", "trigger", "plc_unit"}
    for name, s in flagged:
        assert actions[name].option_strings == [s.flag] and actions[name].help == s.help
        value = _other_value(name, s, getattr(StationConfig(), name))
        argv = [s.flag] if s.kind == "bool" else [s.flag, str(value)]
        raw, problems = overrides(parser.parse_args(argv))
        cfg, bad = apply(StationConfig(), raw)
        assert problems == bad == [] and getattr(cfg, name) == value, name


def test_the_settings_dialog_is_made_from_the_same_settings(qtbot):
    """Every setting with a dialog row gets an editor with its help, its range or choices, and
    what the editor holds is what the config gets."""
    from PyQt6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox

    from edge_app.ui.dialogs import SettingsDialog

    dlg = SettingsDialog(StationConfig())
    qtbot.addWidget(dlg)
    rows = [(n, s) for n, s in _settings() if s.label]
    assert set(dlg.fields) == {n for n, _ in rows}
    assert {"archive_ok_every", "archive_margin", "retry_max_s", "plc", "plc_port"} <= set(dlg.fields)
    want = {}
    for name, s in rows:
        w = dlg.fields[name]
        assert w.toolTip() == s.help, name
        value = _other_value(name, s, getattr(StationConfig(), name))
        if isinstance(w, QCheckBox):
            w.setChecked(value)
        elif isinstance(w, (QSpinBox, QDoubleSpinBox)):
            assert (w.minimum(), w.maximum()) == (s.lo, min(s.hi, 2**31 - 1)), name
            w.setValue(value)
        elif isinstance(w, QComboBox) and not w.isEditable():
            assert [w.itemData(i) for i in range(w.count())] == list(s.choices), name
            w.setCurrentIndex(w.findData(value))
        elif isinstance(w, QComboBox):
            w.setCurrentText(value)
        else:
            assert isinstance(w, QLineEdit), name
            w.setText(value)
        want[name] = value
    dlg._accept()
    got = dlg.result_config
    assert dlg.result() == 1, dlg.problems.text()
    assert {n: getattr(got, n) for n in want} == pytest.approx(want)


def test_the_dialog_refuses_a_plc_trigger_without_a_plc_server(qtbot):
    from edge_app.ui.dialogs import SettingsDialog

    dlg = SettingsDialog(StationConfig())
    qtbot.addWidget(dlg)
    trigger = dlg.fields["trigger"]
    trigger.setCurrentIndex(trigger.findData("plc"))
    dlg._accept()
    assert dlg.result() == 0 and "plc needs a PLC server" in dlg.problems.text()
    plc = dlg.fields["plc"]
    plc.setCurrentIndex(plc.findData("modbus"))
    dlg._accept()
    assert dlg.result() == 1 and dlg.result_config.plc == "modbus"


def test_a_zero_that_means_none_reads_as_words_and_saves_as_zero(qtbot):
    from edge_app.ui.dialogs import SettingsDialog

    dlg = SettingsDialog(StationConfig(archive_max_gb=0.0, archive_ok_every=0, plc_port=0))
    qtbot.addWidget(dlg)
    shown = {n: dlg.fields[n].text() for n in ("archive_max_gb", "archive_ok_every", "plc_port")}
    assert shown == {
        "archive_max_gb": "no limit",
        "archive_ok_every": "none",
        "plc_port": "protocol default (5020 / 4840)",
    }
    dlg.fields["archive_max_gb"].setValue(50.0)
    assert dlg.fields["archive_max_gb"].text() == "50.00 GB"
    dlg._accept()
    got = dlg.result_config
    assert (got.archive_max_gb, got.archive_ok_every, got.plc_port) == (50.0, 0, 0)


def test_a_settings_file_that_did_not_load_is_kept_before_it_is_overwritten(tmp_path, capsys):
    """One typo in a hand-made station.json must not wipe the line's setup the next time anything
    saves (--save-config, --switch-model, the window): the old file is kept beside, and said so."""
    p = tmp_path / "station.json"
    text = '{"source": "camera:1", "thresholds": {"BENDNG": 0.3}, "archive_dir": "/data/archive",}'
    p.write_text(text)
    assert main(["--headless", "--config", str(p), "--source", "sim", "--frames", "1", "--save-config", "--quiet"]) == 0
    kept = list(tmp_path.glob("station.json.unread-*"))
    assert len(kept) == 1 and kept[0].read_text() == text
    assert f"the old file is kept as {kept[0]}" in capsys.readouterr().err
    assert load_config(p) == (load_config(p)[0], []) and load_config(p)[0].source == "sim"
    assert save_config(StationConfig(), p) is None  # a file that loads cleanly is not copied again
    assert len(list(tmp_path.glob("station.json.unread-*"))) == 1
    p.write_text(json.dumps({"sim_fps": 5, "thresholds": {"BENDNG": 7}}))  # valid JSON, a bad value
    assert save_config(StationConfig(), p) is not None


def test_a_threshold_of_zero_is_a_settings_error_not_a_crash(tmp_path, capsys):
    """The verdict rule takes thresholds in (0, 1]; 0 passed the settings check and then stopped
    inference with a traceback."""
    assert main(["--headless", "--config", str(tmp_path / "s.json"), "--source", "sim", "--threshold", "BENDNG=0"]) == 2
    err = capsys.readouterr().err
    assert "thresholds.BENDNG: 0 would flag every frame" in err and "Traceback" not in err
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"thresholds": {"NUKENG": 0, "BENDNG": 0.4}}))
    cfg, problems = load_config(p)
    assert cfg.thresholds == {} and "NUKENG: 0 would flag every frame" in problems[0]


@pytest.mark.parametrize(
    "argv, msg",
    [
        (["--headless", "--trigger", "key"], "trigger: key is the window's Trigger button"),
        (["--trigger", "stdin"], "trigger: stdin is for headless runs"),
        (["--frames", "3"], "--frames and --quiet apply to --headless runs only"),
    ],
)
def test_a_trigger_nothing_can_pull_is_refused(tmp_path, capsys, argv, msg, monkeypatch):
    """A headless run told to wait for the window's key (or the window for stdin) waited forever
    with no message."""
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert main(["--config", str(tmp_path / "s.json"), "--source", "sim", *argv]) == 2
    assert msg in capsys.readouterr().err


def test_save_config_keeps_full_paths_and_not_the_headless_pace(tmp_path, monkeypatch):
    """--save-config writes what a station started anywhere can use: relative folders made full,
    and the headless runs' unpaced simulator left out (the window would run unpaced)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "arch").mkdir()
    p = tmp_path / "s.json"
    argv = ["--headless", "--config", str(p), "--source", "sim", "--archive", "arch", "--frames", "1", "--quiet"]
    main([*argv, "--save-config"])
    saved = json.loads(p.read_text())
    assert saved["archive_dir"] == str(tmp_path / "arch")
    assert saved["sim_fps"] == StationConfig().sim_fps
