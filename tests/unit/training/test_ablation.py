import dataclasses
import json
from pathlib import Path

from models.metrics import metrics
from training import ablation
from training.train import resolve_config


def _fake_train(val_by_row):
    """Stands in for the training (the row's config is built by the real code): writes the run's
    config.json as train() does and returns its summary, with the validation given for that row."""

    def train(cfg, progress=True):
        run = Path(cfg.out) / cfg.name
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.json").write_text(json.dumps(dataclasses.asdict(cfg)))
        return {"run": str(run), "elapsed_s": 90.0, "val": val_by_row[cfg.name]}

    return train


def test_ablation_writes_its_rows_between_the_markers_and_keeps_the_rest(tmp_path, monkeypatch, capsys):
    """docs/ablation.md holds every run's write-up around the ladder's table: a rerun replaces the
    table only, shows a collapsed row as collapsed, and keeps earlier rows from results.json."""
    labels = [0] * 10 + [1] * 10 + [2] * 10
    collapsed = metrics(labels, [0] * 30)  # the original failure: every image class 0
    learned = metrics(labels, labels[:-1] + [0], labels, labels[:-1] + [0])  # one overkill
    monkeypatch.setattr(ablation, "train", _fake_train({"seed-like": collapsed, "augment": learned}))
    table = tmp_path / "ablation.md"
    table.write_text(
        "# Ablation\n\nwrite-up before\n\n<!-- ablation:start -->\nold table\n<!-- ablation:end -->\n\nafter\n"
    )
    out = tmp_path / "runs"
    assert ablation.main(["--rows", "seed-like", "--scale", "0.1", "--out", str(out), "--table", str(table)]) == 0
    assert ablation.main(["--rows", "augment", "--out", str(out), "--table", str(table)]) == 0
    body = table.read_text()
    assert body.startswith("# Ablation\n\nwrite-up before\n\n<!-- ablation:start -->\n")
    assert body.endswith("<!-- ablation:end -->\n\nafter\n") and "old table" not in body
    rows = [line for line in body.splitlines() if line.startswith(("| seed-like", "| augment"))]
    assert len(rows) == 2  # the first run's row kept from results.json, in ladder order
    seed = rows[0].split(" | ")
    epochs = max(1, round(resolve_config("seed-like", None, []).epochs * 0.1))
    assert seed[2:5] == ["2000", str(epochs), "1.5"]  # the preset's renders, epochs x scale, minutes
    assert seed[5:9] == ["0.333", "0.667", "0.000", "1.000"]  # accuracy, NG/OK, escape, overkill
    assert "calls 100% of validation images BENDNG" in rows[0]
    aug = rows[1].split(" | ")
    assert aug[5:9] == ["0.967", "0.967", "0.000", "0.100"] and aug[-1] == "no |"


def test_ablation_names_the_rows_when_none_matches(tmp_path, capsys):
    assert ablation.main(["--rows", "nope", "--out", str(tmp_path), "--table", str(tmp_path / "t.md")]) == 2
    err = capsys.readouterr().err
    assert "none of 'nope' is a row" in err and "seed-like" in err
    assert not (tmp_path / "t.md").exists()
