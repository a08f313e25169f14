"""Helpers of the fault-injection suite: run a command as an operator does, check how it fails."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args, timeout=60, **kw):
    """`python -m ...` in the repository, as an operator runs it."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, **kw
    )


def assert_one_line_error(err, *names):
    """No traceback; an `error:` line naming each of `names`."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:") or ": error:" in line]
    assert lines, err
    for name in names:
        assert any(str(name) in line for line in lines), (name, err)
