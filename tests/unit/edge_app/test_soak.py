import re
import time

import pytest

from edge_app.soak import FlakySource, Sample, drift_table, process_now
from edge_app.sources import SimSource, SourceError


def test_the_flaky_source_is_unplugged_on_schedule_and_comes_back():
    src = FlakySource(SimSource(fps=0, pool=2, seed=1), every=0.3, down=0.1)
    src.open()
    src.t0 = time.monotonic() - 0.25  # inside the outage
    with pytest.raises(SourceError, match="unplugged"):
        src.read()
    with pytest.raises(SourceError):
        src.open()
    assert src.retry  # a simulated fault is worth retrying
    src.t0 = time.monotonic()  # back
    assert src.read().image.shape == (480, 640, 3) and src.faults == 1
    assert not src.retry  # the simulator's own errors are as final as they are without the wrapper


def test_the_drift_table_leaves_out_the_warm_up():
    samples = [Sample(t * 60.0, t * 100, 100.0, 200.0 if t < 2 else 250.0, 20, 9, 3.0, 6.0, t, 0, 0) for t in range(10)]
    table, drift = drift_table(samples, warmup=0.3, rows=5)
    assert table.count("\n") == 6 and table.startswith("| minutes |")
    assert drift["rss_growth"] == 0.0 and drift["p99_drift"] == 0.0  # the jump at 2 min is warm-up
    samples[-1].p99 = samples[-2].p99 = 9.0
    assert drift_table(samples, warmup=0.3, rows=5)[1]["p99_drift"] == pytest.approx(0.5)
    rss, files, threads = process_now()
    assert rss > 10 and files > 2 and threads >= 1


def test_a_short_soak_runs_the_station_through_faults_and_checks_the_archive(tmp_path, capsys):
    """The soak on the station's own assembly (source, shipped model, archive): the source is
    unplugged several times, the pipeline reconnects, and every archived row has its image."""
    from edge_app import soak

    archive = tmp_path / "archive"
    argv = ["--frames", "240", "--archive", str(archive), "--fault-every", "0.6", "--fault-for", "0.15"]
    argv += ["--sample-every", "0.2", "--progress", "0", "--no-fsync", "--sim-defect-rate", "0.5"]
    soak.main(argv)  # its exit also weighs RSS and p99 drift, which a run of seconds cannot judge
    out = capsys.readouterr().out
    run = next(line for line in out.splitlines() if line.startswith("run "))
    frames, faults, recoveries = (int(w) for w in re.findall(r"(\d+) (?:frames|source faults|recoveries)", run))
    assert frames == 240 and faults >= 1 and recoveries >= 1, run
    assert "ok   no crash" in out
    check = next(line for line in out.splitlines() if "rows" in line and "images" in line)
    assert check.startswith("ok "), check
    rows = len(list((archive / "images").glob("*.png")))
    assert rows > 0  # NG frames (half of them) were archived, and kept (an --archive is not removed)


@pytest.mark.parametrize(
    "argv, why",
    [
        (["--source", "folder:{tmp}/nowhere"], "no such folder"),
        (["--model", "{tmp}/no-bundle"], "no such bundle folder"),
    ],
)
def test_a_soak_that_never_inspects_a_frame_ends_with_one_line(tmp_path, capsys, argv, why):
    """A source that never opens is not a simulated fault: the soak ends at once with exit 2 and
    the reason, instead of retrying it for ever (it did for a folder that is not there)."""
    from edge_app import soak

    argv = [a.format(tmp=tmp_path) for a in argv] + ["--frames", "50", "--progress", "0", "--no-fsync"]
    t0 = time.monotonic()
    assert soak.main(argv) == 2
    assert time.monotonic() - t0 < 60  # it ends on its own (a wait, not a speed claim)
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and why in errors[0], captured.err
    assert "Traceback" not in captured.err and "| minutes |" not in captured.out
