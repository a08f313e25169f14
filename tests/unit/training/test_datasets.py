import json

from models.part import load_part
from models.synth.dataset import read_meta
from training import datasets

SPEC = load_part("default")


def test_the_held_out_set_renders_defects_only_in_its_columns(tmp_path):
    s = datasets.get("heldout-cols-4-7")
    folder = datasets.materialize(s, SPEC, tmp_path, n=12, workers=1, progress=False)
    records = read_meta(folder / "meta.jsonl")
    columns = {SPEC.pin_row_col(r["pin"])[1] + 1 for r in records if r["label"] != "OK"}
    assert len(records) == 12 and columns and columns <= {4, 7}
    held = json.loads((folder / "dataset.json").read_text())
    assert held["seed"] == s.seed and held["widen"] == s.widen


def test_the_model_card_sets_are_named_test_sets_with_their_settings():
    for name in datasets.CARD_SETS:
        s = datasets.get(name)
        assert s.renderer == "procedural" and s.role == "test"
        assert set(s.settings()) >= {"n", "seed", "styles", "widen"}
    assert datasets.get("heldout-cols-4-7").settings()["defect_columns"] == (4, 7)
    seeds = [s.seed for s in datasets.SETS.values()]
    assert len(seeds) == len(set(seeds)), "two named sets share a seed"
