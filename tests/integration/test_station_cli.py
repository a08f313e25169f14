"""`python -m edge_app` as a user runs it (subprocesses)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*args, timeout=120):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": os.environ.get("XDG_CONFIG_HOME", "")}
    return subprocess.run(
        [sys.executable, "-m", "edge_app", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env
    )


def test_help_documents_the_sources():
    p = run("--help")
    assert p.returncode == 0
    for word in ("sim", "camera:N", "video:PATH", "folder:PATH", "--headless", "--sim-pool"):
        assert word in p.stdout


def test_bad_settings_file_is_a_warning_not_a_crash(tmp_path):
    cfg = tmp_path / "s.json"
    cfg.write_text('{"sim_defect_rate": 7, "source": "sim"}')
    p = run("--headless", "--config", str(cfg), "--frames", "1", "--model", str(tmp_path / "no-model"), "--no-archive")
    assert "sim_defect_rate: 7 is outside [0.0, 1.0]; keeping 0.2" in p.stderr
    assert p.returncode == 1 and "error: model:" in p.stderr  # it went on past the warning, to the model
    assert "Traceback" not in p.stderr


@pytest.mark.skipif(importlib.util.find_spec("models.runtime") is None, reason="models.runtime not there yet")
def test_missing_model_says_why_and_exits_1(tmp_path):
    p = run(
        "--headless", "--source", "sim", "--sim-pool", "2", "--frames", "3", "--no-archive",
        "--model", str(tmp_path / "no-model"), "--config", str(tmp_path / "s.json"),
    )  # fmt: skip
    assert p.returncode == 1, p.stderr
    assert "error: model:" in p.stderr and "no-model" in p.stderr
    assert "Traceback" not in p.stderr
    summary = json.loads(p.stdout.splitlines()[-1])["summary"]
    assert summary["frames"] == 0
