"""Frames a person relabelled (no pin positions) teach where, not only what."""

import json

import numpy as np
import pytest

from models.labels import LabelsError, read_clicks
from models.part import CLASSES, load_part
from models.preprocess import InputSpec
from models.synth.dataset import SynthConfig, generate
from training.data import load_folder
from training.train import TrainConfig, make_batch

SPEC = load_part("default")
NO_DEFECT = CLASSES.index("OK")


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    """The same frames twice: as the generator wrote them (meta.jsonl) and as the station's review
    leaves them (labels.csv with the clicked pin's tip as x,y, no meta.jsonl)."""
    full = tmp_path_factory.mktemp("full")
    generate(SPEC, SynthConfig(n=18, seed=11), full, progress=False)
    meta = {m["file"]: m for m in map(json.loads, (full / "meta.jsonl").read_text().splitlines())}
    line = tmp_path_factory.mktemp("line")
    (line / "images").symlink_to(full / "images")
    rows = ["file,label,pin,x,y"]
    for r in (full / "labels.csv").read_text().splitlines()[1:]:
        f, label, pin = r.split(",")
        if label == "OK":
            rows.append(f"{r},,")
        else:
            x, y = meta[f]["pins"][int(pin) - 1][2:4]  # where a person points: the pin's tip
            rows.append(f"{r},{x:.1f},{y:.1f}")
    (line / "labels.csv").write_text("\n".join(rows) + "\n")
    ispec = InputSpec()
    return (
        load_folder(full, ispec, workers=1, progress=False),
        load_folder(line, ispec, workers=1, progress=False),
        full,
    )


def _agree(truth_targets, click_targets, label):
    """Click targets claim no defect where the generator's ground truth has one, and find the
    defect. Returns the share of the click's pin tokens that the geometric pin map names the same
    (a bent tip can lean into a neighbour's slot, so that is checked over many frames)."""
    (t_def, t_pin), (c_def, c_pin) = truth_targets, click_targets
    known = c_def != -100
    assert (t_def[known & (c_def == NO_DEFECT)] == NO_DEFECT).all()
    assert ((c_def == label) & (t_def == label)).any()  # the click's tokens overlap the defect
    assert known.mean() > 0.8  # most of the frame is known to be free of defects
    on_pin = c_pin != -100
    assert on_pin.any()
    return float((t_pin[on_pin] == c_pin[on_pin]).mean())


def test_relabelled_frames_get_targets_from_label_and_click(renders):
    full, line, _ = renders
    ispec = InputSpec()
    assert line.truth is None and line.clicks is not None
    cfg = TrainConfig()
    idx = np.arange(len(line))
    got, want = make_batch(line, idx, ispec, cfg, None), make_batch(full, idx, ispec, cfg, None)
    same_pin = []
    for i in idx:
        label = int(line.labels[i])
        pair = (
            (want["dense"][i].numpy(), want["pinmap"][i].numpy()),
            (got["dense"][i].numpy(), got["pinmap"][i].numpy()),
        )
        if label == NO_DEFECT:  # a good part: no defect under any token, which pin each is unknown
            assert (pair[1][0] == NO_DEFECT).all() and (pair[1][1] == -100).all()
        else:
            same_pin.append(_agree(*pair, label))
            assert set(pair[1][1][pair[1][1] != -100]) == {int(line.pins[i])}
    assert len(same_pin) == 12 and np.mean(same_pin) >= 0.75, same_pin


def test_the_click_moves_with_the_augmented_image(renders):
    """Shift and camera augmentation move the image; the click's targets must follow it."""
    full, line, _ = renders
    ispec = InputSpec()
    cfg = TrainConfig(aug_shift_px=12, aug_camera=1.0, aug_color=0.0)
    idx = np.array([i for i in range(len(line)) if line.labels[i] != NO_DEFECT])
    for seed in range(3):
        got = make_batch(line, idx, ispec, cfg, np.random.default_rng(seed))
        want = make_batch(full, idx, ispec, cfg, np.random.default_rng(seed))
        assert np.array_equal(got["x"].numpy(), want["x"].numpy())  # the same augmentation drawn
        same_pin = []
        for k, i in enumerate(idx):
            pair = (
                (want["dense"][k].numpy(), want["pinmap"][k].numpy()),
                (got["dense"][k].numpy(), got["pinmap"][k].numpy()),
            )
            same_pin.append(_agree(*pair, int(line.labels[i])))
        assert np.mean(same_pin) >= 0.75, same_pin


def test_a_defect_without_a_click_trains_only_the_verdict(renders, tmp_path):
    _, _, full = renders
    line = tmp_path / "line"
    line.mkdir()
    (line / "images").symlink_to(full / "images")
    (line / "labels.csv").write_text((full / "labels.csv").read_text())
    s = load_folder(line, InputSpec(), workers=1, progress=False)
    assert s.truth is None
    assert s.clicks is None
    batch = make_batch(s, np.arange(len(s)), InputSpec(), TrainConfig(), None)
    for i in range(len(s)):
        dense = batch["dense"][i].numpy()
        assert (dense == (NO_DEFECT if s.labels[i] == NO_DEFECT else -100)).all()
    assert (batch["pinmap"].numpy() == -100).all()


@pytest.mark.parametrize(
    "row, what",
    [
        ("a.png,BENDNG,3,12.0,", "both x and y"),
        ("a.png,BENDNG,3,left,40", "numbers"),
        ("a.png,BENDNG,3,nan,40", "frame pixels"),
        ("a.png,OK,0,10,40", "is OK but has a clicked pin"),
    ],
)
def test_bad_clicks_are_one_line_naming_the_row(tmp_path, row, what):
    p = tmp_path / "labels.csv"
    p.write_text("file,label,pin,x,y\n" + row + "\n")
    with pytest.raises(LabelsError, match=f"labels.csv:2: .*{what}"):
        read_clicks(p)


def test_labels_without_click_columns_have_no_clicks(tmp_path):
    p = tmp_path / "labels.csv"
    p.write_text("file,label,pin\na.png,BENDNG,3\n")
    assert read_clicks(p) == {}
