"""The model card's training lines (training.ship)."""

import hashlib
import json

from training.ship import _stages, stale_bundle


def _spec(name, epochs, seed, init_from=None):
    tc = {"name": name, "data": {"n": 7000, "seed": seed}, "lr": 1e-3, "init_from": init_from}
    return {"train_config": tc, "epochs_run": epochs, "train_seconds": 1200.0}


def test_one_run_is_one_training_line():
    lines = _stages(_spec("default", 10, 1), {"elapsed_s": 1248, "data_s": 84, "peak_rss_mb": 3348}, None)
    assert lines == [
        "* Training (`default`): 10 epochs on 7000 renders (seed 1), lr 0.001, 20.8 min (rendering 84 s of it), "
        "peak memory 3348 MB."
    ]


def test_a_fine_tuned_run_describes_the_checkpoint_it_started_from():
    # the first stage's spec is passed in (read before shipping overwrites that checkpoint)
    first = _spec("default", 10, 1)
    lines = _stages(_spec("default-continued", 5, 2, "models/default/model.safetensors"), {}, first)
    assert len(lines) == 2
    assert lines[0].startswith("* Stage 1 (`default`): 10 epochs on 7000 renders (seed 1)")
    assert lines[1].startswith("* Stage 2 (`default-continued`, from models/default/model.safetensors): 5 epochs")


def test_a_bundle_exported_from_another_checkpoint_is_called_stale(tmp_path):
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(b"new weights")
    assert stale_bundle(tmp_path, ckpt) is None  # no bundle yet
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps({"source": {"sha256": hashlib.sha256(b"old weights").hexdigest()}}))
    msg = stale_bundle(tmp_path, ckpt)
    assert msg and "bundle.json" in msg and "export.quantize" in msg
    old = {"sha256": hashlib.sha256(b"old weights").hexdigest()}
    bundle.write_text(json.dumps({"source": old, "export": {"quantize_stem": False, "max_drop": 0.5}}))
    msg = stale_bundle(tmp_path, ckpt)  # the command to export it again keeps the old bundle's choices
    assert msg.endswith(f"python -m export.quantize --name {tmp_path.name} --float-stem --max-drop 0.5")
    bundle.write_text(json.dumps({"source": {"sha256": hashlib.sha256(b"new weights").hexdigest()}}))
    assert stale_bundle(tmp_path, ckpt) is None


def test_a_run_with_blender_frames_says_so_and_how_to_remake_it(tmp_path):
    """A model that trained on Blender frames must not call the Blender test set unseen, and its
    card's commands must remake it (the renders, the Blender frames, the same settings)."""
    from training.ship import _reproduce, blender_frames

    blender = tmp_path / "blender-train-x-757575-1000"
    blender.mkdir()
    (blender / "dataset.json").write_text(json.dumps({"generator": "blender", "n": 1000}))
    procedural = tmp_path / "synth"
    procedural.mkdir()
    (procedural / "dataset.json").write_text(json.dumps({"generator": "pininspect-synth", "n": 3000}))
    spec = _spec("mix1000", 5, 2, "models/default/model.safetensors")
    spec["train_config"]["epochs"] = 5
    assert blender_frames({**spec, "data": {"train": str(procedural)}}) is None
    spec["data"] = {"train": str(procedural), "mix": str(blender)}
    assert blender_frames(spec) == (1000, str(blender))
    stage = _stages(spec, {}, _spec("default", 10, 1))[1]
    assert "7000 renders (seed 2) + 1000 Blender frames (`blender-train-x-757575-1000`)" in stage
    cmds = "\n".join(_reproduce(spec))
    assert f"--set data.mix_folder={blender}" in cmds and "--set data.n=7000 --set epochs=5 --set lr=0.001" in cmds
    assert f"-m training.blender --out {blender} --n 1000 --seed 757575" in cmds


def test_two_mixed_blender_sets_add_up_on_the_card(tmp_path):
    """`data.mix_set=blender-train,blender-train-b`: the run records both folders comma-separated;
    the card counts every Blender frame and names both sets, and the Blender test row is not unseen."""
    from training.ship import _reproduce, _stages, blender_frames

    folders = []
    for seed in (757575, 767676):
        f = tmp_path / f"blender-train-default-x-{seed}-2000"
        f.mkdir()
        (f / "dataset.json").write_text(json.dumps({"generator": "blender", "n": 2000}))
        folders.append(str(f))
    spec = _spec("both4000", 8, 1)
    spec["data"] = {"train": str(tmp_path / "synth"), "mix": ",".join(folders)}
    assert blender_frames(spec) == (4000, ",".join(folders))
    stage = _stages(spec, {}, None)[0]
    assert (
        "+ 4000 Blender frames (`blender-train-default-x-757575-2000`, `blender-train-default-x-767676-2000`)" in stage
    )
    # a second stage on both sets is remade by naming them, not by one "folder" of two paths
    spec["train_config"] = {**spec["train_config"], "init_from": "models/default/model.safetensors"}
    spec["train_config"]["data"] = {**spec["train_config"]["data"], "mix_set": "blender-train,blender-train-b"}
    spec["train_config"]["epochs"] = 5
    cmds = "\n".join(_reproduce(spec))
    assert "--set data.mix_set=blender-train,blender-train-b" in cmds and "mix_folder" not in cmds
    assert "renders the 4000 Blender frames on first use" in cmds and "training.blender --out" not in cmds


def test_a_one_stage_run_is_remade_by_the_settings_it_changed(tmp_path):
    """The card's command is the run's own: every setting that differs from the defaults, so a
    run trained with Blender frames beside the renders is not remade as the plain default."""
    import dataclasses

    from training.ship import _reproduce
    from training.train import TrainConfig

    tc = dataclasses.asdict(TrainConfig())
    tc["data"].update(n=6000, mix_set="blender-train", mix_n=1000)
    tc["model_overrides"] = {"stem_depth": 2, "depth": 4}
    blender = tmp_path / "blender-train-default-x-757575-1000"
    blender.mkdir()
    (blender / "dataset.json").write_text(json.dumps({"generator": "blender", "n": 1000}))
    spec = {"train_config": tc, "data": {"train": str(tmp_path / "synth"), "mix": str(blender)}}
    train, ship = _reproduce(spec)[-2:]
    assert train == (
        """python -m training.train --set 'model_overrides={"stem_depth":2,"depth":4}' """
        "--set data.n=6000 --set data.mix_set=blender-train --set data.mix_n=1000   # -> runs/default/"
    )
    assert ship.startswith("python -m training.ship --run runs/default ")
    assert "renders the 1000 Blender frames on first use" in _reproduce(spec)[0]
    assert _reproduce({"train_config": dataclasses.asdict(TrainConfig()), "data": {}}) == [
        "python -m training.train   # -> runs/default/",
        "python -m training.ship --run runs/default   # -> models/default/ + this card",
    ]
    # a card made with a smaller Blender test set says so, or its command would make another card
    assert _reproduce(spec, blender_n=300)[-1].startswith("python -m training.ship --run runs/default --blender-n 300 ")
    assert "--blender-n" not in _reproduce(spec, blender_n=1500)[-1]


def test_the_card_splits_ng_ok_errors_by_housing_tone():
    """Each test set with frame parameters gets its escapes and overkills per housing tone; a set
    without them (a relabelled folder) is left out, and no section at all when none has them."""
    from training.ship import _housing_section

    dark = {"n": 70, "defective": 46, "escapes": 1, "good": 24, "overkills": 0}
    light = {"n": 30, "defective": 20, "escapes": 2, "good": 10, "overkills": 3}
    results = {"blender-test": {"by_housing": {"dark": dark, "light": light}}, "line": {"accuracy": 0.9}}
    lines = _housing_section(results)
    assert lines[0] == "### NG vs OK by housing tone"
    assert "| blender-test | 1 of 46 | 0 of 24 | 2 of 20 | 3 of 10 |" in lines
    assert not any(line.startswith("| line") for line in lines)
    assert _housing_section({"line": {"accuracy": 0.9}}) == []


def test_the_card_splits_escapes_by_where_the_defect_is():
    """Each test set with frame parameters gets its escapes on inner pins, other border-pin defects
    and border pins bent out over the edge; a place with no defect shows 0 of 0; no section when
    no set has them."""
    from training.ship import _place_section

    places = {"inner": {"defective": 500, "escapes": 1}, "border_out": {"defective": 70, "escapes": 3}}
    lines = _place_section({"blender-test": {"by_place": places}, "line": {"accuracy": 0.9}})
    assert lines[0] == "### Escapes by where the defect is"
    header = "| test set | inner pins | border pins, other defects | border pins bent outward |"
    assert header in lines
    assert "| blender-test | 1 of 500 | 0 of 0 | 3 of 70 |" in lines
    assert not any(line.startswith("| line") for line in lines)
    assert _place_section({"line": {"accuracy": 0.9}}) == []
