import json

import pytest

from models.part import load_part
from models.synth.dataset import SynthConfig, generate
from training import speed

SPEC = load_part("default")


def test_speed_trains_in_float32_and_says_what_the_default_picks(tmp_path, monkeypatch, capsys):
    """The command a line engineer runs on a new PC: a real (tiny) training, its images/s in the
    table and the JSON; on a CPU without bf16 hardware only float32 is measured and picked."""
    folder = tmp_path / "renders"
    generate(SPEC, SynthConfig(n=32, seed=4), folder, progress=False)
    monkeypatch.setattr(speed, "has_native_bf16", lambda: False)
    monkeypatch.setattr(speed, "use_bf16", lambda amp: amp == "bf16")
    out = tmp_path / "speed.json"
    sets = [f"data.folder={folder}", f"data.val_folder={folder}", "batch_size=8", "warmup_steps=1", "workers=1"]
    sets += ['model_overrides={"depth": 1}']
    rc = speed.main(["--n", "32", "--json", str(out)] + [a for s in sets for a in ("--set", s)])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert [r["amp"] for r in doc["rows"]] == ["off"] and doc["auto"] == "off"
    row = doc["rows"][0]
    assert row["precision"] == "float32" and row["images_per_s"] > 0 and row["vs_float32"] == 1.0
    text = capsys.readouterr().out
    assert "bf16 in hardware: no" in text
    assert f"| off | float32 | {row['images_per_s']:.1f} | 1.00x | yes |" in text
    assert "trains in float32 here: 1.00x float32" in text


def test_speed_compares_bf16_with_float32_and_marks_the_default(monkeypatch, tmp_path):
    """Each precision's speed is divided by float32's, and the row the default would train in is
    marked, from the runs' own summaries."""
    speeds = {"off": 40.0, "bf16": 53.0}

    def fake_train(cfg, progress=True):
        assert cfg.epochs == 1 and cfg.data.n == 64 and cfg.out == str(tmp_path)
        return {"precision": "bf16" if cfg.amp == "bf16" else "float32", "train_images_per_s": speeds[cfg.amp]}

    monkeypatch.setattr(speed, "train", fake_train)
    rows = speed.measure(64, ["off", "bf16"], [], tmp_path)
    assert [(r["amp"], r["vs_float32"]) for r in rows] == [("off", 1.0), ("bf16", 1.32)]
    text = speed.table(rows, auto_bf16=True)
    assert "| bf16 | bf16 | 53.0 | 1.32x | yes |" in text and "| off | float32 | 40.0 | 1.00x |  |" in text
    assert "| off | float32 | 40.0 | 1.00x | yes |" in speed.table(rows, auto_bf16=False)


def test_speed_refuses_too_few_renders(capsys):
    with pytest.raises(SystemExit) as e:
        speed.main(["--n", "8"])
    assert e.value.code == 2 and "--n: at least 32" in capsys.readouterr().err


def test_speed_names_a_bad_setting_in_one_line(capsys):
    assert speed.main(["--set", "epochs=zero"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "epochs" in err and "Traceback" not in err


def test_speed_refuses_a_setting_it_makes_itself(capsys):
    """`--set amp=off` would time float32 twice and label one row bf16: refused, in one line."""
    assert speed.main(["--set", "amp=off"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --set amp:") and "Traceback" not in err
