"""python -m training.synth.benchmark: how many frames a second the generator makes on this machine.

Prints one table: render only (in memory) and render + write (the `training.synth` path), per
PNG mode, with the number of worker processes used.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from models.part import PartSpecError, load_part
from models.synth.dataset import SynthConfig, generate, image_params, plan
from models.synth.render import render


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.synth.benchmark", description=__doc__.split("\n")[0])
    ap.add_argument("--part", default="default", help="part name or JSON path")
    ap.add_argument("--n", type=int, default=600, help="images per measurement")
    ap.add_argument(
        "--workers", type=int, default=min(2, os.cpu_count() or 1), help="render processes (default: %(default)s)"
    )
    args = ap.parse_args(argv)
    try:
        spec = load_part(args.part)
    except PartSpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = []
    cfg = SynthConfig(n=min(args.n, 200), seed=0)
    items = plan(spec, cfg)
    params = [image_params(spec, cfg, i, *it) for i, it in enumerate(items)]
    render(spec, params[0])
    t = time.perf_counter()
    for p in params:
        render(spec, p)
    dt = time.perf_counter() - t
    rows.append(("render only, in memory", 1, len(params) / dt))
    for png in ("fast", "small"):
        tmp = Path(tempfile.mkdtemp(prefix="synth-bench-"))
        try:
            cfg = SynthConfig(n=args.n, seed=0, workers=args.workers, png=png)
            t = time.perf_counter()
            generate(spec, cfg, tmp, progress=False)
            dt = time.perf_counter() - t
            size = sum(f.stat().st_size for f in (tmp / "images").iterdir()) / args.n / 1e6
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        rows.append((f"training.synth --png {png} ({size:.2f} MB/frame)", args.workers, args.n / dt))
    print(
        f"generator benchmark: part {spec.name}, {spec.camera.frame_width}x{spec.camera.frame_height}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}"
    )
    print(f"| {'path':<45} | workers | images/s |")
    print(f"|{'-' * 47}|---------|----------|")
    for name, w, ips in rows:
        print(f"| {name:<45} | {w:>7} | {ips:>8.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
