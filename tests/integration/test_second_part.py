"""A second part, end to end: a 2 x 6 connector is rendered, a tiny model trained and exported
for it, and the station inspects it. Every part fact comes from the part file."""

import io
import json
import subprocess
import sys

import pytest

from edge_app import headless
from edge_app.archive import ArchiveError
from edge_app.settings import StationConfig
from models.part import part_from_dict


@pytest.fixture(scope="module")
def two_by_six(tmp_path_factory):
    root = tmp_path_factory.mktemp("twobysix")
    raw = json.loads(_default_json().read_text())
    raw.update(name="twobysix", description="2 x 6 test connector", rows=2, cols=6)
    part = root / "twobysix.json"
    part.write_text(json.dumps(raw))
    return root, part


def _default_json():
    from pathlib import Path

    import models

    return Path(models.__file__).parent / "parts" / "default.json"


def _run(*args):
    r = subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def test_a_two_by_six_part_renders_trains_exports_and_runs_at_the_station(two_by_six):
    root, part = two_by_six
    spec = part_from_dict(json.loads(part.read_text()))
    assert spec.n_pins == 12
    _run("training.synth", "--part", part, "--out", root / "t", "--n", 12, "--seed", 1, "--quiet")
    _run("training.synth", "--part", part, "--out", root / "v", "--n", 6, "--seed", 2, "--quiet")
    meta = [json.loads(line) for line in (root / "t" / "meta.jsonl").read_text().splitlines()]
    assert all(len(m["pins"]) == 12 for m in meta) and {m["pin"] for m in meta} <= set(range(13))
    train = ["training.train", "--quiet", "--set", f"part={part}", "--set", f"data.folder={root / 't'}"]
    train += ["--set", f"data.val_folder={root / 'v'}", "--set", "epochs=1", "--set", "batch_size=4"]
    train += ["--set", f"out={root / 'runs'}", "--set", "name=t", "--set", 'model_overrides={"depth": 1}']
    _run(*train, "--set", "collapse_after=99", "--set", "amp=off")
    ckpt = root / "runs" / "t" / "model.safetensors"
    bundle = root / "bundle"
    _run("export.quantize", "--checkpoint", ckpt, "--out", bundle, "--calib", root / "v", "--eval-n", 0, "--no-gate")
    assert json.loads((bundle / "bundle.json").read_text())["part"]["name"] == "twobysix"

    cfg = StationConfig(source="sim", model=str(bundle), part=str(part), archive_dir=str(root / "archive"))
    cfg.sim_fps = 0.0
    out = io.StringIO()
    status, summary = headless.run(cfg, frames=20, out=out, err=io.StringIO())
    assert status == 0 and summary["frames"] == 20 and summary["truth_known"] == 20
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith('{"frame"')]
    assert all(0 <= r["pin"] <= 12 and 0 <= r["truth"]["pin"] <= 12 for r in lines)
    from edge_app.station import Station

    station = Station(cfg)  # a review names one of this part's 12 pins, not the default's 27
    with pytest.raises(ArchiveError, match=r"1\.\.12"):
        station.archive.check_label("BENDNG", 13)
    station.close()

    # the station inspecting the default part refuses this bundle, saying why
    err = io.StringIO()
    status, _ = headless.run(
        StationConfig(source="sim", model=str(bundle), archive_enabled=False), 5, io.StringIO(), err
    )
    assert status == 1 and "this model is for part 'twobysix'" in err.getvalue()
