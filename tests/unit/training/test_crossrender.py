import json

import numpy as np
import pytest
from tiny_bundles import tiny_checkpoint

from models.part import CLASSES, load_part
from models.preprocess import InputSpec
from models.synth.dataset import SynthConfig, generate
from training import crossrender, datasets
from training.data import concat, load_folder
from training.train import TrainConfig, make_batch

SPEC = load_part("default")


def test_score_gives_a_row_per_set_with_missing_pins(tmp_path):
    """Missing pins (pushed back to at most 10% of their height) are counted from the frames' own
    parameters, and those called OK from the predictions written beside."""
    import csv

    from models.synth.dataset import read_meta

    ckpt = tiny_checkpoint(tmp_path / "m" / "model.safetensors", 0, SPEC)
    rows = crossrender.score(
        ckpt, ["procedural-test"], n=40, data=tmp_path / "data", progress=False, preds_dir=tmp_path / "preds"
    )
    (preds,) = (tmp_path / "preds").glob("preds-*.csv")
    assert not list(ckpt.parent.glob("preds-*"))
    assert len(rows) == 1 and rows[0]["set"] == "procedural-test" and rows[0]["n"] == 40
    assert rows[0]["predictions"] == str(preds)  # crossrender average reads them back
    (folder,) = (tmp_path / "data").glob("procedural-test-*")
    gone = {m["file"] for m in read_meta(folder / "meta.jsonl") if m["label"] == "NUKENG"
            and m["params"]["nuke_height"] <= 0.1}  # fmt: skip
    called = {r["file"]: r["label"] for r in csv.DictReader(open(preds))}
    assert gone and rows[0]["missing_pins"]["n"] == len(gone)
    assert rows[0]["missing_pins"]["escapes"] == sum(called[f] == "OK" for f in gone)
    assert sum(t["n"] for t in rows[0]["by_housing"].values()) == 40  # every render says its housing
    places = rows[0]["by_place"]  # every defect has a place on the part, its escapes from the CSV
    defects = {m["file"]: m for m in read_meta(folder / "meta.jsonl") if m["label"] != "OK"}
    assert sum(t["defective"] for t in places.values()) == len(defects)
    assert sum(t["escapes"] for t in places.values()) == sum(called[f] == "OK" for f in defects)
    table = crossrender.format_rows(rows, ckpt)
    assert "| procedural-test | procedural | 40 |" in table


def test_cli_refuses_an_unknown_set_in_one_line(capsys):
    assert crossrender.main(["score", "--sets", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown data set 'nope'" in err[0]


def test_blender_set_without_the_blender_venv_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PININSPECT_BLENDER_PYTHON", str(tmp_path / "no-such-python"))
    with pytest.raises(datasets.DatasetError, match="make blender-venv"):
        datasets.materialize(datasets.get("blender-select"), SPEC, tmp_path, n=2, progress=False)


def test_a_light_housing_set_asks_the_blender_renderer_for_its_share(tmp_path, monkeypatch):
    """materialize runs the Blender renderer with the set's --light-housings (a fake renderer that
    records its command line stands in for bpy)."""
    fake = tmp_path / "fake-python"
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "argv"}\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PININSPECT_BLENDER_PYTHON", str(fake))
    datasets.materialize(datasets.get("blender-train-light"), SPEC, tmp_path, n=3, progress=False)
    argv = (tmp_path / "argv").read_text().split()
    assert argv[argv.index("--light-housings") + 1] == "1.0" and argv[argv.index("--seed") + 1] == "787878"
    datasets.materialize(datasets.get("blender-train"), SPEC, tmp_path, n=3, progress=False)
    assert "--light-housings" not in (tmp_path / "argv").read_text()
    assert "--border-defects" not in (tmp_path / "argv").read_text()
    datasets.materialize(datasets.get("blender-train-border"), SPEC, tmp_path, n=3, progress=False)
    argv = (tmp_path / "argv").read_text().split()
    assert argv[argv.index("--border-defects") + 1] == "0.8" and argv[argv.index("--light-housings") + 1] == "0.5"


def test_mixing_renders_with_frames_that_have_no_pin_positions(tmp_path):
    """A mix folder without meta.jsonl (relabelled station frames) joins the renders: its OK
    frames have no defect under any token, its defects (no click) train the image label only, the
    renders keep their dense targets."""
    a, b = tmp_path / "renders", tmp_path / "line"
    generate(SPEC, SynthConfig(n=6, seed=1), a, progress=False)
    generate(SPEC, SynthConfig(n=6, seed=2), b, progress=False)
    (b / "meta.jsonl").unlink()
    ispec = InputSpec()
    mixed = concat(load_folder(a, ispec, workers=1, progress=False), load_folder(b, ispec, workers=1, progress=False))
    assert len(mixed) == 12 and mixed.truth.shape[0] == 12 and np.isnan(mixed.truth[6:]).all()
    batch = make_batch(mixed, np.arange(12), ispec, TrainConfig(aug_shift_px=0, aug_color=0), None)
    dense = batch["dense"].numpy()
    ok = mixed.labels[6:] == CLASSES.index("OK")
    assert ok.any() and (~ok).any()
    assert (dense[6:][ok] == CLASSES.index("OK")).all() and (dense[6:][~ok] == -100).all() and (dense[:6] >= 0).all()
    assert (batch["image_label"].numpy() == mixed.labels).all()
    json.dumps(mixed.files)  # file names stay plain strings


def test_total_adds_up_score_records_per_model(tmp_path, capsys):
    """`crossrender total` over the JSON that `score --json` writes: per model, the escapes,
    overkills and wrong NG/OK calls of all its sets, counted from each row's confusion matrix."""

    def record(name, checkpoint, confusion, missing, housing=None, places=None):
        row = {"set": name, "n": sum(map(sum, confusion)), "confusion": confusion, "missing_pins": missing}
        if housing:  # records written before the housing breakdown have none
            row["by_housing"] = housing
        if places:  # nor those written before the breakdown by place
            row["by_place"] = places
        path = tmp_path / f"{name}-{checkpoint.replace('/', '_')}.json"
        path.write_text(json.dumps({"checkpoint": checkpoint, "rows": [row]}))
        return str(path)

    def tones(dark, light):  # (frames, defective, escapes, good, overkills) per housing tone
        keys = ("n", "defective", "escapes", "good", "overkills")
        return {"dark": dict(zip(keys, dark, strict=True)), "light": dict(zip(keys, light, strict=True))}

    files = [
        record(
            "a",
            "m1",
            [[60, 5, 2], [3, 60, 1], [1, 0, 40]],
            {"n": 9, "escapes": 1},
            tones((120, 90, 1, 30, 0), (52, 41, 2, 11, 1)),
            {
                "inner": {"defective": 70, "escapes": 1},
                "border": {"defective": 50, "escapes": 1},
                "border_out": {"defective": 11, "escapes": 1},
            },
        ),
        record(
            "b",
            "m1",
            [[30, 0, 4], [0, 30, 0], [2, 2, 30]],
            {"n": 4, "escapes": 0},
            tones((70, 48, 1, 22, 2), (28, 16, 3, 12, 2)),
            {
                "inner": {"defective": 30, "escapes": 0},
                "border": {"defective": 28, "escapes": 2},
                "border_out": {"defective": 6, "escapes": 2},
            },
        ),
        record("a", "m2", [[67, 0, 0], [0, 64, 0], [0, 0, 41]], {"n": 9, "escapes": 0}),
    ]
    assert crossrender.main(["total", *files]) == 0
    out = capsys.readouterr().out.splitlines()
    m1 = "| m1 | a 172, b 98 | 270 | 7 of 195 | 5 of 75 | 12 | 1 of 13 | 4 of 190 | 8 of 80 | 6 of 95 (3 of 17) |"
    assert out[2] == m1
    assert out[3] == "| m2 | a 172 | 172 | 0 of 131 | 0 of 41 | 0 | 0 of 9 | - | - | - |"
    bad = tmp_path / "bad.json"
    bad.write_text('{"rows": []}')
    assert crossrender.main(["total", files[0], str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "not a record of crossrender score --json" in err[0]


def test_average_scores_what_two_models_call_together_from_their_saved_predictions(tmp_path, capsys):
    """`crossrender average` (an ensemble, no model run again): the class scores of two models'
    predictions CSVs averaged frame by frame. Each model lets one defect through that the other
    catches, and both reject the same good part: together they let none through."""
    import csv

    from models.labels import read_labels

    folder = tmp_path / "set"
    generate(SPEC, SynthConfig(n=9, seed=3), folder, progress=False)
    truth = read_labels(folder / "labels.csv")
    good = [f for f, (c, _) in truth.items() if CLASSES[c] == "OK"]
    bad = [f for f, (c, _) in truth.items() if CLASSES[c] != "OK"]
    ok = CLASSES.index("OK")

    def preds(path, wrong):  # right with 0.8 on every frame, except those in `wrong`: {file: scores}
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file", "label", "pin", *(f"score_{c}" for c in CLASSES)])
            for name, (c, pin) in truth.items():
                sc = wrong.get(name) or [0.8 if k == c else 0.1 for k in range(3)]
                w.writerow([name, CLASSES[int(np.argmax(sc))], pin, *sc])

    escape = [0.1, 0.1, 0.8]
    preds(tmp_path / "a.csv", {bad[0]: escape, good[0]: [0.8, 0.1, 0.1]})
    preds(tmp_path / "preds-mb-set.csv", {bad[1]: escape, good[0]: [0.6, 0.1, 0.3]})  # score's default name
    row = {"set": "s", "renderer": "procedural", "folder": str(folder)}
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"checkpoint": "runs/ma/model.safetensors",
                             "rows": [{**row, "predictions": str(tmp_path / "a.csv")}]}))  # fmt: skip
    b.write_text(json.dumps({"checkpoint": "runs/mb/model.safetensors", "rows": [row]}))  # written before the path
    assert crossrender.main(["average", str(a), str(b), "--json", str(tmp_path / "avg.json")]) == 0
    (got,) = json.loads((tmp_path / "avg.json").read_text())["rows"]
    assert (got["escapes"], got["overkills"], got["n"]) == (0, 1, 9)
    assert got["confusion"][ok][ok] == len(good) - 1 and got["accuracy"] == pytest.approx(8 / 9)
    assert "pin_accuracy" not in got and got["missing_pins"]["n"] == sum(
        r["label"] == "NUKENG" and r["params"]["nuke_height"] <= 0.1
        for r in map(json.loads, open(folder / "meta.jsonl"))
    )
    capsys.readouterr()
    assert crossrender.main(["total", str(tmp_path / "avg.json")]) == 0
    assert "| 0 of 6 | 1 of 3 | 1 |" in capsys.readouterr().out
    assert crossrender.main(["average", str(a)]) == 2  # one model is not an average
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "two models or more" in err[0]


def test_evaluate_splits_the_ng_ok_errors_by_housing_tone(tmp_path):
    """Escapes and overkills per housing tone, read from either renderer's frame parameters (the
    Blender renderer names the plastic, the procedural one gives its BGR colour)."""
    from training.evaluate import by_housing, format_by_housing

    meta = [
        ("a.png", "BENDNG", {"housing": {"kind": "ivory"}}),  # light, escaped
        ("b.png", "OK", {"housing": {"kind": "white"}}),  # light, overkill
        ("c.png", "NUKENG", {"housing": {"kind": "dark"}}),  # dark, caught
        ("d.png", "OK", {"housing_colour": [40, 40, 40]}),  # dark, passed
        ("e.png", "OK", {"housing_colour": [200, 232, 240]}),  # light, passed
        ("f.png", "BENDNG", {"housing_colour": [30, 35, 30]}),  # dark, escaped
        ("g.png", "OK", {}),  # says nothing about its housing: left out
    ]
    called = {"a.png": "OK", "b.png": "BENDNG", "c.png": "BENDNG", "d.png": "OK", "e.png": "OK", "f.png": "OK",
              "g.png": "NUKENG"}  # fmt: skip
    by_file = {f: {"file": f, "label": lab, "params": p} for f, lab, p in meta}
    table = by_housing(by_file, [{"file": f, "label": lab} for f, lab in called.items()])
    assert table == {
        "light": {"n": 3, "defective": 1, "escapes": 1, "good": 2, "overkills": 1},
        "dark": {"n": 3, "defective": 2, "escapes": 1, "good": 1, "overkills": 0},
    }
    text = format_by_housing(table)
    assert "light  n=3     escapes 1 of 1  overkills 1 of 2  wrong NG/OK 2" in text
    row = {"set": "s", "renderer": "blender", "n": 7, "accuracy": 0.5, "ng_ok_accuracy": 0.5, "escape_rate": 0.5,
           "overkill_rate": 0.3, "by_housing": table}  # fmt: skip
    assert crossrender.format_rows([row], tmp_path / "m").splitlines()[-1].endswith("| 1 of 3 | 2 of 3 | - |")


def test_evaluate_splits_the_escapes_by_where_the_defect_is(tmp_path):
    """Inner pins, border pins, and border pins bent out over the housing's edge, from the
    frames' pin and bend direction (0 = right, 90 = away from the camera, 180 = left)."""
    from training.evaluate import breakdowns, by_place, format_by_place

    meta = [
        ("a.png", "BENDNG", 14, {"bend_dir_deg": 90.0}),  # inner pin: inner whichever way
        ("b.png", "BENDNG", 1, {"bend_dir_deg": 170.0}),  # top-left corner, to the left: out
        ("c.png", "BENDNG", 5, {"bend_dir_deg": 270.0}),  # back row, towards the camera: border
        ("d.png", "NUKENG", 19, {"nuke_height": 0.3}),  # front-left: border, not bent
        ("e.png", "BENDNG", 27, {"bend_dir_deg": 20.0}),  # front-right, to the right: out
        ("f.png", "OK", 0, {}),  # good parts have no place
    ]
    called = {"a.png": "OK", "b.png": "OK", "c.png": "BENDNG", "d.png": "OK", "e.png": "NUKENG", "f.png": "OK"}
    by_file = {f: {"file": f, "label": lab, "pin": pin, "params": p} for f, lab, pin, p in meta}
    rows = [{"file": f, "label": lab} for f, lab in called.items()]
    table = by_place(by_file, rows, SPEC)
    assert table == {
        "inner": {"defective": 1, "escapes": 1},
        "border_out": {"defective": 2, "escapes": 1},
        "border": {"defective": 2, "escapes": 1},
    }
    assert "border pins bent outward             escapes 1 of 2" in format_by_place(table)
    # a folder's breakdowns place them only when its dataset.json names a part known here, unchanged
    (tmp_path / "meta.jsonl").write_text("".join(json.dumps(m) + "\n" for m in by_file.values()))
    identity = {"part": "default", "part_fingerprint": SPEC.fingerprint()}
    (tmp_path / "dataset.json").write_text(json.dumps(identity))
    assert breakdowns(tmp_path, rows)["by_place"] == table
    (tmp_path / "dataset.json").write_text(json.dumps({**identity, "part_fingerprint": "0" * 16}))
    assert "by_place" not in breakdowns(tmp_path, rows)
