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


def test_every_flag_sets_its_config_field(monkeypatch):
    """The flags are made from ExportConfig's fields: each one reaches build_bundle's config."""
    import export.quantize as q
    from export.build import ExportConfig

    seen = []
    monkeypatch.setattr(q, "build_bundle", lambda cfg, progress: seen.append(cfg))
    cards = []  # the real one would rewrite models/default/MODEL_CARD.md, the default --out
    monkeypatch.setattr(q, "record_in_card", lambda out, argv: cards.append((str(out), argv)))
    argv = ["--checkpoint", "c.safetensors", "--out", "b", "--models", "onnxruntime/fp32,openvino/fp32"]
    argv += ["--calib-n", "10", "--eval-n", "20", "--eval-seed", "3", "--no-gate", "--float-stem"]
    argv += ["--reduce-range", "--max-drop", "1.5", "--ort-calibration", "entropy", "--name", "line 4"]
    argv += ["--max-escape-rise", "0.25", "--max-overkill-rise", "0.75", "--calib", "cal", "--calib-seed", "4"]
    argv += ["--eval", "ev", "--threads", "3", "--workers", "5", "--drop-failing"]
    assert main(argv) == 0
    want = ExportConfig(
        checkpoint="c.safetensors", out="b", models=["onnxruntime/fp32", "openvino/fp32"], calib_n=10, eval_n=20,
        eval_seed=3, gate=False, quantize_stem=False, reduce_range=True, max_drop=1.5, ort_calibration="entropy",
        name="line 4", max_escape_rise=0.25, max_overkill_rise=0.75, calib="cal", calib_seed=4, eval="ev", threads=3,
        workers=5, drop_failing=True,
    )  # fmt: skip
    assert seen == [want]
    assert main([]) == 0 and seen[-1] == ExportConfig()
    assert cards == [("b", argv), ("models/default", [])]


def test_the_model_card_records_the_export_as_it_was_run(tmp_path):
    """training.ship writes the card before the export; the export then puts its own command
    (flags included, e.g. --float-stem) into the card's Reproduce block."""
    from export.quantize import record_in_card

    card = tmp_path / "MODEL_CARD.md"
    card.write_text("## Reproduce\n\n```bash\npython -m export.quantize --name default   # -> bundle\n```\n")
    record_in_card(tmp_path, ["--name", "default", "--float-stem", "--quiet"])
    assert "python -m export.quantize --name default --float-stem   # -> the INT8" in card.read_text()
    assert card.read_text().startswith("## Reproduce\n\n```bash\n") and card.read_text().endswith("```\n")
    record_in_card(tmp_path / "nowhere", ["--name", "x"])  # no card: nothing to do


def test_the_gate_step_applies_the_overkill_limit_it_is_given(monkeypatch, capsys):
    """export.build's gate step passes --max-overkill-rise on: an INT8 model that rejects one more
    good part in 200 stops the export by default and is written (and recorded) under a limit of
    0.5 points."""
    import pytest

    import export.build as b
    from export.evaluate import Evaluation, Row

    def m(overkill):
        return {"n": 600, "accuracy": 0.95, "ng_ok_accuracy": 0.95, "escape_rate": 0.01, "overkill_rate": overkill}

    ev = Evaluation(
        [Row("torch/fp32", m(0.0)), Row("onnxruntime/fp32", m(0.0), "torch/fp32"),
         Row("onnxruntime/int8", m(0.005), "onnxruntime/fp32")],
        {"onnxruntime/fp32": 1e-6},
    )  # fmt: skip
    monkeypatch.setattr(b, "evaluate", lambda *a, **k: ev)
    monkeypatch.setattr(b, "format_table", lambda ev, title: title)

    class Frames(list):
        name = "evaluation"

    def gate(cfg, keys=None):
        info = {"models": {k: {} for k in keys or []}}
        b._check_and_gate(cfg, None, keys or [], None, None, {"thresholds": {}}, None, Frames([0] * 600), info,
                          b._Steps(1))  # fmt: skip
        return info

    with pytest.raises(b.GateFailed):
        gate(b.ExportConfig())
    assert "onnxruntime/int8 overkill rate 0.50% vs 0.00%" in capsys.readouterr().out
    info = gate(b.ExportConfig(max_overkill_rise=0.5))
    assert info["gate"]["passed"] is True and info["gate"]["max_overkill_rise"] == 0.5


def test_drop_failing_writes_the_bundle_without_the_int8_model_that_fails(monkeypatch, capsys):
    """--drop-failing (what training.adapt passes): an INT8 model that fails the gate is left out
    of the models to install and of bundle.json, the ones that pass stay, and the record says
    which was dropped and why; without the flag nothing is written."""
    import pytest

    import export.build as b
    from export.evaluate import Evaluation, Row

    def m(accuracy, overkill):
        return {"n": 600, "accuracy": accuracy, "ng_ok_accuracy": 0.95, "escape_rate": 0.01, "overkill_rate": overkill}

    ev = Evaluation(
        [Row("torch/fp32", m(0.95, 0.0)), Row("onnxruntime/fp32", m(0.95, 0.0), "torch/fp32"),
         Row("openvino/fp32", m(0.95, 0.0), "torch/fp32"),
         Row("openvino/int8", m(0.95, 0.005), "openvino/fp32"),  # one more good part rejected
         Row("onnxruntime/int8", m(0.951, 0.0), "onnxruntime/fp32")],
        {"onnxruntime/fp32": 1e-6, "openvino/fp32": 1e-6},
    )  # fmt: skip
    monkeypatch.setattr(b, "evaluate", lambda *a, **k: ev)
    monkeypatch.setattr(b, "format_table", lambda ev, title: title)

    class Frames(list):
        name = "evaluation"

    all_keys = ["openvino/int8", "onnxruntime/int8", "onnxruntime/fp32", "openvino/fp32"]
    keys, info = list(all_keys), {"models": {k: {"files": {}} for k in all_keys}}
    with pytest.raises(b.GateFailed, match="--drop-failing"):
        b._check_and_gate(b.ExportConfig(), None, keys, None, None, {"thresholds": {}}, None, Frames([0] * 600),
                          info, b._Steps(1))  # fmt: skip
    assert keys == all_keys
    b._check_and_gate(b.ExportConfig(drop_failing=True), None, keys, None, None, {"thresholds": {}}, None,
                      Frames([0] * 600), info, b._Steps(1))  # fmt: skip
    assert keys == ["onnxruntime/int8", "onnxruntime/fp32", "openvino/fp32"]
    assert sorted(info["models"]) == sorted(keys)
    assert info["gate"]["passed"] is True and info["gate"]["dropped"] == ["openvino/int8"]
    assert info["gate"]["problems"] == ["openvino/int8 overkill rate 0.50% vs 0.00% for openvino/fp32 (+0.50 "
                                        "points, limit +0)"]  # fmt: skip
    assert "left out openvino/int8 (--drop-failing)" in capsys.readouterr().out
