import numpy as np
import pytest

from models.part import load_part
from models.synth.dataset import SynthConfig, generate
from models.synth.render import ground_truth, render, sample_params
from training import shading

SPEC = load_part("default")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shaded_pins_measure_darker_low_down_than_the_same_pins_lit_evenly(seed):
    plain = sample_params(SPEC, np.random.default_rng(seed), "OK", 0, "photo", vary=1.0)
    shaded = {**plain, "shade": {"up_to": 0.6, "level": 0.3, "soft": 0.1}}
    pins = ground_truth(SPEC, plain)["pins"]
    evenly, low = shading.low_to_top(render(SPEC, plain), pins), shading.low_to_top(render(SPEC, shaded), pins)
    assert evenly > 0.7, "the plain drawing lights a pin evenly"
    assert low < evenly - 0.25, f"shaded {low:.2f} vs plain {evenly:.2f}"


def test_the_command_tells_a_shaded_set_from_a_plain_one(tmp_path, capsys):
    for name, share in (("plain", 0.0), ("shaded", 1.0)):
        cfg = SynthConfig(n=5, seed=3, classes=("OK",), styles=(("photo", 1.0),), pin_shade=share)
        generate(SPEC, cfg, tmp_path / name, progress=False)
    assert shading.main([str(tmp_path / "plain"), str(tmp_path / "shaded"), "--n", "5"]) == 0
    rows = [
        line.split("|")
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| plain") or line.startswith("| shaded")
    ]
    medians = {r[1].strip(): float(r[5]) for r in rows}  # | folder | frames | p5 | p25 | p50 |
    assert [r[2].strip() for r in rows] == ["5", "5"]
    assert medians["shaded"] < medians["plain"] - 0.2


def test_a_folder_without_pin_positions_is_one_line(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels.csv").write_text("file,label,pin\n")
    assert shading.main([str(tmp_path)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.count("\n") == 0 and str(tmp_path) in err and "meta.jsonl" in err
    assert captured.out == "", "no half table before the error"


def test_rows_are_measured_apart_back_row_first(tmp_path):
    """A set whose front-row pins alone are dark low down: only the last row's median drops."""
    import json

    import cv2

    generate(SPEC, SynthConfig(n=3, seed=4, classes=("OK",), styles=(("photo", 1.0),)), tmp_path, progress=False)
    records = [json.loads(line) for line in (tmp_path / "meta.jsonl").read_text().splitlines()]
    for rec in records:  # paint the front row's lower halves black in the saved frames
        path = str(tmp_path / "images" / rec["file"])
        img = cv2.imread(path)
        for bx, by, tx, ty in rec["pins"][2 * SPEC.cols :]:
            a = (int(bx + 0.1 * (tx - bx)), int(by + 0.1 * (ty - by)))
            b = (int(bx + 0.5 * (tx - bx)), int(by + 0.5 * (ty - by)))
            cv2.line(img, a, b, (0, 0, 0), 3)
        cv2.imwrite(path, img)
    back, middle, front = shading.measure(tmp_path, n=3, cols=SPEC.cols)["row_medians"]
    assert min(back, middle) > 0.7 and front < 0.3


def test_the_command_tells_toned_pin_ends_from_white_ones(tmp_path, capsys):
    for name, share in (("white", 0.0), ("toned", 1.0)):
        cfg = SynthConfig(n=6, seed=5, classes=("OK",), styles=(("photo", 1.0),), tip_tone=share)
        generate(SPEC, cfg, tmp_path / name, progress=False)
    assert shading.main([str(tmp_path / "white"), str(tmp_path / "toned"), "--n", "6"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split("|")[-3:-1] == [" pin ends ", " ends clipped "]
    cells = {r.split("|")[1].strip(): r.split("|") for r in out[2:]}
    clipped = {name: float(cells[name][-2].strip().rstrip("%")) for name in ("white", "toned")}
    ends = {name: float(cells[name][-3]) for name in ("white", "toned")}
    assert clipped["toned"] < clipped["white"] - 20 and ends["toned"] < ends["white"] - 15, (clipped, ends)
