"""export.isacheck: the shipped bundle's models natively and "emulated", compared by the station's
own agreement rule. The emulator here is a stand-in that runs the program natively (QEMU itself is
too slow for the default suite: tens of seconds a frame), so the emulated scores must equal the
native ones; the rule that drops a disagreeing INT8 model is checked on outputs made to disagree."""

import os
import stat
from pathlib import Path

import numpy as np

from export import isacheck

BUNDLE = Path(__file__).resolve().parents[2] / "models" / "default"
TH = {"BENDNG": 0.5, "NUKENG": 0.5}


def _fake_qemu(tmp_path: Path) -> Path:
    """Takes `-cpu NAME PROGRAM ARGS...` as qemu-x86_64 does, and runs PROGRAM natively."""
    path = tmp_path / "qemu-x86_64"
    path.write_text('#!/bin/sh\n[ "$1" = "-cpu" ] || exit 9\nshift 2\nexec "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_an_emulator_that_changes_nothing_gives_identical_scores_and_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(BUNDLE.parents[1])
    code = isacheck.main(["--model", str(BUNDLE), "--frames", "3", "--qemu", str(_fake_qemu(tmp_path))])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "/" in line.split("|")[1]]
    assert sorted(r.split("|")[1].strip() for r in rows) == sorted(isacheck.Runtime.models_in(BUNDLE))
    for r in rows:
        cells = [c.strip() for c in r.strip("|").split("|")]
        assert float(cells[1]) == 0.0 and cells[2] == "0 of 3", r  # the same kernels: the same scores
        assert cells[3] in ("reference (FP32)", "agrees with FP32"), r
    assert "nothing older was checked" in out  # the stand-in reports this CPU's instruction sets


def test_an_int8_model_that_flips_clear_verdicts_on_the_emulated_cpu_is_dropped():
    ok, bent = [0.02, 0.03], [0.97, 0.01]
    fp32 = (np.array([ok, bent, ok, bent]), np.zeros((4, 27)))
    saturated = (np.array([bent, ok, ok, bent]), np.zeros((4, 27)))  # two clear verdicts flipped
    native = {"onnxruntime/fp32": fp32, "onnxruntime/int8": fp32}
    text, dropped = isacheck.table(native, {"onnxruntime/fp32": fp32, "onnxruntime/int8": saturated}, TH)
    assert dropped == ["onnxruntime/int8"]
    assert "| onnxruntime/int8 | 0.95 | 2 of 4 | dropped: changed 2 clear verdicts of 4 |" in text
    assert isacheck.table(native, native, TH)[1] == []


def test_without_the_emulator_it_says_what_to_install(capsys):
    assert isacheck.main(["--model", str(BUNDLE), "--qemu", "no-such-qemu-here"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no-such-qemu-here not found") and "qemu-user" in err
    assert os.path.isdir(BUNDLE)


def test_an_int8_model_without_an_fp32_model_to_check_it_against_is_dropped_with_the_reason():
    int8 = (np.array([[0.02, 0.03]]), np.zeros((1, 27)))
    text, dropped = isacheck.table({"openvino/int8": int8}, {"openvino/int8": int8}, TH)
    assert dropped == ["openvino/int8"] and "dropped: no FP32 model ran to check it against" in text
