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
