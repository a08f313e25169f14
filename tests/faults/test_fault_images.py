"""Images that are not what their names say: empty, cut off, text, odd formats, FIFOs, folders.
Each is skipped with a warning naming it; a folder with nothing readable is an error, not exit 0.
A FIFO named like an image used to block the reader for ever, so those run as subprocesses."""

import io
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from fault_helpers import assert_one_line_error, run_cli

from edge_app import headless
from edge_app.settings import StationConfig
from edge_app.sources import EndOfStream, FolderSource, SourceError
from models.preprocess import FrameError, InputSpec, read_frame


def write_bad_files(folder, good_png):
    """Every kind of file that looks like an image and is not one; returns their names."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.png").write_bytes(b"")
    (folder / "cut.png").write_bytes(good_png[:200])
    (folder / "text.jpg").write_text("this is not a JPEG\n")
    (folder / "folder.png").mkdir()
    (folder / "dangling.png").symlink_to(folder / "no-such-file.png")
    cv2.imwrite(str(folder / "small.png"), np.zeros((240, 320, 3), np.uint8))  # readable, wrong size
    return ["empty.png", "cut.png", "text.jpg", "folder.png", "dangling.png", "small.png"]


def write_odd_but_fine(folder, img):
    """Formats OpenCV converts to 8-bit BGR: 16-bit, grey, with alpha, JPEG, BMP."""
    cv2.imwrite(str(folder / "deep16.png"), img.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "grey.png"), cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / "alpha.png"), cv2.cvtColor(img, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(folder / "photo.jpg"), img)
    cv2.imwrite(str(folder / "plain.bmp"), img)
    return ["alpha.png", "deep16.png", "grey.png", "photo.jpg", "plain.bmp"]


@pytest.fixture
def png_bytes(frames):
    return cv2.imencode(".png", frames[0][0])[1].tobytes()


def test_read_frame_names_each_bad_file(tmp_path, png_bytes):
    for name in write_bad_files(tmp_path, png_bytes):
        with pytest.raises(FrameError, match=name.replace(".", r"\.")):
            read_frame(tmp_path / name, InputSpec())


def test_read_frame_takes_odd_formats_as_bgr(tmp_path, frames):
    for name in write_odd_but_fine(tmp_path, frames[0][0]):
        img = read_frame(tmp_path / name, InputSpec())
        assert img.shape == (480, 640, 3) and img.dtype == np.uint8, name


def test_folder_source_skips_bad_files_with_a_warning_each(tmp_path, png_bytes, frames):
    bad = write_bad_files(tmp_path / "f", png_bytes)
    cv2.imwrite(str(tmp_path / "f" / "zz-good.png"), frames[0][0])
    src = FolderSource(str(tmp_path / "f"))
    warnings = []
    src.on_warning = warnings.append
    src.open()
    got = [src.read().name, src.read().name]
    with pytest.raises(EndOfStream):
        src.read()
    assert got == ["small.png", "zz-good.png"]  # small.png reads; the model refuses its size later
    for name in set(bad) - {"small.png"}:
        assert any(name in w for w in warnings), (name, warnings)


def test_folder_source_with_nothing_readable_fails_instead_of_ending(tmp_path):
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "empty.png").write_bytes(b"")
    (tmp_path / "f" / "text.png").write_text("no image\n")
    src = FolderSource(str(tmp_path / "f"))
    src.on_warning = lambda msg: None
    src.open()
    with pytest.raises(SourceError, match="none of the 2 images is readable"):
        src.read()


@pytest.fixture
def mixed_folder(tmp_path, png_bytes, frames):
    folder = tmp_path / "mixed"
    bad = write_bad_files(folder, png_bytes)
    os.mkfifo(folder / "fifo.png")
    good = write_odd_but_fine(folder, frames[0][0])
    return folder, bad + ["fifo.png"], good


def test_predict_skips_special_and_broken_files_and_scores_the_rest(mixed_folder, tmp_path):
    folder, bad, good = mixed_folder
    r = run_cli("-m", "edge_app.predict", "--images", str(folder), "--out", str(tmp_path / "p.csv"), "--quiet")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    rows = (tmp_path / "p.csv").read_text().splitlines()[1:]
    assert sorted(row.split(",")[0] for row in rows) == good
    for name in bad:
        assert any(name in line and line.startswith("warning:") for line in r.stderr.splitlines()), (name, r.stderr)
    assert "not a regular file (a FIFO)" in r.stderr


def test_headless_folder_source_skips_a_fifo_and_ends(mixed_folder):
    folder, bad, good = mixed_folder
    r = run_cli("-m", "edge_app", "--headless", "--source", f"folder:{folder}", "--no-archive", "--quiet")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.splitlines()[-1])["summary"]
    assert summary["frames"] == len(good) and summary["rejected"] == 1  # small.png: wrong size
    assert "fifo.png" in r.stderr and "Traceback" not in r.stderr


def test_headless_folder_source_with_nothing_readable_exits_non_zero(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "empty.png").write_bytes(b"")
    (folder / "folder.png").mkdir()
    out, err = io.StringIO(), io.StringIO()
    status, summary = headless.run(StationConfig(source=f"folder:{folder}", archive_enabled=False), out=out, err=err)
    assert status == 1 and summary["frames"] == 0
    assert_one_line_error(err.getvalue(), "none of the 2 images is readable")


def test_predict_finds_the_shipped_model_from_any_folder(mixed_folder, tmp_path):
    """On an installed station nobody runs it from the repository: the default --model is the
    shipped bundle wherever the package is, not ./models/default (which failed outside the repo)."""
    folder, _, good = mixed_folder
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    r = subprocess.run(
        [sys.executable, "-m", "edge_app.predict", "--images", str(folder), "--out", "p.csv", "--quiet"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 1 + len(good)
