"""training.compare: one selection set, one table row per run."""

import csv
import json

from tiny_bundles import tiny_checkpoint

from models.part import load_part, part_from_dict
from training.compare import main


def test_compare_two_runs_on_one_selection_set(tmp_path, capsys):
    a = tiny_checkpoint(tmp_path / "a" / "model.safetensors", seed=0)
    b = tiny_checkpoint(tmp_path / "b.safetensors", seed=1)
    out = tmp_path / "cmp.json"
    rc = main([str(a.parent), str(b), "--n", "9", "--seed", "3", "--data", str(tmp_path / "data"), "--out", str(out)])
    assert rc == 0
    table = json.loads(out.read_text())
    assert [r["run"] for r in table["runs"]] == [str(a.parent), str(b)]
    (folder,) = (tmp_path / "data").iterdir()
    truth = {row["file"]: row["label"] for row in csv.DictReader(open(folder / "labels.csv"))}
    for r, name in zip(table["runs"], ["a", "b"], strict=True):
        # the table's counts are the ones the run's own predictions give, recounted here
        pred = {row["file"]: row["label"] for row in csv.DictReader(open(folder / f"preds-{name}.csv"))}
        assert r["escapes"] == sum(truth[f] != "OK" and pred[f] == "OK" for f in truth)
        assert r["overkills"] == sum(truth[f] == "OK" and pred[f] != "OK" for f in truth)
        assert sum(v for k, v in r["escapes_by_kind"].items() if k.startswith("style")) == r["escapes"]
    printed = capsys.readouterr().out
    assert "| escapes |" in printed and str(b) in printed
    # the selection set is rendered once and reused
    assert len(list((tmp_path / "data").iterdir())) == 1


def test_compare_refuses_models_of_different_parts(tmp_path, capsys):
    raw = load_part("default").to_dict()
    raw["name"], raw["rows"] = "two-row", 2
    other = part_from_dict(raw)
    a = tiny_checkpoint(tmp_path / "a.safetensors", seed=0)
    b = tiny_checkpoint(tmp_path / "b.safetensors", seed=0, part=other)
    assert main([str(a), str(b), "--data", str(tmp_path / "data")]) == 2
    assert "different parts" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()
