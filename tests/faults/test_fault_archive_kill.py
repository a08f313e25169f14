"""The archive under SIGKILL and several writers: a writer killed at random moments, and a station
and two reviewers writing one archive at once. Rows == images, no malformed row, no lost relabel."""

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
from fault_helpers import REPO

from edge_app.archive import Archive
from edge_app.events import Result
from edge_app.sources import Frame
from models.labels import read_labels
from models.part import CLASSES

# a station-like writer: small frames saved as fast as it can, a review now and then
WRITER = """
import sys
import numpy as np
from edge_app.archive import Archive

class Frame:  # what a save reads of edge_app.pipeline.Result (lighter to import)
    def __init__(self, image, index):
        self.image, self.index = image, index

class Result:
    def __init__(self, frame, verdict, model):
        self.frame, self.verdict, self.model = frame, verdict, model

class V:
    def __init__(self, i):
        self.label = ("BENDNG", "NUKENG", "OK")[i % 3]
        self.pin = 0 if self.label == "OK" else 1 + i % 27
        self.scores = {"BENDNG": 0.3, "NUKENG": 0.3, "OK": 0.4}
        self.heatmap = None

a = Archive(sys.argv[1])
print(a.check().line(), flush=True)
img = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
i = 0
while True:
    r = Result(Frame(img, i), V(i), "kill-test 1")
    name = a.save(r, "writer")
    if i % 4 == 3:
        a.relabel(name, "OK", 0)
    i += 1
    if len(sys.argv) > 2 and i >= int(sys.argv[2]):
        break
"""

# a reviewer: relabels the files it is given, one transaction each
RELABEL = """
import sys
from edge_app.archive import Archive

a = Archive(sys.argv[1])
files = sys.argv[3:]
label, pin = {"B": ("BENDNG", 3), "N": ("NUKENG", 9)}[sys.argv[2]]
for f in files:
    a.relabel(f, label, pin)
print("done", len(files), flush=True)
"""


def python(code, *args, **kw):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=REPO, env=env, text=True, **kw)


def assert_whole(root):
    """Every row with its image, every image with its row, every row well formed."""
    a = Archive(root)
    rep = a.check()
    rows = a.flagged()
    images = {p.name for p in (root / "images").iterdir() if not p.name.startswith(".")}
    assert rep.consistent, rep.line()
    assert {r.file for r in rows} == images and not any(r.missing for r in rows)
    assert not [p for p in (root / "images").iterdir() if p.name.startswith(".")]  # no temporary file left
    for r in rows:
        assert r.label in CLASSES and r.time[:4].isdigit() and r.kept in ("ng", "saved", "recovered"), r
    labels = read_labels(root / "labels.csv", 27, allow_empty=True) if (root / "labels.csv").exists() else {}
    assert set(labels) <= images and {f: (CLASSES[c], p) for f, (c, p) in labels.items()} == a.labels()
    return rep, rows


def test_twenty_sigkills_at_random_moments_leave_rows_and_images_whole(tmp_path):
    root = tmp_path / "archive"
    rng = random.Random(14)
    repaired = 0
    for _ in range(20):
        p = python(WRITER, root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = p.stdout.readline()  # its startup check has run: the kill lands among the saves
        assert line.startswith("archive "), p.stderr.read()
        repaired += "nothing to repair" not in line
        time.sleep(rng.uniform(0.0, 0.25))
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        p.stdout.close()
        p.stderr.close()
    rep, rows = assert_whole(root)
    assert len(rows) > 20  # it did write between the kills
    assert repaired >= 1  # and some kills landed mid-save (8-10 of 20 here), so the repair was tried


def test_a_station_and_two_reviewers_at_once_lose_no_relabel(tmp_path):
    root = tmp_path / "archive"
    a = Archive(root)
    img = np.zeros((48, 64, 3), np.uint8)

    class V:
        label, pin, scores, heatmap = "BENDNG", 2, {"BENDNG": 0.9, "NUKENG": 0.05, "OK": 0.05}, None

    seeded = [a.save(Result(Frame(img, i, 0.0), V(), 1.0, 0.0)) for i in range(200)]
    station = python(WRITER, root, 10_000, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert station.stdout.readline().startswith("archive ")
    reviewers = [
        python(RELABEL, root, "B", *seeded[0::2], stdout=subprocess.PIPE, stderr=subprocess.PIPE),
        python(RELABEL, root, "N", *seeded[1::2], stdout=subprocess.PIPE, stderr=subprocess.PIPE),
    ]
    try:
        for r in reviewers:
            out, err = r.communicate(timeout=60)
            assert r.returncode == 0 and out.startswith("done 100"), err
    finally:
        station.kill()
        station.communicate(timeout=10)
    _, rows = assert_whole(root)
    reviewed = a.labels()
    for i, f in enumerate(seeded):  # all 200 relabels, each as its reviewer made it
        assert reviewed[f] == (("BENDNG", 3) if i % 2 == 0 else ("NUKENG", 9)), f
    labels = read_labels(root / "labels.csv", 27)
    assert all(f in labels for f in seeded) and len(rows) > 200
