import contextlib
import os
import sqlite3
import time

import cv2
import numpy as np
import pytest
from station_fakes import FakeVerdict

from edge_app.archive import Archive, ArchiveError, KeepPolicy
from edge_app.events import Result
from edge_app.sources import Frame
from models.labels import read_clicks
from training.data import read_labels


def result(i, label="BENDNG", pin=5, value=77):
    img = np.full((480, 640, 3), value, np.uint8)
    scores = {"BENDNG": 0.1, "NUKENG": 0.1, "OK": 0.1, label: 0.8}
    return Result(Frame(img, i, time.perf_counter()), FakeVerdict(label, pin, scores), 3.0, time.perf_counter())


def test_save_writes_png_and_its_row(tmp_path):
    a = Archive(tmp_path / "arch")
    r = result(3, "NUKENG", 12)
    r.model, r.margin = "default 0.1.0+abc", 0.3
    name = a.save(r, source="simulator")
    assert name.endswith("_000003_NUKENG_p12.png")
    img = cv2.imread(str(tmp_path / "arch" / "images" / name))
    assert img.shape == (480, 640, 3) and int(img.mean()) == 77
    (row,) = a.flagged()
    assert row.file == name and row.label == "NUKENG" and row.pin == 12 and row.source == "simulator"
    assert row.scores["NUKENG"] == pytest.approx(0.8) and row.where is None  # no heatmap location given
    assert (row.kept, row.model, row.margin, row.reviewed) == ("ng", "default 0.1.0+abc", 0.3, None)
    assert a.model_versions() == {"default 0.1.0+abc": 1}
    assert not (tmp_path / "arch" / "flagged.csv").exists()
    assert [p.name for p in (tmp_path / "arch" / "images").iterdir()] == [name]  # no temporary file left


def test_relabel_round_trip_is_a_labelled_folder(tmp_path):
    a = Archive(tmp_path)
    results = [result(i, "BENDNG", 4) for i in range(3)]
    results[0].where = (321.5, 200.25)
    names = [a.save(r) for r in results]
    assert a.flagged()[-1].where == (321.5, 200.2) and a.flagged()[0].where is None
    flagged = a.flagged()
    assert [r.file for r in flagged] == names[::-1] and all(r.reviewed is None for r in flagged)
    a.relabel(names[0], "NUKENG", 4)
    a.relabel(names[1], "OK", 0)
    a.relabel(names[0], "BENDNG", 6)  # changed mind: the later label wins, one row per file
    assert a.labels() == {names[0]: ("BENDNG", 6), names[1]: ("OK", 0)}
    assert (tmp_path / "labels.csv").read_text().splitlines()[0] == "file,label,pin,x,y"
    assert sorted(read_labels(tmp_path)) == sorted([(names[0], "BENDNG", 6), (names[1], "OK", 0)])
    reviewed = {r.file: r.reviewed for r in a.flagged()}
    assert reviewed[names[1]] == ("OK", 0) and reviewed[names[2]] is None


def test_a_clicked_pin_reaches_labels_csv_for_training(tmp_path):
    a = Archive(tmp_path)
    names = [a.save(result(i)) for i in range(3)]
    a.relabel(names[0], "BENDNG", 7, click=(301.26, 188.0))
    a.relabel(names[1], "OK", 0, click=(50.0, 60.0))  # a stray click on a good part is no pin
    a.relabel(names[2], "NUKENG", 2)
    assert read_clicks(tmp_path / "labels.csv") == {names[0]: (301.3, 188.0)}
    assert {r.file: r.click for r in a.flagged()}[names[1]] is None
    assert sorted(read_labels(tmp_path)) == sorted(
        [(names[0], "BENDNG", 7), (names[1], "OK", 0), (names[2], "NUKENG", 2)]
    )


@pytest.mark.parametrize(
    "label, pin, msg",
    [("BENT", 3, "one of"), ("OK", 4, "pin 0"), ("BENDNG", 0, "needs its pin"), ("NUKENG", 28, "1..27")],
)
def test_relabel_refuses_bad_labels(tmp_path, label, pin, msg):
    a = Archive(tmp_path, n_pins=27)  # the default part's, as the station passes it
    name = a.save(result(0))
    with pytest.raises(ArchiveError, match=msg):
        a.relabel(name, label, pin)
    with pytest.raises(ArchiveError, match="not an image"):
        a.relabel("../etc/passwd", "OK", 0)


def test_unwritable_folder_is_a_state_not_a_crash(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the archive folder should be")
    states = []
    a = Archive(blocker / "archive", on_state=states.append)
    with pytest.raises(ArchiveError, match="cannot save NG frames"):
        a.save(result(0))
    assert states and "cannot save NG frames" in states[-1] and a.message == states[-1]
    # through the writer thread: no exception escapes, the count says what was lost
    a.submit(result(1))
    a.close()
    assert a.not_saved == 1


def test_full_disk_keeps_previous_files_and_recovers(tmp_path):
    states = []
    a = Archive(tmp_path, on_state=states.append)
    first = a.save(result(0))
    a.min_free_bytes = 1 << 62  # the disk is "full"
    with pytest.raises(ArchiveError, match="disk full"):
        a.save(result(1))
    assert [r.file for r in a.flagged()] == [first]
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == [first]
    a.min_free_bytes = 0  # space freed
    a.save(result(2))
    assert states[-1] == "" and a.message == "" and len(a.flagged()) == 2


def test_a_row_that_cannot_be_committed_leaves_no_image(tmp_path, monkeypatch):
    a = Archive(tmp_path)
    first = a.save(result(0))

    @contextlib.contextmanager
    def full():
        raise sqlite3.OperationalError("database or disk is full")
        yield

    monkeypatch.setattr(a, "_write", full)
    with pytest.raises(ArchiveError, match="disk full"):
        a.save(result(1))
    monkeypatch.undo()
    assert [p.name for p in (tmp_path / "images").iterdir()] == [first]  # nor its temporary file
    assert len(a.flagged()) == 1 and a.check().consistent


def test_writer_behind_drops_with_a_message(tmp_path):
    states = []
    a = Archive(tmp_path, on_state=states.append, max_pending=1)
    a._thread = object()  # pretend the writer runs but never takes anything
    assert a.submit(result(0))
    assert not a.submit(result(1))
    assert "behind" in states[-1] and a.not_saved == 1
    assert not a.submit(result(2)) and len(states) == 1 and a.not_saved == 2
    a._thread = None


def test_an_archive_of_the_csv_version_is_migrated_and_its_files_kept(tmp_path):
    names = ["20250101-120000-000_000001_BENDNG_p04.png", "20250101-120001-000_000002_NUKENG_p09.png"]
    (tmp_path / "images").mkdir()
    for n in names:
        cv2.imwrite(str(tmp_path / "images" / n), np.zeros((48, 64, 3), np.uint8))
    header = "time,file,label,pin,score_BENDNG,score_NUKENG,score_OK,source,x,y\n"
    (tmp_path / "flagged.csv").write_text(
        header
        + f"2025-01-01T12:00:00.000,{names[0]},BENDNG,4,0.9,0.05,0.05,camera:0,100.0,200.0\n"
        + f"2025-01-01T12:00:01.000,{names[1]},NUKENG,9,0.1,0.8,0.1,camera:0,,\n"
    )
    (tmp_path / "labels.csv").write_text(f"file,label,pin\n{names[1]},OK,0\n")
    a = Archive(tmp_path)
    rows = {r.file: r for r in a.flagged()}
    assert set(rows) == set(names) and rows[names[0]].where == (100.0, 200.0)
    assert rows[names[1]].reviewed == ("OK", 0) and rows[names[0]].scores["BENDNG"] == pytest.approx(0.9)
    assert (tmp_path / "flagged.csv.migrated").read_text().startswith(header)
    assert not (tmp_path / "flagged.csv").exists()
    assert a.check().consistent and Archive(tmp_path).labels() == {names[1]: ("OK", 0)}


def test_check_repairs_what_a_kill_or_a_hand_leaves_and_says_so_in_one_line(tmp_path):
    a = Archive(tmp_path)
    kept, gone, unfinished = (a.save(result(i)) for i in range(3))
    img = tmp_path / "images"
    os.replace(img / unfinished, img / f".part-999-{unfinished}")  # killed between its row and its rename
    (img / ".part-999-20250101-000000-000_000007_OK_p00.png").write_bytes(b"half a png")  # killed before its row
    (img / gone).unlink()  # removed by hand
    cv2.imwrite(str(img / "20250102-030405-006_000042_NUKENG_p11.png"), np.zeros((48, 64, 3), np.uint8))
    cv2.imwrite(str(img / "holiday.png"), np.zeros((8, 8, 3), np.uint8))
    old = time.time() - 60
    for p in img.iterdir():
        os.utime(p, (old, old))
    rep = Archive(tmp_path).check()
    assert (rep.completed, rep.temp_removed, rep.reindexed, rep.marked_missing) == (1, 1, 1, 1)
    assert rep.unindexed == ["holiday.png"] and not rep.consistent
    line = rep.line()
    assert "\n" not in line and "1 unfinished save completed" in line and "1 row marked missing" in line
    assert "holiday.png" in line
    rows = {r.file: r for r in a.flagged()}
    assert rows[gone].missing and not rows[unfinished].missing and (img / unfinished).exists()
    recovered = rows["20250102-030405-006_000042_NUKENG_p11.png"]
    assert (recovered.kept, recovered.label, recovered.pin) == ("recovered", "NUKENG", 11)
    (img / "holiday.png").unlink()
    again = a.check()
    assert again.consistent and again.rows == again.images == 3 and "nothing to repair" in again.line()
    assert a.count(todo=True) == 3  # the missing one is not left to review


def test_keep_policy_samples_ok_frames_with_a_cap_and_keeps_every_borderline_one():
    keep = KeepPolicy(ok_every=3, ok_per_hour=2, margin=0.05)

    def why(label, margin, t):
        r = result(0, label, 0 if label == "OK" else 3)
        r.margin = margin
        return keep.why(r, now=t)

    assert why("BENDNG", 0.4, 0) == "ng" and why("NUKENG", 0.01, 0) == "ng,uncertain"
    assert why("OK", 0.03, 0) == "uncertain"  # near a threshold: kept whatever the sample says
    oks = [why("OK", 0.4, t) for t in range(12)]
    assert oks == ["", "", "ok-sample", "", "", "ok-sample"] + [""] * 6  # every 3rd, two an hour
    assert [why("OK", 0.4, 3700 + t) for t in range(3)] == ["", "", "ok-sample"]  # the next hour
    assert KeepPolicy().why(result(0, "OK", 0)) == ""  # default: NG frames only


def test_pages_by_uncertainty_and_counts_what_is_left(tmp_path):
    a = Archive(tmp_path, keep=KeepPolicy(margin=0.1))
    margins = [0.3, 0.02, float("nan"), 0.07, 0.2]
    names = []
    for i, m in enumerate(margins):
        r = result(i)
        r.margin = m
        names.append(a.save(r))
    order = [r.file for r in a.page(0, 10, order="uncertain")]
    assert order == [names[1], names[3], names[4], names[0], names[2]]  # unknown margin last
    assert [r.file for r in a.page(1, 2, order="uncertain")] == [names[3], names[4]]
    assert [r.file for r in a.page(0, 2)] == [names[4], names[3]]  # newest first
    a.relabel(names[1], "NUKENG", 3, click=(10.0, 20.0))
    assert a.count() == 5 and a.count(todo=True) == 4
    assert a.page(0, 1, order="uncertain", todo=True)[0].file == names[3]
    assert {r.file: r.click for r in a.flagged()}[names[1]] == (10.0, 20.0)


def test_a_hand_edit_of_labels_csv_is_read_back_not_overwritten(tmp_path):
    a = Archive(tmp_path)
    n = [a.save(result(i)) for i in range(3)]
    a.relabel(n[0], "OK", 0)
    (tmp_path / "labels.csv").write_text(f"file,label,pin\n{n[1]},NUKENG,2\n")  # n[0] removed, n[1] added
    a.relabel(n[2], "BENDNG", 7)
    assert a.labels() == {n[1]: ("NUKENG", 2), n[2]: ("BENDNG", 7)}
    assert sorted(read_labels(tmp_path)) == sorted([(n[1], "NUKENG", 2), (n[2], "BENDNG", 7)])
    (tmp_path / "labels.csv").unlink()
    assert a.labels() == {n[1]: ("NUKENG", 2), n[2]: ("BENDNG", 7)}  # the reviews live in archive.db
    a.export_labels()
    assert len(read_labels(tmp_path)) == 2


def noisy(i, label="BENDNG", pin=5):
    r = result(i, label, pin)
    r.frame.image[:] = np.random.default_rng(i).integers(0, 256, r.frame.image.shape, dtype=np.uint8)
    return r


def test_the_size_limit_removes_the_oldest_unreviewed_frames_ok_samples_first(tmp_path):
    probe = Archive(tmp_path / "probe")
    size = (tmp_path / "probe" / "images" / probe.save(noisy(0))).stat().st_size  # noise: every PNG about as big
    a = Archive(tmp_path / "arch", max_bytes=int(6.5 * size))
    ng = [a.save(noisy(i)) for i in range(3)]
    a.relabel(ng[0], "BENDNG", 5)  # a person's label: training data, never removed
    ok = [a.save(noisy(10 + i, "OK", 0), kept="ok-sample") for i in range(3)]
    assert a.pruned == 0 and len(a.flagged()) == 6
    newer = [a.save(noisy(20 + i)) for i in range(2)]  # 8 frames > 6.5: down to 90% of the limit
    left = {r.file for r in a.flagged()}
    assert left == {*ng, *newer, ok[2]}  # the two oldest OK samples went first, no NG yet
    assert a.pruned == 2
    more = [a.save(noisy(30 + i)) for i in range(3)]
    left = {r.file for r in a.flagged()}
    assert ng[0] in left and ng[1] not in left and ok[2] not in left  # then the oldest unreviewed NG
    assert set(more) <= left
    images = {p.name for p in (tmp_path / "arch" / "images").iterdir()}
    assert images == left  # rows == images, nothing half-removed
    assert sum((tmp_path / "arch" / "images" / f).stat().st_size for f in images) <= 6.5 * size
    assert read_labels(tmp_path / "arch") == [(ng[0], "BENDNG", 5)]  # the review is still training data
    assert "older unreviewed frames removed" in a.summary()


def test_over_the_limit_with_reviewed_frames_only_keeps_them_and_says_so(tmp_path):
    states = []
    a = Archive(tmp_path, max_bytes=1, on_state=states.append)
    for i in range(2):
        a.save(noisy(i))
    assert a.flagged() == [] and a.pruned == 2  # unreviewed: removed at once under so small a limit
    a.max_bytes = 0
    kept = a.save(noisy(6))
    a.relabel(kept, "NUKENG", 7)
    a.max_bytes = 1
    a.save(noisy(7))
    assert [r.file for r in a.flagged()] == [kept]  # the reviewed frame stays, the new one went
    assert "reviewed frames only" in a.limit_note and "reviewed frames only" in a.summary()
    assert states and "reviewed frames only" in states[-1]  # a state (the PLC's FaultCode 3), not a log line
    a.save(noisy(8))  # a save that works does not clear it: the limit still removes what comes
    assert "reviewed frames only" in states[-1] and len(states) == 1
    a.max_bytes = 10**9  # the limit raised: the state clears
    a.save(noisy(9))
    assert states[-1] == "" and a.limit_note == "" and len(a.flagged()) == 2


def test_the_size_limit_keeps_a_frame_labelled_by_hand_in_labels_csv(tmp_path):
    """A label typed into labels.csv while the station runs is a person's review too: the size
    limit must not remove its frame (it did: only archive.db's reviews were asked). With a
    labels.csv that cannot be read, nothing is removed and the note says why."""
    probe = Archive(tmp_path / "probe")
    size = (tmp_path / "probe" / "images" / probe.save(noisy(0))).stat().st_size
    a = Archive(tmp_path / "arch")
    names = [a.save(noisy(i)) for i in range(4)]
    (tmp_path / "arch" / "labels.csv").write_text(f"file,label,pin\n{names[0]},NUKENG,9\n")
    a.max_bytes = int(3.5 * size)
    a.save(noisy(5))
    left = {r.file for r in a.flagged()}
    assert names[0] in left and names[1] not in left  # the next oldest went instead
    assert (tmp_path / "arch" / "images" / names[0]).exists()
    assert read_labels(tmp_path / "arch") == [(names[0], "NUKENG", 9)]
    (tmp_path / "arch" / "labels.csv").write_text(f"file,label,pin\n{names[2]},BENT,9\n")
    before = {r.file for r in a.flagged()}
    a.max_bytes = 1
    a.save(noisy(6))
    assert before <= {r.file for r in a.flagged()}  # unreadable labels: nothing removed
    assert "nothing removed" in a.limit_note and "labels.csv" in a.limit_note


def test_check_tidies_an_image_a_prune_was_killed_removing(tmp_path):
    a = Archive(tmp_path)
    name = a.save(noisy(1))
    os.replace(tmp_path / "images" / name, tmp_path / "images" / f".pruned-{name}")  # killed before its row went
    rep = a.check()
    assert not (tmp_path / "images" / f".pruned-{name}").exists() and rep.temp_removed == 1
    assert rep.marked_missing == 1 and rep.images == 0
