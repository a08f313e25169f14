import csv
import json

import cv2
import numpy as np
import pytest

from models.part import load_part
from models.synth.dataset import SynthConfig, SynthError, generate, parse_styles, read_meta
from models.synth.render import render

SPEC = load_part("default")


def _rows(path):
    with open(path / "labels.csv") as f:
        return list(csv.DictReader(f))


def test_balanced_labels_and_frames(tmp_path):
    generate(SPEC, SynthConfig(n=30, seed=1), tmp_path, progress=False)
    rows = _rows(tmp_path)
    assert list(rows[0]) == ["file", "label", "pin"]
    assert sorted(r["label"] for r in rows) == ["BENDNG"] * 10 + ["NUKENG"] * 10 + ["OK"] * 10
    for r in rows:
        assert (r["label"] == "OK") == (r["pin"] == "0")
        img = cv2.imread(str(tmp_path / "images" / r["file"]))
        assert img.shape == (480, 640, 3)
    meta = read_meta(tmp_path / "meta.jsonl")
    assert len(meta) == 30 and all(len(m["pins"]) == 27 for m in meta)
    assert {m["style"] for m in meta} == {"photo", "flat"}
    assert json.loads((tmp_path / "dataset.json").read_text())["counts"] == {"BENDNG": 10, "NUKENG": 10, "OK": 10}


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(SPEC, SynthConfig(n=12, seed=5, workers=1), a, progress=False)
    generate(SPEC, SynthConfig(n=12, seed=5, workers=2), b, progress=False)
    generate(SPEC, SynthConfig(n=12, seed=6, workers=1), c, progress=False)
    for name in ["labels.csv", "meta.jsonl"] + [f"images/{i:06d}.png" for i in range(12)]:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "images/000000.png").read_bytes() != (c / "images/000000.png").read_bytes()


def test_defect_columns_are_respected(tmp_path):
    generate(SPEC, SynthConfig(n=60, seed=2, defect_columns=(1, 2, 3, 5, 6, 8, 9)), tmp_path, progress=False)
    pins = [int(r["pin"]) for r in _rows(tmp_path) if r["label"] != "OK"]
    assert pins and not set(pins) & {4, 7, 13, 16, 22, 25}


def test_meta_rerenders_the_exact_image(tmp_path):
    generate(SPEC, SynthConfig(n=6, seed=9), tmp_path, progress=False)
    rec = read_meta(tmp_path / "meta.jsonl")[4]
    saved = cv2.imread(str(tmp_path / "images" / rec["file"]))
    assert np.array_equal(render(SPEC, rec["params"]), saved)


def test_refuses_to_overwrite_and_bad_requests(tmp_path):
    generate(SPEC, SynthConfig(n=3, seed=0), tmp_path, progress=False)
    with pytest.raises(SynthError, match="already holds"):
        generate(SPEC, SynthConfig(n=3, seed=0), tmp_path, progress=False)
    with pytest.raises(SynthError, match="defect-columns"):
        generate(SPEC, SynthConfig(n=3, defect_columns=(0, 10)), tmp_path / "x", progress=False)
    with pytest.raises(SynthError, match="unknown style"):
        parse_styles("photo=1,cartoon=1")
    assert parse_styles("photo=3,flat=1") == (("photo", 0.75), ("flat", 0.25))


def test_generate_once_reuses_the_same_set_and_rerenders_another(tmp_path):
    from models.synth.dataset import generate_once

    out = tmp_path / "set"
    generate_once(SPEC, SynthConfig(n=3, seed=1), out, progress=False)
    stamp = (out / "dataset.json").stat().st_mtime_ns
    generate_once(SPEC, SynthConfig(n=3, seed=1), out, progress=False)
    assert (out / "dataset.json").stat().st_mtime_ns == stamp, "the same settings must reuse the folder"
    generate_once(SPEC, SynthConfig(n=4, seed=1), out, progress=False)
    assert json.loads((out / "dataset.json").read_text())["n"] == 4
    generate_once(SPEC, SynthConfig(n=2, seed=1), out, progress=False)
    assert len(list((out / "images").glob("*.png"))) == 2, "no frame of the earlier set may stay"


def test_hard_light_is_recorded_and_sets_cached_before_it_are_still_found(tmp_path):
    from models.synth.dataset import generate_once

    lit = tmp_path / "lit"
    generate(SPEC, SynthConfig(n=6, seed=4, styles=(("photo", 1.0),), hard_light=1.0), lit, progress=False)
    assert json.loads((lit / "dataset.json").read_text())["hard_light"] == 1.0
    assert all("light" in m["params"] for m in read_meta(lit / "meta.jsonl"))
    old = tmp_path / "old"
    generate_once(SPEC, SynthConfig(n=3, seed=1), old, progress=False)
    held = json.loads((old / "dataset.json").read_text())
    del held["hard_light"]  # as a set cached before the option was written
    (old / "dataset.json").write_text(json.dumps(held))
    stamp = (old / "dataset.json").stat().st_mtime_ns
    generate_once(SPEC, SynthConfig(n=3, seed=1), old, progress=False)
    assert (old / "dataset.json").stat().st_mtime_ns == stamp
    with pytest.raises(SynthError, match="hard-light"):
        generate(SPEC, SynthConfig(n=3, hard_light=1.5), tmp_path / "bad", progress=False)


def test_every_render_look_reaches_the_generator_and_its_cli(tmp_path):
    """A look added to LOOKS but missed in one place would fail at a run's start (or be dropped)."""
    import dataclasses
    import inspect

    from models.synth.dataset import LOOKS
    from models.synth.render import sample_params

    keywords = inspect.signature(sample_params).parameters
    assert set(LOOKS) <= {f.name for f in dataclasses.fields(SynthConfig)}
    assert all(keywords[name].default == 0.0 for name in LOOKS)
    for name in LOOKS:
        flag = "--" + name.replace("_", "-")
        with pytest.raises(SynthError, match=f"{flag} 1.5"):
            generate(SPEC, SynthConfig(n=1, **{name: 1.5}), tmp_path / name, progress=False)
