"""The generator's command line and a failure half-way: bad settings are one line, and a run that
fails leaves no labels.csv that would make the rerun refuse ("already holds a data set")."""

import json

import pytest
from fault_helpers import assert_one_line_error

from models.part import load_part
from models.synth import dataset
from models.synth.dataset import SynthConfig, SynthError, generate
from training.synth.__main__ import main


@pytest.mark.parametrize(
    "args, named",
    [(["--classes", ","], "--classes"), (["--seed", "-1"], "--seed"), (["--classes", "BENDNG,,BENT"], "BENT")],
)
def test_bad_generator_settings_are_one_line(tmp_path, capsys, args, named):
    assert main(["--out", str(tmp_path / "d"), "--n", "3", "--workers", "1", "--quiet", *args]) == 2
    assert_one_line_error(capsys.readouterr().err, named)
    assert not (tmp_path / "d" / "labels.csv").exists()


def test_a_nan_in_the_part_is_refused_before_anything_is_written(tmp_path, capsys):
    raw = json.loads(load_part("default").to_json())
    raw["camera"]["blur_sigma"] = [0.0, float("nan")]
    part = tmp_path / "part.json"
    part.write_text(json.dumps(raw))
    assert main(["--part", str(part), "--out", str(tmp_path / "d"), "--n", "3", "--workers", "1", "--quiet"]) == 2
    assert_one_line_error(capsys.readouterr().err, part, "blur_sigma")
    assert not (tmp_path / "d").exists()


def test_a_run_that_fails_half_way_does_not_block_the_rerun(tmp_path, monkeypatch):
    spec, cfg, out = load_part("default"), SynthConfig(n=4, workers=1), tmp_path / "d"
    real, calls = dataset._job, []

    def fails_on_the_third(args):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk unplugged")
        return real(args)

    monkeypatch.setattr(dataset, "_job", fails_on_the_third)
    with pytest.raises(SynthError, match="writing failed"):
        generate(spec, cfg, out, progress=False)
    assert not (out / "labels.csv").exists() and not list(out.glob("*.part"))
    monkeypatch.setattr(dataset, "_job", real)
    labels = generate(spec, cfg, out, progress=False)  # no "already holds a data set"
    assert len(labels.read_text().splitlines()) == 5


def test_a_failed_overwrite_leaves_no_labels_of_the_old_set(tmp_path, monkeypatch):
    spec, out = load_part("default"), tmp_path / "d"
    generate(spec, SynthConfig(n=3, workers=1), out, progress=False)

    def fails(args):
        raise OSError("disk full")

    monkeypatch.setattr(dataset, "_job", fails)
    with pytest.raises(SynthError):
        generate(spec, SynthConfig(n=3, seed=1, workers=1), out, overwrite=True, progress=False)
    assert not (out / "labels.csv").exists() and not (out / "dataset.json").exists()
