"""`python -m edge_app.soak`: the headless station for hours, watched for drift.

    python -m edge_app.soak --frames 1000000 [--source sim|folder:DIR|video:FILE] [--fault-every 180]
    python -m edge_app.soak --hours 2 --png soak.png

Runs the station's pipeline (the configured model, an archive) on a recorded or simulated source,
unplugs the source every `--fault-every` seconds for `--fault-for` seconds (a camera that
disappears and comes back: the pipeline must reconnect by itself), and samples the process every
`--sample-every` seconds: resident memory, open files, threads, frames per second and
capture-to-verdict latency. It prints a table of those over the run and their drift after the
warm-up, checks the archive (rows == images), and writes a PNG of the curves when matplotlib is
installed (it is not a station dependency). Exit 1 when a limit is broken (RSS growth >= 5 %,
p99 drift >= 10 %, the pipeline ended on an error, rows != images).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edge_app.archive import Archive
from edge_app.events import ModelState, Result, SourceState, Status
from edge_app.model import model_title
from edge_app.pipeline import Pipeline
from edge_app.settings import load_config
from edge_app.sources import Frame, Source, SourceError
from edge_app.station import Station

log = logging.getLogger(__name__)
RSS_LIMIT = 0.05  # growth after warm-up
P99_LIMIT = 0.10  # drift of the p99 latency after warm-up


class FlakySource(Source):
    """Another source that is unplugged every `every` seconds for `down` seconds: reads and opens
    fail with SourceError meanwhile, as a camera's do. Reopens after a simulated fault are retried
    by the pipeline; the inner source's own errors (a folder that is not there) are retried only
    where the inner source would be, so a soak on a source that never opens ends."""

    def __init__(self, inner: Source, every: float, down: float):
        super().__init__()
        self.inner, self.every, self.down = inner, every, down
        self.live, self.fps = inner.live, inner.fps
        self.t0 = time.monotonic()
        self.faults = 0
        self._in_fault = False
        self._simulated = False  # whether the last SourceError was this wrapper's

    @property
    def retry(self) -> bool:  # type: ignore[override]
        return self._simulated or self.inner.retry

    def describe(self) -> str:
        return f"{self.inner.describe()}, unplugged {self.down:g} s every {self.every:g} s"

    def _check(self) -> None:
        if self.every <= 0:
            return
        down = (time.monotonic() - self.t0) % self.every > self.every - self.down
        if down and not self._in_fault:
            self.faults += 1
        self._in_fault = self._simulated = down
        if down:
            raise SourceError("soak: camera unplugged (simulated fault)")

    def open(self) -> None:
        self._check()
        self.inner.cancel = self.cancel
        self.inner.open()

    def read(self) -> Frame:
        self._check()
        return self.inner.read()

    def close(self) -> None:
        self.inner.close()


@dataclass
class Sample:
    t: float  # seconds since the start
    frames: int
    fps: float
    rss_mb: float
    files: int
    threads: int
    p50: float
    p99: float
    archived: int
    faults: int
    recoveries: int


def _proc_status() -> dict[str, str]:
    with open("/proc/self/status") as f:
        return dict(line.split(":", 1) for line in f if ":" in line)


def process_now() -> tuple[float, int, int]:
    """Resident memory (MB), open file descriptors and threads of this process."""
    st = _proc_status()
    rss = float(st["VmRSS"].split()[0]) / 1024
    return rss, len(os.listdir("/proc/self/fd")), int(st["Threads"])


def drift_table(samples: list[Sample], warmup: float, rows: int = 10) -> tuple[str, dict[str, float]]:
    """A markdown table of the run in `rows` phases and the drift of its figures after `warmup`
    (a fraction of the run)."""
    samples = [s for s in samples if s.frames]  # not the model load and the simulator's first renders
    if not samples:
        return "no samples with frames", {}
    groups = [g for g in np.array_split(np.arange(len(samples)), min(rows, len(samples))) if len(g)]
    head = "| minutes | frames | fps | RSS MB | open files | threads | p50 ms | p99 ms | archived | faults |"
    lines = [head, "|" + "---|" * 10]
    phase = []
    for g in groups:
        s = [samples[i] for i in g]
        p = {
            "t": s[-1].t / 60,
            "frames": s[-1].frames,
            "fps": float(np.mean([x.fps for x in s])),
            "rss": float(np.median([x.rss_mb for x in s])),
            "files": max(x.files for x in s),
            "threads": max(x.threads for x in s),
            "p50": _median([x.p50 for x in s]),
            "p99": _median([x.p99 for x in s]),
            "archived": s[-1].archived,
            "faults": s[-1].faults,
        }
        phase.append(p)
        lines.append(
            f"| {p['t']:.1f} | {p['frames']} | {p['fps']:.0f} | {p['rss']:.1f} | {p['files']} | {p['threads']} "
            f"| {p['p50']:.2f} | {p['p99']:.2f} | {p['archived']} | {p['faults']} |"
        )
    after = [p for p in phase if p["t"] >= warmup * phase[-1]["t"]] or phase
    first, last = after[0], after[-1]
    drift = {
        "rss_growth": (last["rss"] - first["rss"]) / first["rss"],
        "p99_drift": (last["p99"] - first["p99"]) / first["p99"] if first["p99"] else float("nan"),
        "files_growth": last["files"] - first["files"],
        "threads_growth": last["threads"] - first["threads"],
    }
    return "\n".join(lines), drift


def _median(values: list[float]) -> float:
    finite = [v for v in values if v == v]
    return float(np.median(finite)) if finite else float("nan")


def write_png(samples: list[Sample], path: Path) -> str:
    """The curves as a PNG; '' when written, else why not (matplotlib missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no PNG (pip install matplotlib)"
    t = [s.t / 60 for s in samples]
    fig, axes = plt.subplots(2, 2, figsize=(11, 6), sharex=True)
    for ax, (title, ys) in zip(
        axes.flat,
        [
            ("RSS MB", [s.rss_mb for s in samples]),
            ("latency ms (p50, p99)", ([s.p50 for s in samples], [s.p99 for s in samples])),
            ("frames / s", [s.fps for s in samples]),
            ("open files, threads", ([s.files for s in samples], [s.threads for s in samples])),
        ],
        strict=True,
    ):
        for y in ys if isinstance(ys, tuple) else (ys,):
            ax.plot(t, y)
        ax.set_title(title)
    for ax in axes[1]:
        ax.set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return ""


class _Counters:
    """What the pipeline's callbacks count (on its threads): latencies since the last sample,
    verdicts, and source recoveries (a disconnect followed by running again)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.window: list[float] = []
        self.count = 0
        self.recoveries = 0
        self._down = False

    def on_result(self, r: Result) -> None:
        with self.lock:
            self.window.append(r.latency_ms)
            self.count += 1

    def on_status(self, st: Status) -> None:
        if st.source is SourceState.DISCONNECTED:
            self._down = True
        elif st.source is SourceState.RUNNING and self._down:
            self.recoveries += 1
            self._down = False

    def take(self) -> tuple[list[float], int]:
        with self.lock:
            lat, self.window = self.window, []
            return lat, self.count


def run(args: argparse.Namespace) -> int:
    cfg, problems = load_config(args.config)
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)
    tmp = None if args.archive is not None else tempfile.mkdtemp(prefix="pininspect-soak-")
    cfg = replace(
        cfg,
        source=args.source,
        model=args.model if args.model is not None else cfg.model,
        sim_fps=0.0,
        sim_defect_rate=args.sim_defect_rate,
        loop=True,
        archive_dir=str(args.archive if tmp is None else tmp),
        archive_enabled=True,
        retry_max_s=1.0,
        plc="",
        trigger="free",
    )
    counters = _Counters()
    flaky: list[FlakySource] = []
    last_error = [""]  # the last error message (why a start failed), not every one of a long run

    def wrap(inner: Source) -> Source:
        flaky.append(FlakySource(inner, args.fault_every, args.fault_for))
        return flaky[-1]

    def on_message(level: int, msg: str) -> None:  # errors are printed once, here (-v: logged)
        if level >= logging.ERROR:
            last_error[0] = msg
            if not args.verbose:
                print(f"error: {msg}", file=sys.stderr)

    station = Station(
        cfg,
        on_result=counters.on_result,
        on_status=counters.on_status,
        on_message=on_message,
        log_messages=args.verbose,
        wrap_source=wrap,
        fsync=not args.no_fsync,
        retry_initial_s=0.2,
    )
    try:
        if not station.start(max_frames=args.frames):
            if not last_error[0]:
                print("error: the station could not start", file=sys.stderr)
            return 2
        assert station.pipeline is not None and station.archive is not None
        source, archive = flaky[-1], station.archive
        print(f"soak: {source.describe()}, archive {archive.root}", file=sys.stderr)
        t0 = time.monotonic()
        try:
            samples = _sample(station.pipeline, source, archive, counters, args, t0)
        finally:
            station.stop(timeout=5.0)
        st = station.pipeline.status
        failed = st.model is ModelState.FAILED or st.source is SourceState.FAILED
        if counters.count == 0 and failed:  # nothing inspected: the error line says why, no table
            if not last_error[0]:
                print(f"error: {_failure(st)}", file=sys.stderr)
            return 2
        return _report(samples, args, station, source, counters, t0)
    finally:
        station.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _failure(st: Status) -> str:
    """Why the pipeline failed: the model's message when the model failed, else the source's."""
    return st.model_msg if st.model is ModelState.FAILED else st.source_msg


def _sample(
    pipe: Pipeline, source: FlakySource, archive: Archive, counters: _Counters, args: argparse.Namespace, t0: float
) -> list[Sample]:
    """One Sample every `args.sample_every` seconds until the run ends (frames, hours, Ctrl-C)."""
    deadline = time.monotonic() + args.hours * 3600 if args.hours else None
    samples: list[Sample] = []
    last_t, last_n = t0, 0
    try:
        while not pipe.wait(timeout=args.sample_every):
            now = time.monotonic()
            lat, n = counters.take()
            rss, files, threads = process_now()
            samples.append(
                Sample(
                    now - t0, n, (n - last_n) / max(now - last_t, 1e-6), rss, files, threads,
                    float(np.percentile(lat, 50)) if lat else float("nan"),
                    float(np.percentile(lat, 99)) if lat else float("nan"),
                    archive.saved, source.faults, counters.recoveries,
                )
            )  # fmt: skip
            last_t, last_n = now, n
            if args.progress and len(samples) % args.progress == 0:
                s = samples[-1]
                print(
                    f"{s.t / 60:6.1f} min {s.frames:>9} frames {s.fps:6.0f} fps RSS {s.rss_mb:6.1f} MB "
                    f"p99 {s.p99:6.2f} ms faults {s.faults}",
                    file=sys.stderr,
                )
            if deadline is not None and now >= deadline:
                break
    except KeyboardInterrupt:
        print("soak: interrupted", file=sys.stderr)
    return samples


def _report(
    samples: list[Sample],
    args: argparse.Namespace,
    station: Station,
    source: FlakySource,
    counters: _Counters,
    t0: float,
) -> int:
    """The run's table and the issue's limits, each ok or FAIL; 0 when all hold."""
    assert station.pipeline is not None and station.archive is not None
    st, holder = station.pipeline.status, station.model
    check = station.archive.check()
    table, drift = drift_table(samples, args.warmup)
    crashed = st.model is ModelState.FAILED or st.source is SourceState.FAILED
    print(f"model    {model_title(holder.runtime)}")
    print(f"source   {source.describe()}")
    print(f"run      {counters.count} frames in {time.monotonic() - t0:.0f} s, {source.faults} source faults, "
          f"{counters.recoveries} recoveries, end: {st.source.value} {st.source_msg}".rstrip())  # fmt: skip
    print(table)
    verdicts = []
    if drift:
        verdicts = [
            (drift["rss_growth"] < RSS_LIMIT, f"RSS growth after warm-up {drift['rss_growth']:+.1%} (limit 5%)"),
            (drift["p99_drift"] < P99_LIMIT, f"p99 latency drift after warm-up {drift['p99_drift']:+.1%} (limit 10%)"),
            (True, f"open files {drift['files_growth']:+d}, threads {drift['threads_growth']:+d} after warm-up"),
        ]
    verdicts += [
        (not crashed, "no crash" if not crashed else f"pipeline failed: {_failure(st)}"),
        (check.consistent, check.line()),
    ]
    for ok, text in verdicts:
        print(f"{'ok  ' if ok else 'FAIL'} {text}")
    if args.png:
        why = write_png(samples, args.png)
        print(f"note: {why}" if why else f"wrote {args.png}")
    return 0 if all(ok for ok, _ in verdicts) else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge_app.soak", description=__doc__.split("\n\n")[0])
    length = p.add_mutually_exclusive_group(required=True)
    length.add_argument("--frames", type=int, help="stop after this many verdicts")
    length.add_argument("--hours", type=float, help="stop after this many hours")
    p.add_argument("--source", default="sim", help="sim, folder:DIR or video:FILE (replayed in a loop)")
    p.add_argument("--model", help="model bundle folder (default: the settings file's, else the shipped one)")
    p.add_argument("--config", type=Path, help="settings file whose model and archive policy are used")
    p.add_argument("--archive", type=Path, help="archive folder (default: a temporary one, removed at the end)")
    p.add_argument("--sim-defect-rate", type=float, default=0.2, help="simulator's defect rate (default 0.2)")
    p.add_argument("--fault-every", type=float, default=180.0, help="unplug the source every S seconds (0: never)")
    p.add_argument("--fault-for", type=float, default=3.0, help="for this many seconds (default 3)")
    p.add_argument("--sample-every", type=float, default=5.0, help="seconds between samples (default 5)")
    p.add_argument("--warmup", type=float, default=0.1, help="share of the run left out of the drift (0.1)")
    p.add_argument("--no-fsync", action="store_true", help="archive without fsync (faster, not power-loss safe)")
    p.add_argument("--png", type=Path, help="write the curves to this PNG (needs matplotlib)")
    p.add_argument("--progress", type=int, default=12, help="print a line every N samples (0: none)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every source state change")
    args = p.parse_args(argv)
    if args.frames is not None and args.frames < 1 or args.hours is not None and args.hours <= 0:
        p.error("--frames and --hours must be positive")
    if args.fault_every and args.fault_for >= args.fault_every:
        p.error("--fault-for must be shorter than --fault-every")
    level = logging.INFO if args.verbose else logging.ERROR
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
