import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.part import CLASSES, load_part
from models.pinvit import build
from models.preprocess import InputSpec
from models.synth.dataset import BOTH_STYLES, SynthConfig, generate, read_meta
from training.data import dense_targets, load_folder
from training.train import (
    NonFiniteLoss,
    TrainConfig,
    check_collapse,
    compute_loss,
    make_batch,
    metrics,
    resolve_config,
    use_bf16,
)

SPEC = load_part("default")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    generate(SPEC, SynthConfig(n=24, seed=3), folder, progress=False)
    return load_folder(folder, InputSpec(), workers=1, progress=False)


def test_dense_targets_mark_the_defective_pin(tiny_data):
    s, ispec = tiny_data, InputSpec()
    for i in range(len(s)):
        defect, pinmap = dense_targets(s.truth[i], s.defects[i], ispec)
        assert defect.shape == pinmap.shape == (ispec.grid[0] * ispec.grid[1],)
        assert set(np.unique(pinmap)) <= set(range(28)) and len(set(np.unique(pinmap)) - {0}) >= 24
        if CLASSES[s.labels[i]] == "OK":
            assert (defect == 2).all()
        else:
            hit = np.nonzero(defect != 2)[0]
            assert 1 <= len(hit) <= 12 and (defect[hit] == s.labels[i]).all()
            # the defect tokens sit on the labelled pin in the pin map
            assert s.pins[i] in set(pinmap[hit])


def test_pin_map_is_geometric(tiny_data):
    """Which pin a token sits on must not depend on which pin is defective: a pin map that names
    the defective pin at the defect (as the first recipe did) teaches the pin head which pin
    numbers are ever defective, and naming fails on defect positions never seen in training."""
    s, ispec = tiny_data, InputSpec()
    ok = next(i for i in range(len(s)) if CLASSES[s.labels[i]] == "OK")
    _, plain = dense_targets(s.truth[ok], [], ispec)
    for pin in (4, 13, 25):
        defect, pinmap = dense_targets(s.truth[ok], [(pin, 0)], ispec)
        assert (pinmap == plain).all()
        assert (defect != 2).sum() >= 1 and pin in set(pinmap[defect != 2])


@pytest.mark.parametrize("amp", ["off", "bf16", "auto"])
def test_a_few_steps_lower_the_loss(tiny_data, amp):
    """float32, bf16 autocast (emulated, slower, where the CPU has no BF16: still right), and
    whatever the default picks on this CPU (bf16 only where it is native)."""
    from models.cpu import has_native_bf16

    assert use_bf16(amp) == {"off": False, "bf16": True, "auto": has_native_bf16()}[amp]
    torch.manual_seed(0)
    cfg = TrainConfig(aug_shift_px=0, aug_color=0)
    model = build("pinvit_tiny_cs16", {"depth": 2})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = make_batch(tiny_data, np.arange(16), InputSpec(), cfg, None)
    model.train()
    losses = []
    for _ in range(12):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16(amp)):
            loss = compute_loss(model, batch, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_collapse_check_fires_on_a_collapsed_model():
    cfg = TrainConfig(collapse_after=2)
    labels = np.array([0, 1, 2] * 20)
    collapsed = metrics(labels, np.zeros_like(labels))  # calls everything BENDNG, like the original
    assert check_collapse(collapsed, epoch=2, cfg=cfg) and "BENDNG" in check_collapse(collapsed, 2, cfg)
    assert check_collapse(collapsed, epoch=1, cfg=cfg) is None  # too early to judge
    healthy = metrics(labels, labels)
    assert check_collapse(healthy, epoch=5, cfg=cfg) is None
    never_ok = metrics(labels, np.array([0, 1, 1] * 20))  # calls every part NG: never OK
    assert "never predicts OK" in check_collapse(never_ok, epoch=5, cfg=cfg)
    assert "never predicts OK" in check_collapse(never_ok, epoch=5, cfg=cfg, before=never_ok)
    assert "BENDNG" in check_collapse(collapsed, epoch=5, cfg=cfg, before=collapsed)


def test_a_class_lost_for_one_epoch_is_not_a_collapse():
    """vary-rc05 was stopped at epoch 4: NUKENG recall 0.67, 0.59, then 0.01 for one epoch at the
    learning rate's peak. One such validation after a healthy one lets the run go on; two stop it."""
    cfg = TrainConfig(collapse_after=3)
    labels = np.array([0, 1, 2] * 20)
    healthy = metrics(labels, labels)
    swung = metrics(labels, np.array([0, 0, 2] * 20))  # every NUKENG called BENDNG for one epoch
    assert check_collapse(swung, epoch=4, cfg=cfg, before=healthy) is None
    assert "never predicts NUKENG" in check_collapse(swung, epoch=5, cfg=cfg, before=swung)
    collapsed = metrics(labels, np.zeros_like(labels))
    assert check_collapse(collapsed, epoch=4, cfg=cfg, before=healthy) is None


def test_metrics_escape_and_overkill():
    y = np.array([0, 1, 2, 2])  # BENDNG, NUKENG, OK, OK
    p = np.array([2, 0, 2, 1])  # escape, wrong class but NG, right, overkill
    m = metrics(y, p)
    assert m["escape_rate"] == 0.5 and m["overkill_rate"] == 0.5 and m["accuracy"] == 0.25
    assert m["ng_ok_accuracy"] == 0.5
    assert (m["escapes"], m["defective"], m["overkills"], m["good"]) == (1, 2, 1, 2)


def test_config_resolution():
    cfg = resolve_config("seed-like", None, ["epochs=2", "data.n=100"])
    assert cfg.epochs == 2 and cfg.data.n == 100 and cfg.supervision == "image"
    with pytest.raises(ValueError, match="unknown setting"):
        resolve_config(None, None, ["epoch=2"])
    with pytest.raises(ValueError, match="unknown preset"):
        resolve_config("nope", None, [])
    with pytest.raises(ValueError, match="away_bends"):
        resolve_config(None, None, ["data.away_bends=1.5"])


def test_init_from_refuses_another_architecture(tmp_path):
    from models.checkpoint import save_checkpoint
    from training.train import train

    ckpt = save_checkpoint(
        tmp_path / "m.safetensors", build("pinvit_tiny_cs16", {"depth": 1}), {"model_name": "pinvit_tiny_cs16"}
    )
    cfg = resolve_config(None, None, [f"init_from={ckpt}", f"out={tmp_path}", 'model_overrides={"depth": 2}'])
    with pytest.raises(ValueError, match="architecture"):
        train(cfg, progress=False)


def test_amp_auto_picks_bf16_only_where_the_cpu_has_it():
    avx2 = frozenset({"avx", "avx2", "fma"})
    bf16 = avx2 | {"avx512f", "avx512_vnni", "avx512_bf16"}
    assert not use_bf16("auto", avx2)  # emulated bf16 trains ~12x slower than float32 there
    assert use_bf16("auto", bf16) and use_bf16("auto", avx2 | {"amx_bf16"})
    assert use_bf16("bf16", avx2) and not use_bf16("off", bf16)
    assert resolve_config(None, None, []).amp == "auto"
    with pytest.raises(ValueError, match="amp"):
        resolve_config(None, None, ["amp=fp16"])


def test_a_non_finite_loss_stops_training_and_names_the_term(tiny_data):
    cfg = TrainConfig(aug_shift_px=0, aug_color=0)
    model = build("pinvit_tiny_cs16", {"depth": 1})
    batch = make_batch(tiny_data, np.arange(4), InputSpec(), cfg, None)
    batch["x"][0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteLoss, match=r"epoch 2, batch 7: the \w+ loss is nan"):
        compute_loss(model, batch, cfg, where="epoch 2, batch 7: ")


def test_training_on_relabelled_frames_without_meta_logs_a_finite_loss(tmp_path):
    """A folder as the station's relabel dialog leaves it (images/ + labels.csv, no meta.jsonl):
    only the image loss applies; the dense terms have no targets and must not turn the loss NaN."""
    import json

    from training.train import train

    folder = tmp_path / "relabelled"
    generate(SPEC, SynthConfig(n=24, seed=5), folder, progress=False)
    (folder / "meta.jsonl").unlink()
    cfg = resolve_config(
        None,
        None,
        [
            f"data.folder={folder}",
            f"data.val_folder={folder}",
            f"out={tmp_path}",
            "name=relabel",
            "epochs=2",
            "batch_size=8",
            "warmup_steps=1",
            "amp=off",
            'model_overrides={"depth": 1}',
            "workers=1",
            "collapse_after=99",
        ],
    )
    summary = train(cfg, progress=False)
    log = [json.loads(line) for line in (tmp_path / "relabel" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(np.isfinite(r["train_loss"]) and r["train_loss"] > 0 for r in log), log
    assert summary["train_images_per_s"] > 0 and summary["precision"] == "float32"


def test_ema_decay_validates_and_saves_the_average_of_the_weights_not_the_last_ones(tmp_path):
    """Runs alike but for `--set ema_decay` / `ema_start`: the same steps are taken (the average
    does not steer training); averaged from the start, the saved weights lag behind the plain run's
    last ones, nearer where training started; averaged from halfway, they lag less; from the end,
    they are the last ones. What is logged as validation is the saved model's."""
    from models.checkpoint import load_checkpoint
    from training.train import _validate, train

    folder = tmp_path / "frames"
    generate(SPEC, SynthConfig(n=24, seed=5), folder, progress=False)
    base = [f"data.folder={folder}", f"data.val_folder={folder}", f"out={tmp_path}", "epochs=2", "batch_size=8",
            "warmup_steps=1", "lr=0.01", "amp=off", 'model_overrides={"depth": 1}', "workers=1",
            "collapse_after=99"]  # fmt: skip
    cfg = resolve_config(None, None, [*base, "name=plain"])
    train(cfg, progress=False)
    for name, start in (("ema0", 0), ("ema05", 0.5), ("ema1", 1)):
        train(resolve_config(None, None, [*base, f"name={name}", "ema_decay=0.99", f"ema_start={start}"]), False)
    torch.manual_seed(cfg.seed)  # train() seeds the same way before it builds the model
    first = build(cfg.model, {**cfg.model_overrides, "n_pins": SPEC.n_pins}).state_dict()
    models = {n: load_checkpoint(tmp_path / n / "model.safetensors") for n in ("plain", "ema0", "ema05", "ema1")}
    w = {n: m.state_dict() for n, (m, _) in models.items()}

    def moved(name):
        return sum(float((w[name][k] - first[k]).norm()) for k in first if first[k].is_floating_point())

    assert 0 < moved("ema0") < moved("ema05") < moved("plain"), {n: moved(n) for n in w}
    assert moved("ema0") < 0.97 * moved("plain")
    assert all(torch.equal(w["ema1"][k], w["plain"][k]) for k in first)
    logs = {n: [json.loads(r) for r in (tmp_path / n / "log.jsonl").read_text().splitlines()] for n in w}
    assert all(logs[n][-1]["train_loss"] == pytest.approx(logs["plain"][-1]["train_loss"], rel=1e-6) for n in w)
    ema, spec = models["ema0"]
    val_s = load_folder(folder, InputSpec(**spec["input"]), workers=1, progress=False)
    assert _validate(ema, val_s, InputSpec(**spec["input"]))["confusion"] == logs["ema0"][-1]["val"]["confusion"]


def test_ema_start_without_ema_decay_is_refused_not_ignored():
    with pytest.raises(ValueError, match="ema_start: used only with ema_decay > 0"):
        resolve_config(None, None, ["ema_start=0.3"])
    assert resolve_config(None, None, ["ema_start=0.3", "ema_decay=0.999"]).ema_start == 0.3
    with pytest.raises(ValueError, match="data.keep_per_epoch: used only with data.keep_set"):
        resolve_config(None, None, ["data.keep_per_epoch=500"])


def test_camera_augment_moves_the_pin_positions_with_the_image():
    from training.train import camera_augment

    rng = np.random.default_rng(0)
    truth = np.array([[100.0, 60.0, 104.0, 40.0], [220.0, 120.0, 222.0, 100.0]], np.float32)
    for _ in range(5):
        img = np.zeros((192, 320, 3), np.uint8)
        for x, y in truth.reshape(-1, 2):
            img[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2] = 255
        out, moved = camera_augment(img, truth, 1.0, rng)
        assert out.shape == img.shape and out.dtype == np.uint8 and moved.shape == truth.shape
        for x, y in moved.reshape(-1, 2):  # each marked point is still bright where the truth now says
            patch = out[int(round(y)) - 2 : int(round(y)) + 3, int(round(x)) - 2 : int(round(x)) + 3].max()
            assert patch > 60, (x, y)


def test_random_convolution_changes_the_look_but_keeps_every_shape_where_it_was():
    """aug_randconv: colour and texture change, the bright pin ends stay on their pixels (the
    dense targets are not moved), and share 0 leaves the batch and the random stream untouched."""
    import torch

    from training.train import random_convolution

    x = torch.full((6, 3, 32, 48), -1.0)
    spots = [(8, 10), (20, 30), (12, 40)]
    for y, xx in spots:
        x[:, :, y - 1 : y + 2, xx - 1 : xx + 2] = 2.0
    rng = np.random.default_rng(0)
    assert random_convolution(x, 0.0, rng) is x and rng.random() == np.random.default_rng(0).random()
    out = random_convolution(x, 1.0, np.random.default_rng(1))
    assert out.shape == x.shape and not torch.equal(out, x)
    changed = 0
    for i in range(len(x)):
        contrast = (out[i] - out[i].mean((1, 2), keepdim=True)).abs().sum(0)
        top = {divmod(int(j), 48) for j in torch.topk(contrast.flatten(), 27).indices}
        assert all(any(abs(y - ty) <= 2 and abs(xx - tx) <= 2 for ty, tx in top) for y, xx in spots), i
        changed += not torch.allclose(out[i], x[i], atol=1e-3)
    assert changed >= 5  # the images really were drawn anew


def test_a_named_mix_set_is_rendered_once_and_trained_on_beside_the_renders(tmp_path, monkeypatch):
    """--set data.mix_set=blender-train --set data.mix_n=N: the recipe names the set, the
    registry renders it (cached) and its frames join the training renders."""
    from training import datasets
    from training import train as train_mod

    renders, extra = tmp_path / "renders", tmp_path / "extra"
    generate(SPEC, SynthConfig(n=12, seed=5), renders, progress=False)
    generate(SPEC, SynthConfig(n=6, seed=6), extra, progress=False)
    asked = []

    def materialize(s, part, n=None, workers=2, progress=True):
        asked.append((s.name, s.renderer, part.name, n))
        return extra

    monkeypatch.setattr(datasets, "materialize", materialize)
    base = [f"data.folder={renders}", f"data.val_folder={renders}", "workers=1"]
    cfg = resolve_config(None, None, [*base, "data.mix_set=blender-train", "data.mix_n=6"])
    train_set, _, info = train_mod.prepare_data(cfg, SPEC, InputSpec(), progress=False)
    assert asked == [("blender-train", "blender", "default", 6)]
    assert len(train_set) == 18 and info["mix"] == str(extra)
    thrice = resolve_config(None, None, [*base, "data.mix_set=blender-train", "data.mix_n=6", "data.mix_repeat=3"])
    train_set, _, _ = train_mod.prepare_data(thrice, SPEC, InputSpec(), progress=False)
    assert len(train_set) == 12 + 3 * 6 and train_set.files[12:18] == train_set.files[24:30]
    assert (train_set.labels[12:18] == train_set.labels[18:24]).all()
    with pytest.raises(train_mod.DataError, match="data.mix_set: unknown data set 'blender-tran'"):
        train_mod.prepare_data(resolve_config(None, None, [*base, "data.mix_set=blender-tran"]), SPEC, InputSpec())
    with pytest.raises(train_mod.DataError, match="blender-select is a selection set, never trained on"):
        train_mod.prepare_data(resolve_config(None, None, [*base, "data.mix_set=blender-select"]), SPEC, InputSpec())
    assert len(asked) == 2  # refused before anything was rendered
    # two named sets: each rendered (mix_n frames of each) and trained on, both recorded
    extra_b = tmp_path / "extra-b"
    generate(SPEC, SynthConfig(n=6, seed=7), extra_b, progress=False)
    monkeypatch.setattr(
        datasets,
        "materialize",
        lambda s, part, n=None, workers=2, progress=True: (
            asked.append((s.name, n)) or (extra if s.name == "blender-train" else extra_b)
        ),
    )
    two = resolve_config(None, None, [*base, "data.mix_set=blender-train,blender-train-b", "data.mix_n=6"])
    train_set, _, info = train_mod.prepare_data(two, SPEC, InputSpec(), progress=False)
    assert asked[-2:] == [("blender-train", 6), ("blender-train-b", 6)]
    assert len(train_set) == 12 + 6 + 6 and info["mix"] == f"{extra},{extra_b}"
    assert len(info["mix_hash"].split(",")) == 2
    for bad in ("blender-train,blender-train", "blender-train,", "blender-train,blender-test"):
        with pytest.raises(train_mod.DataError, match="data.mix_set"):
            train_mod.prepare_data(resolve_config(None, None, [*base, f"data.mix_set={bad}"]), SPEC, InputSpec())
    assert len(asked) == 4  # a bad list renders nothing, not even its good names
    both = resolve_config(None, None, [*base, "data.mix_set=blender-train", f"data.mix_folder={extra}"])
    with pytest.raises(ValueError, match="give one of them"):
        train_mod.prepare_data(both, SPEC, InputSpec(), progress=False)
    # a line folder seen 3 times an epoch beside a kept named set seen once (training.adapt)
    kept = resolve_config(None, None, [*base, f"data.mix_folder={extra_b}", "data.mix_repeat=3",
                                       "data.keep_set=blender-train", "data.keep_n=6"])  # fmt: skip
    train_set, _, info = train_mod.prepare_data(kept, SPEC, InputSpec(), progress=False)
    assert asked[-1] == ("blender-train", 6)
    assert (
        len(train_set) == 12 + 3 * 6 + 6
        and train_set.files[-6:] == load_folder(extra, InputSpec(), workers=1, progress=False).files
    )
    assert info["mix"] == f"{extra_b},{extra}" and len(info["mix_hash"].split(",")) == 2
    with pytest.raises(train_mod.DataError, match="data.keep_set: blender-test is a test set"):
        train_mod.prepare_data(resolve_config(None, None, [*base, "data.keep_set=blender-test"]), SPEC, InputSpec())


def test_kept_frames_drawn_afresh_each_epoch_shorten_the_epoch_and_are_all_seen(tmp_path, monkeypatch):
    """`--set data.keep_per_epoch=K` (training.adapt's base frames): an epoch takes every line
    frame and K of the kept ones, a new K each epoch, so the run is shorter and still sees them."""
    import json

    from training import datasets
    from training.train import epoch_order, train

    line, kept = tmp_path / "line", tmp_path / "kept"
    generate(SPEC, SynthConfig(n=16, seed=5), line, progress=False)
    generate(SPEC, SynthConfig(n=16, seed=6), kept, progress=False)
    monkeypatch.setattr(datasets, "materialize", lambda s, part, n=None, workers=2, progress=True: kept)
    base = [f"data.folder={line}", f"data.val_folder={line}", f"out={tmp_path}", "epochs=2", "batch_size=8",
            "warmup_steps=1", "amp=off", 'model_overrides={"depth": 1}', "workers=1", "collapse_after=99",
            "data.keep_set=blender-train"]  # fmt: skip
    for name, extra, steps in (("all", [], 4), ("half", ["data.keep_per_epoch=8"], 3)):
        train(resolve_config(None, None, [*base, f"name={name}", *extra]), progress=False)
        log = [json.loads(r) for r in (tmp_path / name / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in log] == [steps, 2 * steps], (name, log)
    rng = np.random.default_rng(0)
    epochs = [epoch_order(40, 16, 4, rng) for _ in range(30)]
    assert all(len(e) == 28 and len(set(e)) == 28 and set(range(24)) <= set(e) for e in epochs)
    assert set(np.concatenate(epochs)) == set(range(40))  # every kept frame drawn in some epoch
    assert len({tuple(sorted(e[e >= 24])) for e in epochs}) > 1
    assert sorted(epoch_order(40, 16, None, rng)) == list(range(40))


def test_train_help_lists_every_setting_and_a_bad_set_is_one_line(capsys):
    from training import train as train_mod

    with pytest.raises(SystemExit) as e:
        train_mod.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for key in ("data.vary=0.0", "epochs=10", 'amp="auto"', "data.mix_set=null"):
        assert key in out
    assert train_mod.main(["--set", "epochs=ten"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "epochs: expected int" in err
    assert train_mod.main(["--set", "model_overrides.instance_norm_stage=2"]) == 2  # a typo is not trained past
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown model setting instance_norm_stage" in err
    assert train_mod.main(["--set", "model_overrides.instance_norm_stages=5"]) == 2  # not silently "all of them"
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "instance_norm_stages: 5 is outside [0, 3]" in err


def test_render_looks_set_for_training_reach_the_renders_and_old_sets_keep_their_folders(tmp_path, monkeypatch):
    """--set data.pin_shade / data.hard_light render a set of their own with those looks; at 0
    the folder is the one a run before the options used (its name hashes only the old settings)."""
    from training import train as train_mod

    monkeypatch.setenv("PININSPECT_DATA", str(tmp_path))
    plain = train_mod._synth_folder(SPEC, 4, 7, "photo=1", 1.3, None, 1, hard_light=0.0, pin_shade=0.0)
    assert train_mod._synth_folder(SPEC, 4, 7, "photo=1", 1.3, None, 1) == plain
    shaded = train_mod._synth_folder(SPEC, 4, 7, "photo=1", 1.3, None, 1, hard_light=1.0, pin_shade=1.0)
    assert shaded != plain
    held = json.loads((shaded / "dataset.json").read_text())
    assert held["pin_shade"] == 1.0 and held["hard_light"] == 1.0
    assert all("shade" in m["params"] and "light" in m["params"] for m in read_meta(shaded / "meta.jsonl"))
    assert not any("shade" in m["params"] for m in read_meta(plain / "meta.jsonl"))


def test_every_render_look_set_on_the_command_line_reaches_the_training_renders(tmp_path, monkeypatch):
    """`--set data.<look>=1` as a user types it, through prepare_data: the training renders are
    drawn with every look (their dataset.json and each frame's parameters say so)."""
    from models.synth.dataset import LOOKS
    from training import train as train_mod

    monkeypatch.setenv("PININSPECT_DATA", str(tmp_path))
    val = tmp_path / "val"
    generate(SPEC, SynthConfig(n=3, seed=5), val, progress=False)
    sets = ["data.n=4", "data.styles=photo=1", f"data.val_folder={val}", "workers=1"]
    cfg = train_mod.resolve_config(None, None, sets + [f"data.{look}=1" for look in LOOKS])
    *_, info = train_mod.prepare_data(cfg, SPEC, InputSpec(), progress=False)
    drawn = json.loads((Path(info["train"]) / "dataset.json").read_text())
    assert {look: drawn[look] for look in LOOKS} == dict.fromkeys(LOOKS, 1.0)
    params = [m["params"] for m in read_meta(Path(info["train"]) / "meta.jsonl")]
    assert len(params) == 4 and all({"shade", "light", "tip"} <= set(p) for p in params), params[0].keys()


def test_shade_rows_set_for_training_renders_rows_apart_in_a_folder_of_its_own(tmp_path, monkeypatch):
    from training import train as train_mod

    monkeypatch.setenv("PININSPECT_DATA", str(tmp_path))
    cfg = train_mod.resolve_config(None, None, ["data.pin_shade=1", "data.shade_rows=1"])
    assert (cfg.data.pin_shade, cfg.data.shade_rows) == (1.0, 1.0)
    shaded = train_mod._synth_folder(SPEC, 4, 7, "photo=1", 1.3, None, 1, pin_shade=1.0)
    rows = train_mod._synth_folder(SPEC, 4, 7, "photo=1", 1.3, None, 1, pin_shade=1.0, shade_rows=1.0)
    assert rows != shaded
    assert json.loads((rows / "dataset.json").read_text())["shade_rows"] == 1.0
    assert all(len(m["params"]["shade"]["row_levels"]) == SPEC.rows for m in read_meta(rows / "meta.jsonl"))
    assert not any("row_levels" in m["params"]["shade"] for m in read_meta(shaded / "meta.jsonl"))


def test_tip_tone_set_for_training_reaches_the_renders(tmp_path, monkeypatch):
    from training import train as train_mod

    monkeypatch.setenv("PININSPECT_DATA", str(tmp_path))
    assert train_mod.resolve_config(None, None, ["data.tip_tone=0.5"]).data.tip_tone == 0.5
    plain = train_mod._synth_folder(SPEC, 4, 7, "photo=1", 1.3, None, 1)
    toned = train_mod._synth_folder(SPEC, 4, 7, "photo=1", 1.3, None, 1, tip_tone=1.0)
    assert toned != plain and json.loads((toned / "dataset.json").read_text())["tip_tone"] == 1.0
    assert all("tip" in m["params"] for m in read_meta(toned / "meta.jsonl"))
    assert not any("tip" in m["params"] for m in read_meta(plain / "meta.jsonl"))


def test_cached_training_sets_keep_their_folder_names(monkeypatch, tmp_path):
    """Folders rendered by earlier runs are found again: their names hash the settings as the
    runs that made them did (the names below are those of vary-in2, vary-in2-ps08 and
    vary-in2-ps08-rows' training sets, docs/runs/)."""
    from training import train as train_mod

    monkeypatch.setenv("PININSPECT_DATA", str(tmp_path))
    monkeypatch.setattr(train_mod, "generate_once", lambda part, cfg, folder: folder)

    def name(**looks):
        return train_mod._synth_folder(SPEC, 7000, 1, BOTH_STYLES, 1.3, None, 2, max_defects=3, **looks).name

    assert name(vary=1.0) == "synth-default-7000-1-548158c3"
    assert name(vary=1.0, pin_shade=0.8) == "synth-default-7000-1-1d5052e3"
    assert name(vary=1.0, pin_shade=0.8, shade_rows=0.5, tip_tone=0.0) == "synth-default-7000-1-41d54870"
    with pytest.raises(TypeError, match="unknown render looks: pin_shine"):
        name(pin_shine=1.0)


def test_every_render_look_is_a_training_setting():
    import dataclasses

    from models.synth.dataset import LOOKS
    from training.train import DataConfig

    assert set(LOOKS) <= {f.name for f in dataclasses.fields(DataConfig)}
