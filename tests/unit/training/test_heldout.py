import csv
import dataclasses
import json
from pathlib import Path

from models.checkpoint import read_spec
from models.synth.dataset import read_meta
from training import datasets, heldout

HELD_OUT_PINS = {4, 7, 13, 16, 22, 25}  # columns 4 and 7 of the default part's three rows


def test_heldout_trains_without_the_columns_and_scores_on_them_only(tmp_path, monkeypatch):
    """The experiment's contract, run the way a user runs it (tiny settings, 60 test frames
    instead of 900): training renders keep defects out of columns 4 and 7, the test set has
    defects only there, and the metrics it writes agree with its own predictions."""
    real_get = datasets.get
    monkeypatch.setattr(datasets, "get", lambda name: dataclasses.replace(real_get(name), n=60))
    sets = ["data.n=48", "data.val_n=30", "epochs=1", "batch_size=8", "warmup_steps=1", "workers=1"]
    sets += ['model_overrides={"depth": 1}', f"out={tmp_path}", "amp=off"]
    assert heldout.main([a for s in sets for a in ("--set", s)] + ["--data", str(tmp_path / "data")]) == 0

    run = tmp_path / "heldout-columns"
    trained = json.loads((run / "config.json").read_text())["data"]["defect_columns"]
    assert trained and not {4, 7} & set(trained)
    # what the model was trained on: every defect (up to 3 an image) of every training render
    meta = read_meta(Path(read_spec(run / "model.safetensors")["data"]["train"]) / "meta.jsonl")
    bad = [pin for m in meta for pin, _ in m["defects"]]
    assert len(meta) == 48 and bad and not set(bad) & HELD_OUT_PINS, sorted(set(bad))
    (folder,) = (tmp_path / "data").glob("heldout-cols-4-7-*-60")
    truth = {r["file"]: r for r in csv.DictReader(open(folder / "labels.csv"))}
    ng = [r for r in truth.values() if r["label"] != "OK"]
    assert ng and {int(r["pin"]) for r in ng} <= HELD_OUT_PINS
    preds = list(csv.DictReader(open(run / "heldout_preds.csv")))
    m = json.loads((run / "heldout_metrics.json").read_text())
    assert m["n"] == len(preds) == 60
    escapes = sum(truth[p["file"]]["label"] != "OK" and p["label"] == "OK" for p in preds)
    overkills = sum(truth[p["file"]]["label"] == "OK" and p["label"] != "OK" for p in preds)
    assert (m["escapes"], m["overkills"], m["defective"]) == (escapes, overkills, len(ng))


def test_heldout_names_a_bad_setting_in_one_line(capsys):
    assert heldout.main(["--set", "epochs=-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "epochs" in err


def test_heldout_names_a_missing_part_file_in_one_line(tmp_path, capsys):
    """A part spec that is not there: the file named, no traceback (it was one before)."""
    missing = tmp_path / "nope.json"
    assert heldout.main(["--set", f"part={missing}", "--data", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and str(missing) in err and "Traceback" not in err
