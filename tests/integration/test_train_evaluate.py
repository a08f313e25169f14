import csv
import json
import math
import subprocess
import sys

from models.checkpoint import read_spec
from models.part import load_part
from models.synth.dataset import SynthConfig, generate


def test_train_then_evaluate_cli(tmp_path):
    spec = load_part("default")
    generate(spec, SynthConfig(n=12, seed=1), tmp_path / "t", progress=False)
    generate(spec, SynthConfig(n=6, seed=2), tmp_path / "v", progress=False)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.train",
            "--quiet",
            "--set",
            f"data.folder={tmp_path / 't'}",
            "--set",
            f"data.val_folder={tmp_path / 'v'}",
            "--set",
            "epochs=1",
            "--set",
            "batch_size=4",
            "--set",
            f"out={tmp_path / 'runs'}",
            "--set",
            "name=t",
            "--set",
            'model_overrides={"depth": 1}',
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    run = tmp_path / "runs" / "t"
    for name in ["config.json", "curves.png", "confusion.png"]:
        assert (run / name).exists(), name
    (log,) = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert log["epoch"] == 1 and math.isfinite(log["train_loss"]) and log["val"]["n"] == 6
    spec = read_spec(run / "model.safetensors")
    assert spec["epochs_run"] == 1 and spec["data"]["train"] == str(tmp_path / "t")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.evaluate",
            "--checkpoint",
            str(run / "model.safetensors"),
            "--images",
            str(tmp_path / "v"),
            "--out",
            str(tmp_path / "p.csv"),
            "--heatmaps",
            str(tmp_path / "hm"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "escape rate" in r.stdout and "overkill rate" in r.stdout
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert list(rows[0]) == ["file", "label", "pin", "score_BENDNG", "score_NUKENG", "score_OK"]
    assert len(rows) == 6 and len(list((tmp_path / "hm").glob("*.jpg"))) == 6
    truth = {r["file"]: r["label"] for r in csv.DictReader(open(tmp_path / "v" / "labels.csv"))}
    assert sorted(row["file"] for row in rows) == sorted(truth)
    right = sum(row["label"] == truth[row["file"]] for row in rows)
    assert f"accuracy (3 classes)  {right / 6:.4f}   (n=6)" in r.stdout  # what it printed is what it wrote
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.evaluate",
            "--checkpoint",
            str(tmp_path / "nope.safetensors"),
            "--images",
            str(tmp_path / "v"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
