"""python -m export.quantize: help for a line engineer, one-line errors for bad input."""

import subprocess
import sys

from export.quantize import main


def test_help_explains_the_steps():
    r = subprocess.run([sys.executable, "-m", "export.quantize", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for needle in ("--checkpoint", "--out", "--max-drop", "--no-gate", "calibration", "Exit codes"):
        assert needle in r.stdout


def test_missing_checkpoint_is_one_line_exit_2(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none.safetensors" in err[0]
    assert not (tmp_path / "b").exists()


def test_same_calibration_and_evaluation_seed_is_refused(tmp_path, capsys):
    assert main(["--checkpoint", "x", "--calib-seed", "5", "--eval-seed", "5"]) == 2
    assert "differ" in capsys.readouterr().err
