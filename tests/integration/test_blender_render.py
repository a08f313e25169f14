"""The Blender renderer end to end, in its own venv (bpy needs CPython 3.11 and numpy<2).

The labels are checked against physics rather than against the renderer's own bookkeeping: a
defective frame and its OK twin (same scene, same path-tracing seed, same sensor noise) differ
only near the labelled pin, and the OK twin's projected pin tips sit on bright pin ends.
"""

import csv
import json
import subprocess
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.part import load_part

ROOT = Path(__file__).resolve().parents[2]
BLENDER_PY = ROOT / ".venv-blender" / "bin" / "python"
SPEC = load_part("default")
PIN = 14  # middle row, middle column: neighbours on every side

pytestmark = pytest.mark.skipif(
    not BLENDER_PY.exists(), reason=f"{BLENDER_PY} missing: build the Blender venv with `make blender-venv`"
)


def _blender(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([str(BLENDER_PY), *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


# Renders a bent pin, the same pin pushed fully back (height 0: only the hole) and their OK twin.
_TWINS = """
import json, sys
from pathlib import Path
import numpy as np
from models.part import load_part
from training.blender.dataset import write_png
from training.blender.sampling import sample_params, without_defect
from training.blender.scene import render_frame

spec, out, pin = load_part("default"), Path(sys.argv[1]), int(sys.argv[2])
bent = sample_params(spec, np.random.default_rng(7), "BENDNG", pin, samples=2)
bent.update(bend_deg=20.0, bend_dir_deg=0.0)  # sideways, to the right: a lean one view shows plainly
bent["housing"].update(kind="dark", colour=[0.015, 0.015, 0.015])  # bright ends show against it
ok = without_defect(bent)
nuked = dict(ok, label="NUKENG", pin=pin, nuke_height=0.0)
truth = {}
for name, params in (("bent", bent), ("ok", ok), ("nuked", nuked)):
    frame, truth[name] = render_frame(spec, params)
    write_png(out / f"{name}.png", frame)
(out / "truth.json").write_text(json.dumps(truth))
"""


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    out = tmp_path_factory.mktemp("twins")
    r = _blender("-c", textwrap.dedent(_TWINS), str(out), str(PIN))
    assert r.returncode == 0, r.stderr[-2000:]
    frames = {k: cv2.imread(str(out / f"{k}.png")) for k in ("bent", "ok", "nuked")}
    return frames, json.loads((out / "truth.json").read_text())


def _segment_distance(pts: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((pts - a) @ ab) / max(float(ab @ ab), 1e-9), 0, 1)
    return np.linalg.norm(pts - (a + t[:, None] * ab), axis=1)


def _changed_pixels(a: np.ndarray, b: np.ndarray, threshold: int = 40) -> np.ndarray:
    diff = np.abs(a.astype(int) - b.astype(int)).max(-1)
    return np.argwhere(diff > threshold)[:, ::-1].astype(float)  # (x, y)


@pytest.mark.parametrize("defect", ["bent", "nuked"])
def test_the_defect_changes_pixels_only_near_the_labelled_pin(twins, defect):
    frames, truth = twins
    changed = _changed_pixels(frames[defect], frames["ok"])
    pitch = truth["ok"]["pitch_px"]
    assert len(changed) > 0.15 * pitch**2, f"{defect}: only {len(changed)} pixels changed, the defect must show"
    bx, by, tx, ty = truth[defect]["pins"][PIN - 1]
    _, _, ox, oy = truth["ok"]["pins"][PIN - 1]
    base = np.array([bx, by])
    dist = np.minimum(
        _segment_distance(changed, base, np.array([tx, ty])), _segment_distance(changed, base, np.array([ox, oy]))
    )
    assert dist.max() < 2.0 * pitch, f"{defect}: a pixel changed {dist.max() / pitch:.1f} pitches from pin {PIN}"
    assert truth[defect]["defects"] == [[PIN, "BENDNG" if defect == "bent" else "NUKENG"]]


def test_a_pin_pushed_back_to_height_zero_leaves_only_its_dark_hole(twins):
    frames, truth = twins
    bx, by, tx, ty = truth["nuked"]["pins"][PIN - 1]
    assert (bx, by) == (tx, ty)
    _, _, ox, oy = truth["ok"]["pins"][PIN - 1]
    r = int(0.2 * truth["ok"]["pitch_px"])
    grey = {k: cv2.cvtColor(frames[k], cv2.COLOR_BGR2GRAY).astype(float) for k in ("ok", "nuked")}

    def patch(img, x, y):
        return img[int(y) - r : int(y) + r + 1, int(x) - r : int(x) + r + 1]

    assert patch(grey["ok"], ox, oy).max() > patch(grey["nuked"], ox, oy).max() + 40  # the bright end is gone
    assert patch(grey["nuked"], bx, by).mean() < 60  # the hole it stood in is dark


def test_ok_ground_truth_puts_every_tip_on_a_bright_pin_end(twins):
    frames, truth = twins
    grey = cv2.cvtColor(frames["ok"], cv2.COLOR_BGR2GRAY).astype(float)
    h, w = grey.shape
    pins = np.array(truth["ok"]["pins"])
    pitch = truth["ok"]["pitch_px"]
    assert len(pins) == SPEC.n_pins and 42 * 0.85 < pitch < 55 * 1.15
    assert (pins[:, [0, 2]] > 0).all() and (pins[:, [0, 2]] < w).all()
    assert (pins[:, [1, 3]] > 0).all() and (pins[:, [1, 3]] < h).all()
    # PART.md numbering: pin 1 top-left, pin 9 top-right, pin 27 bottom-right
    assert pins[0, 0] < pins[8, 0] and pins[0, 1] < pins[18, 1] and pins[26, 0] > pins[18, 0]
    r = max(2, int(0.15 * pitch))
    housing = np.median(
        grey[int(pins[:, 1].min()) : int(pins[:, 1].max()), int(pins[:, 0].min()) : int(pins[:, 0].max())]
    )
    for k, (_, _, tx, ty) in enumerate(pins, start=1):
        end = grey[int(ty) - r : int(ty) + r + 1, int(tx) - r : int(tx) + r + 1].max()
        assert end > housing + 50, f"pin {k}: no bright end at its projected tip ({end:.0f} vs housing {housing:.0f})"


def _rows(folder: Path) -> list[dict]:
    with open(folder / "labels.csv") as f:
        return list(csv.DictReader(f))


def test_cli_writes_a_consistent_folder_and_resumes(tmp_path):
    out = tmp_path / "set"
    cmd = ["-m", "training.blender", "--out", str(out), "--n", "3", "--seed", "1", "--samples", "1", "--quiet"]
    r = _blender(*cmd)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = _rows(out)
    assert [r["file"] for r in rows] == ["000000.png", "000001.png", "000002.png"]
    assert sorted(r["label"] for r in rows) == ["BENDNG", "NUKENG", "OK"]
    meta = [json.loads(line) for line in (out / "meta.jsonl").read_text().splitlines()]
    assert [(m["file"], m["label"], str(m["pin"])) for m in meta] == [(r["file"], r["label"], r["pin"]) for r in rows]
    for m in meta:
        assert m["style"] == "blender" and len(m["pins"]) == SPEC.n_pins and m["params"]["samples"] == 1
        assert m["defects"] == ([] if m["label"] == "OK" else [[m["pin"], m["label"]]])
        assert cv2.imread(str(out / "images" / m["file"])).shape == (480, 640, 3)
    info = json.loads((out / "dataset.json").read_text())
    assert info["generator"] == "blender" and info["part_fingerprint"] == SPEC.fingerprint()
    assert info["counts"] == {"BENDNG": 1, "NUKENG": 1, "OK": 1} and info["samples"] == 1

    # An interrupted run: frame 1's meta line lost (and its image half there), dataset.json not yet written.
    before = {f: (out / "images" / f).stat().st_mtime_ns for f in ("000000.png", "000002.png")}
    original = (out / "images" / "000001.png").read_bytes()
    (out / "images" / "000001.png").unlink()
    lines = (out / "meta.jsonl").read_text().splitlines()
    (out / "meta.jsonl").write_text(lines[0] + "\n" + lines[2] + "\n" + lines[1][:40])  # a torn last line
    (out / "dataset.json").rename(out / "dataset.partial.json")
    partial = json.loads((out / "dataset.partial.json").read_text())
    (out / "dataset.partial.json").write_text(
        json.dumps({k: partial[k] for k in partial if k not in ("counts", "renderer")})
    )
    r = _blender(*cmd)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming: 2 of 3" in r.stdout
    assert {f: (out / "images" / f).stat().st_mtime_ns for f in before} == before
    assert (out / "images" / "000001.png").read_bytes() == original  # the same frame, from its (seed, index)
    assert [json.loads(line)["file"] for line in (out / "meta.jsonl").read_text().splitlines()] == [
        r["file"] for r in rows
    ]
    assert not (out / "dataset.partial.json").exists() and (out / "dataset.json").exists()

    r = _blender(*cmd)
    assert r.returncode == 0 and "already rendered" in r.stdout
    r = _blender("-m", "training.blender", "--out", str(out), "--n", "4", "--seed", "1", "--quiet")
    assert r.returncode == 2 and "--overwrite" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_cli_refusals_are_one_line_exit_2(tmp_path):
    for args in (
        ["--out", str(tmp_path / "a"), "--n", "0"],
        ["--out", str(tmp_path / "a"), "--n", "3", "--defect-columns", "4,12"],
        ["--out", str(tmp_path / "a"), "--n", "3", "--classes", "BENDNG,BROKEN"],
        ["--out", str(tmp_path / "a"), "--n", "3", "--part", "no-such-part"],
        ["--out", "/proc/no/such/folder", "--n", "1"],
        ["--n", "3"],
    ):
        r = _blender("-m", "training.blender", *args)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error:"), (args, r.stderr)
