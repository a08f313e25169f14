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
    src.t0 = time.monotonic()  # back
    assert src.read().image.shape == (480, 640, 3) and src.faults == 1 and src.retry


def test_the_drift_table_leaves_out_the_warm_up():
    samples = [Sample(t * 60.0, t * 100, 100.0, 200.0 if t < 2 else 250.0, 20, 9, 3.0, 6.0, t, 0, 0) for t in range(10)]
    table, drift = drift_table(samples, warmup=0.3, rows=5)
    assert table.count("\n") == 6 and table.startswith("| minutes |")
    assert drift["rss_growth"] == 0.0 and drift["p99_drift"] == 0.0  # the jump at 2 min is warm-up
    samples[-1].p99 = samples[-2].p99 = 9.0
    assert drift_table(samples, warmup=0.3, rows=5)[1]["p99_drift"] == pytest.approx(0.5)
    rss, files, threads = process_now()
    assert rss > 10 and files > 2 and threads >= 1
