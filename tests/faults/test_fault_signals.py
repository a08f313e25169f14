"""Stopping the headless station: SIGTERM (systemd, docker stop) and SIGINT (Ctrl-C) finish the
frame being inspected, flush the archive, print the summary and exit 0, even when the capture
thread is stuck in a read that never returns. Real subprocesses with the shipped model."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from fault_helpers import REPO

from edge_app.archive import Archive


def start_station(*args):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.Popen(
        [sys.executable, "-m", "edge_app", "--headless", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def collect(stream, lines, seen, pattern):
    for line in stream:
        lines.append(line)
        if pattern in line:
            seen.set()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_mid_run_finishes_flushes_and_prints_the_summary(tmp_path, sig):
    archive = tmp_path / "archive"
    p = start_station("--source", "sim", "--sim-pool", "8", "--sim-defect-rate", "0.5", "--archive", str(archive))
    out, err, seen = [], [], threading.Event()
    readers = [
        threading.Thread(target=collect, args=(p.stdout, out, seen, '"frame": 5,'), daemon=True),
        threading.Thread(target=collect, args=(p.stderr, err, threading.Event(), "\0"), daemon=True),
    ]
    for t in readers:
        t.start()
    try:
        assert seen.wait(60), "".join(err)
        p.send_signal(sig)
        rc = p.wait(30)
    finally:
        p.kill()
    for t in readers:
        t.join(5)
    err_text = "".join(err)
    assert rc == 0, err_text
    assert "Traceback" not in err_text and f"stopped by {sig.name}" in err_text
    records = [json.loads(line) for line in out]
    summary = records[-1]["summary"]
    verdicts = records[:-1]
    assert summary["frames"] == len(verdicts) >= 6 and summary["end"] == f"stopped by {sig.name}"
    ng = [v for v in verdicts if v["label"] != "OK"]
    rows = Archive(archive).flagged()
    # every NG verdict printed was archived, image and row, before the exit (and any OK kept for review too)
    assert len(rows) == len(list((archive / "images").glob("*.png"))) and not any(r.missing for r in rows)
    assert sum("ng" in r.kept.split(",") for r in rows) == len(ng) > 0
    assert summary["archive"].startswith(f"{len(ng)} NG frames saved")


def test_ctrl_c_ends_the_station_while_the_capture_thread_is_stuck(tmp_path):
    """A FIFO nobody writes to as the camera: OpenCV's open() blocks in the kernel for ever."""
    fifo = tmp_path / "camera.fifo"
    os.mkfifo(fifo)
    p = start_station("--source", f"camera:{fifo}", "--no-archive", "--verbose")
    err, opening = [], threading.Event()
    reader = threading.Thread(target=collect, args=(p.stderr, err, opening, "opening camera"), daemon=True)
    reader.start()
    try:
        assert opening.wait(60), "".join(err)
        time.sleep(0.5)  # into the blocking open()
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        p.wait(30)
        took = time.monotonic() - t0
        stdout = p.stdout.read()
    finally:
        p.kill()
    reader.join(5)
    err_text = "".join(err)
    assert p.returncode == 0, err_text
    assert "Traceback" not in err_text and "stopped by SIGINT" in err_text
    assert json.loads(stdout.splitlines()[-1])["summary"]["frames"] == 0
    assert took < 15
