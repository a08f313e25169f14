import json
from pathlib import Path

from tiny_bundles import tiny_checkpoint

from models.checkpoint import read_spec
from models.part import load_part
from models.synth.dataset import SynthConfig, generate
from training import adapt

SPEC = load_part("default")
SHIPPED = Path(__file__).resolve().parents[3] / "models" / "default" / "model.safetensors"
M = {"n": 100, "accuracy": 0.9, "escape_rate": 0.02, "overkill_rate": 0.01, "pin_accuracy": 0.9}


def test_the_verdict_refuses_a_model_worse_on_either_set():
    before = {"line": M, "acceptance": M}
    better_line = {**M, "accuracy": 0.95, "escape_rate": 0.0}
    assert adapt.verdict(before, {"line": better_line, "acceptance": M}, 0.5, 0.0) == []
    slightly = {**M, "accuracy": 0.897}  # 0.3 points lower: within --max-drop 0.5
    assert adapt.verdict(before, {"line": better_line, "acceptance": slightly}, 0.5, 0.0) == []
    why = adapt.verdict(before, {"line": better_line, "acceptance": {**M, "accuracy": 0.89}}, 0.5, 0.0)
    assert len(why) == 1 and why[0].startswith("acceptance set: accuracy")
    why = adapt.verdict(before, {"line": {**M, "escape_rate": 0.03}, "acceptance": M}, 0.5, 0.0)
    assert len(why) == 1 and why[0].startswith("held-back line frames: escapes")
    why = adapt.verdict(before, {"line": {**M, "accuracy": 0.8}, "acceptance": {**M, "escape_rate": 0.05}}, 0.5, 0.0)
    assert len(why) == 2


def test_the_table_shows_the_counts_behind_the_rates():
    """On 60 held-back defects one frame is 1.7 points: the table says how many frames a rate is."""
    held = {**M, "n": 90, "escape_rate": 3 / 60, "escapes": 3, "defective": 60, "overkill_rate": 0.0}
    held |= {"overkills": 0, "good": 30}
    text = adapt.table({"line": held, "acceptance": M}, {"line": held, "acceptance": M})
    assert "| line | base | 90 | 0.9000 | 5.00% (3 of 60) | 0.00% (0 of 30) | 0.900 |" in text
    assert "| acceptance | base | 100 | 0.9000 | 2.00% | 1.00% | 0.900 |" in text  # a record without counts


def _line_frames(tmp_path, n=16):
    """Frames with labels only (no pin positions), as the station's review export gives them."""
    folder = tmp_path / "line"
    generate(SPEC, SynthConfig(n=n, seed=77), folder, progress=False)
    (folder / "meta.jsonl").unlink()
    return folder


def test_split_holds_back_each_class_and_keeps_labels(tmp_path):
    folder = _line_frames(tmp_path, 20)
    lines = (folder / "labels.csv").read_text().splitlines()
    clicked = next(r for r in lines[1:] if ",OK," not in r)
    lines = ["file,label,pin,x,y"] + [r + (",120.5,88.0" if r == clicked else ",,") for r in lines[1:]]
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    train_dir, hold_dir = adapt.split(folder, tmp_path / "split", 0.3, seed=0)
    rows = {d: (d / "labels.csv").read_text().splitlines()[1:] for d in (train_dir, hold_dir)}
    original = set(lines[1:])
    assert set(rows[train_dir]) | set(rows[hold_dir]) == original and not set(rows[train_dir]) & set(rows[hold_dir])
    held_classes = {r.split(",")[1] for r in rows[hold_dir]}
    assert held_classes == {"BENDNG", "NUKENG", "OK"}
    assert sorted(p.name for p in (hold_dir / "images").iterdir()) == sorted(r.split(",")[0] for r in rows[hold_dir])


def test_adapt_refuses_to_hand_over_a_model_that_misses_the_bar(tmp_path, capsys):
    base = tiny_checkpoint(tmp_path / "base" / "model.safetensors", 0, SPEC)
    out = tmp_path / "out"
    fast = ["--set", "batch_size=4", "--set", "data.val_n=6", "--set", "workers=1"]
    rc = adapt.main(
        ["--folder", str(_line_frames(tmp_path)), "--base", str(base), "--out", str(out), "--renders", "8"]
        + ["--epochs", "1", "--acceptance-n", "6", "--no-export", "--max-drop", "-100"]
        + fast
    )
    captured = capsys.readouterr()
    assert rc == adapt.EXIT_REFUSED, captured.err[-2000:]
    assert "refused, nothing handed over" in captured.err and "acceptance set: accuracy" in captured.err
    assert not (out / "model.safetensors").exists()
    record = json.loads((out / "adapt.json").read_text())
    assert record["refused"] and record["before"]["line"]["n"] == record["after"]["line"]["n"] > 0
    assert "| line | base |" in captured.out and "| acceptance | adapted |" in captured.out


def test_a_bad_training_setting_is_one_line_before_any_work(tmp_path, capsys):
    """--repeat 0 (or a bad --set) is refused at once, not after the split and the base's scoring."""
    base = tiny_checkpoint(tmp_path / "base" / "model.safetensors", 0, SPEC)
    out = tmp_path / "out"
    rc = adapt.main(
        ["--folder", str(_line_frames(tmp_path, n=6)), "--base", str(base), "--out", str(out), "--repeat", "0"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "data.mix_repeat: 0 is outside [1, 100]" in err
    assert not (out / "split").exists()


def test_a_folder_without_labels_is_one_line(tmp_path, capsys):
    base = tiny_checkpoint(tmp_path / "base" / "model.safetensors", 0, SPEC)
    (tmp_path / "empty" / "images").mkdir(parents=True)
    rc = adapt.main(["--folder", str(tmp_path / "empty"), "--base", str(base), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "labels.csv: missing" in err[0]


def test_named_pins_are_located_with_the_base_models_pin_map(tmp_path):
    """Frames with file,label,pin only: the shipped model's pin map finds the named pin, so the
    dense and pin losses can train on them; a person's click is kept as it is."""
    import numpy as np

    from models.labels import read_clicks

    folder = tmp_path / "line"
    generate(SPEC, SynthConfig(n=18, seed=78), folder, progress=False)
    meta = {m["file"]: m for m in map(json.loads, (folder / "meta.jsonl").read_text().splitlines())}
    assert adapt.locate_named_pins(SHIPPED, folder) == {}  # positions known
    (folder / "meta.jsonl").unlink()
    located = adapt.locate_named_pins(SHIPPED, folder)
    near = 0
    for f, xy in located.items():
        m = meta[f]
        pins = np.array(m["pins"])
        slot = pins[:, :2] + np.median(pins[:, 2:] - pins[:, :2], axis=0) / 2  # where a straight pin stands
        d = np.linalg.norm(slot - xy, axis=1)
        near += int(d.argmin() == m["pin"] - 1 and d.min() < 0.6 * m["pitch_px"])
    assert near >= 10, (near, len(located))  # of 12 defective frames
    mine = next(iter(located))
    adapt.write_clicks(folder, {mine: (1.0, 2.0)})  # as if a person had clicked this one
    adapt.write_clicks(folder, located)
    clicks = read_clicks(folder / "labels.csv")
    assert clicks[mine] == (1.0, 2.0) and set(clicks) == set(located)


def test_the_adapted_model_is_exported_as_the_base_bundle_was():
    """The shipped model's INT8 stem failed the gate: its bundle records the float stem, and an
    adapted shipped model is exported the same way (a plain export would be refused again)."""
    bundle = json.loads((SHIPPED.parent / "bundle.json").read_text())
    argv = adapt.export_argv(SHIPPED, Path("out"))
    assert argv[:5] == [
        "--checkpoint", str(Path("out/model.safetensors")), "--out", str(Path("out/bundle")), "--drop-failing"
    ]  # fmt: skip
    assert ("--float-stem" in argv) == (bundle["export"]["quantize_stem"] is False)
    assert argv[argv.index("--name") + 1] == f"{bundle['name']}-adapted"
    assert argv[argv.index("--max-drop") + 1] == str(bundle["export"]["max_drop"])
    assert adapt.export_argv(Path("/nowhere/model.safetensors"), Path("out")) == argv[:5]  # no bundle: defaults


def _scores_by_model(monkeypatch, base, adapted_acceptance):
    """Scores that say which model was scored: the base gets M everywhere, the adapted model a
    better line score and `adapted_acceptance` on the acceptance set."""

    def score(ckpt, folder, preds):
        if Path(ckpt) == Path(base):
            return dict(M)
        line = Path(folder).parent.name == "split"  # the held-back frames: a folder in OUT/split
        return {**M, "accuracy": 0.95, "escape_rate": 0.0} if line else {**M, "accuracy": adapted_acceptance}

    monkeypatch.setattr(adapt, "_score", score)


def test_a_model_worse_on_the_acceptance_set_is_refused_by_the_default_limit(tmp_path, capsys, monkeypatch):
    """Better on the line, one point worse on our acceptance set (limit 0.5): nothing is handed over."""
    base = tiny_checkpoint(tmp_path / "base" / "model.safetensors", 0, SPEC)
    _scores_by_model(monkeypatch, base, adapted_acceptance=0.89)
    out = tmp_path / "out"
    fast = ["--set", "batch_size=4", "--set", "data.val_n=6", "--set", "workers=1"]
    rc = adapt.main(
        ["--folder", str(_line_frames(tmp_path)), "--base", str(base), "--out", str(out), "--renders", "8"]
        + ["--epochs", "1", "--acceptance-n", "6", "--no-export"]
        + fast
    )
    err = capsys.readouterr().err
    assert rc == adapt.EXIT_REFUSED and "acceptance set: accuracy 0.8900 more than 0.5 points below 0.9000" in err
    assert "held-back line" not in err and not (out / "model.safetensors").exists()


def test_a_model_that_clears_the_bar_is_handed_over_and_exported(tmp_path, capsys, monkeypatch):
    """The hand-over path, with scores that say which model was scored and the real rule: better on
    the line, 0.3 points lower on the acceptance set (within 0.5). The checkpoint, card and record
    are written and export.quantize runs on them with the base's export choices."""
    base = tiny_checkpoint(tmp_path / "base" / "model.safetensors", 0, SPEC)
    _scores_by_model(monkeypatch, base, adapted_acceptance=0.897)
    (base.parent / "bundle.json").write_text(
        json.dumps({"name": "tiny", "export": {"quantize_stem": False, "models": ["onnxruntime/fp32"]}})
    )
    ran = []

    def fake_run(cmd, *a, **kw):
        ran.append(cmd)
        return adapt.subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(adapt.subprocess, "run", fake_run)
    out = tmp_path / "out"
    fast = ["--set", "batch_size=4", "--set", "data.val_n=6", "--set", "workers=1"]
    rc = adapt.main(
        ["--folder", str(_line_frames(tmp_path)), "--base", str(base), "--out", str(out), "--renders", "8"]
        + ["--epochs", "1", "--acceptance-n", "6", "--repeat", "3"]
        + fast
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-2000:]
    assert "(x3 an epoch) + 8 renders" in captured.out
    run = json.loads((out / "adapt.json").read_text())["run"]
    assert read_spec(Path(run) / "model.safetensors")["train_config"]["data"]["mix_repeat"] == 3
    assert (out / "model.safetensors").exists() and "# Adapted model" in (out / "MODEL_CARD.md").read_text()
    assert json.loads((out / "adapt.json").read_text())["refused"] == []
    [cmd] = ran
    assert cmd[1:3] == ["-m", "export.quantize"] and "--float-stem" in cmd
    assert cmd[cmd.index("--checkpoint") + 1] == str(out / "model.safetensors")
    assert cmd[cmd.index("--models") + 1] == "onnxruntime/fp32" and cmd[cmd.index("--name") + 1] == "tiny-adapted"
    assert f"--switch-model {out / 'bundle'}" in captured.out


def test_the_base_models_own_blender_frames_are_kept_in_the_fine_tuning(tmp_path, capsys, monkeypatch):
    """A base trained on Blender frames beside its renders (the shipped model) is fine-tuned with
    them again, once an epoch, when they are on disk, so the line does not make it forget them;
    when they are not, it says so and goes on without them (never an hour of rendering)."""
    from training import datasets

    monkeypatch.setattr(datasets, "data_dir", lambda: tmp_path / "data")
    tc = {"data": {"mix_set": "blender-train,blender-train-b", "mix_n": 6}}
    assert adapt.base_sets({"data": {}}, SPEC) is None
    assert adapt.base_sets(tc, SPEC) == ("blender-train,blender-train-b", 6, [])
    kept = datasets.folder_of(datasets.get("blender-train"), SPEC, n=6)
    generate(SPEC, SynthConfig(n=6, seed=5), kept, progress=False)  # stands in for the Blender frames
    assert adapt.base_sets(tc, SPEC) == ("blender-train,blender-train-b", 6, [kept])

    base = tiny_checkpoint(tmp_path / "base" / "model.safetensors", 0, SPEC)
    _scores_by_model(monkeypatch, base, adapted_acceptance=0.897)
    args = ["--folder", str(_line_frames(tmp_path)), "--base", str(base), "--renders", "8", "--epochs", "1"]
    args += ["--acceptance-n", "6", "--no-export", "--set", "batch_size=4", "--set", "data.val_n=6"]
    args += ["--set", "workers=1"]
    real = datasets.materialize  # the Blender renderer finds its complete folder and renders nothing
    monkeypatch.setattr(datasets, "materialize", lambda s, part, *a, **k: kept if s.name == "blender-train"
                        else real(s, part, *a, **k))  # fmt: skip
    monkeypatch.setattr(adapt, "base_sets", lambda tc, part: ("blender-train,blender-train-b", 6, [kept]))
    assert adapt.main([*args, "--out", str(tmp_path / "partial")]) == 0
    out = capsys.readouterr().out
    assert "note: the base trained on blender-train,blender-train-b too, not all on disk here" in out
    run = json.loads((tmp_path / "partial" / "adapt.json").read_text())["run"]
    assert read_spec(Path(run) / "model.safetensors")["train_config"]["data"]["keep_set"] is None

    monkeypatch.setattr(adapt, "base_sets", lambda tc, part: ("blender-train", 6, [kept]))
    assert adapt.main([*args, "--out", str(tmp_path / "kept")]) == 0
    out = capsys.readouterr().out
    assert "+ 8 renders + the base's blender-train, 1 epochs" in out
    run = Path(json.loads((tmp_path / "kept" / "adapt.json").read_text())["run"])
    data = read_spec(run / "model.safetensors")["train_config"]["data"]
    assert (data["keep_set"], data["keep_n"]) == ("blender-train", 6)
    assert str(kept) in read_spec(run / "model.safetensors")["data"]["mix"]
    assert adapt.main([*args, "--out", str(tmp_path / "without"), "--no-base-frames"]) == 0
    run = json.loads((tmp_path / "without" / "adapt.json").read_text())["run"]
    assert read_spec(Path(run) / "model.safetensors")["train_config"]["data"]["keep_set"] is None
