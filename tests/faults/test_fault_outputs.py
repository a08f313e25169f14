"""Outputs that cannot be written (a read-only folder, a path below a plain file) and runs that
do nothing useful: one line naming the path or the reason, a non-zero exit, no traceback, and
nothing that was there before damaged."""

import json

import cv2
import numpy as np
import pytest
from fault_helpers import assert_one_line_error, run_cli


def test_predict_out_unwritable(labelled, unwritable, capsys):
    from edge_app.predict import main

    out = unwritable / "preds.csv"
    assert main(["--images", str(labelled()), "--out", str(out), "--quiet"]) == 2
    assert_one_line_error(capsys.readouterr().err, out)


def test_predict_keeps_an_earlier_predictions_file_when_nothing_is_readable(labelled, capsys):
    from edge_app.predict import main

    data = labelled()
    out = data / "preds.csv"
    out.write_text("file,label,pin\nold.png,OK,0\n")
    for p in (data / "images").iterdir():
        p.write_bytes(b"")  # every image empty
    assert main(["--images", str(data), "--out", str(out), "--quiet"]) == 2
    assert_one_line_error(capsys.readouterr().err, data / "images", "none of the 4 images")
    assert out.read_text() == "file,label,pin\nold.png,OK,0\n"


@pytest.mark.parametrize("flag", ["--out", "--heatmaps", "--json"])
def test_evaluate_output_unwritable(labelled, unwritable, capsys, flag):
    from training.evaluate import main

    data = labelled()
    target = unwritable / ("heatmaps" if flag == "--heatmaps" else "out.json" if flag == "--json" else "p.csv")
    args = ["--images", str(data), "--quiet", flag, str(target)]
    if flag != "--out":
        args += ["--out", str(data / "p.csv")]
    assert main(args) == 2
    assert_one_line_error(capsys.readouterr().err, target)


def test_evaluate_into_an_existing_read_only_heatmaps_folder(labelled, readonly_dir, capsys):
    """The folder exists, so creating it succeeds; every image write then fails."""
    from training.evaluate import main

    data = labelled()
    assert main(["--images", str(data), "--quiet", "--heatmaps", str(readonly_dir), "--out", str(data / "p.csv")]) == 2
    assert_one_line_error(capsys.readouterr().err, readonly_dir)


def test_synth_sheet_unwritable_fails_before_rendering(tmp_path, unwritable, capsys):
    from training.synth.__main__ import main

    sheet = unwritable / "sheet.png"
    assert main(["--out", str(tmp_path / "d"), "--n", "3", "--workers", "1", "--quiet", "--sheet", str(sheet)]) == 2
    assert_one_line_error(capsys.readouterr().err, sheet)
    assert not (tmp_path / "d" / "labels.csv").exists()


def test_headless_video_of_wrong_size_frames_exits_non_zero(tmp_path):
    video = tmp_path / "small.avi"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (320, 240))
    for i in range(5):
        vw.write(np.full((240, 320, 3), 40 * i, np.uint8))
    vw.release()
    r = run_cli("-m", "edge_app", "--headless", "--source", f"video:{video}", "--no-archive", "--quiet")
    assert r.returncode == 1
    assert_one_line_error(r.stderr, "nothing inspected", "refused all 5 frames", "320x240")
    assert json.loads(r.stdout.splitlines()[-1])["summary"]["rejected"] == 5
