"""python -m export.benchmark: speed, accuracy and size of every model in a bundle.

  python -m export.benchmark --model models/default
  python -m export.benchmark --model models/default --n 300 --json bench.json --png bench.png

For each backend and precision the bundle holds, through the station's runtime (models.runtime):
  latency p50 / p95 at batch 1 (the model call alone, and frame -> verdict with preprocessing),
  throughput at batch 8, accuracy / escape / overkill on a rendered labelled set, file size.
Prints one markdown table, and the model the station would choose on this machine (the same
self-check models.runtime runs on first load, models/autoselect.py; it uses and fills the
station's per-user cache); --json and --png write the same numbers as data and as a chart.
The CPU is shared with whatever else runs: close other work for numbers worth quoting.

  python -m export.benchmark --max-isa AVX2     # OpenVINO as on an AVX2-only CPU

--max-isa caps the instruction set OpenVINO's kernels use (oneDNN's ONEDNN_MAX_CPU_ISA), to
check on a newer machine what an older factory PC would run; ONNX Runtime has no such cap and
still uses everything this CPU has (the output says so). The station's self-check runs under
the same cap, and caches its choice apart from the uncapped one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from export import data as frames_io
from export.evaluate import score_frames
from models.bundle import BundleError, available, read_bundle
from models.cpu import ISA_LIMIT_ENV, ISA_LIMITS, cpu_name, isa_limit, isa_text
from models.labels import list_images
from models.part import PartSpecError, part_from_dict
from models.runtime import Runtime, default_threads
from models.synth.dataset import BOTH_STYLES


def _timed(fn: Any, iters: int) -> np.ndarray:
    out = np.empty(iters)
    for i in range(iters):
        t = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t
    return out


def bench_model(
    bundle: Path, key: str, frames: frames_io.FrameSet, full: list[np.ndarray], iters: int, threads: int
) -> dict[str, Any]:
    backend, precision = key.split("/")
    t0 = time.perf_counter()
    rt = Runtime(bundle, backend=backend, precision=precision, expected_part=None, threads=threads)
    load_s = time.perf_counter() - t0
    x1 = frames.inputs(0, 1)
    x8 = np.concatenate([frames.inputs(0, min(8, len(frames)))] * (8 // min(8, len(frames)) + 1))[:8]
    for _ in range(5):  # warm-up: first calls allocate and pick kernels
        rt.infer_batch(x1)
    rt.infer_batch(x8)
    lat = _timed(lambda: rt.infer_batch(x1), iters) * 1e3
    e2e = _timed(lambda: rt.infer([full[0]]), max(10, iters // 2)) * 1e3
    n8 = max(3, iters // 8)
    thr = 8 * n8 / _timed(lambda: rt.infer_batch(x8), n8).sum()
    m = score_frames(rt, frames, keep_outputs=False).metrics()
    size = sum(e["bytes"] for e in rt.info["models"][key]["files"].values())
    return {
        "model": key,
        "latency_ms_p50": float(np.percentile(lat, 50)),
        "latency_ms_p95": float(np.percentile(lat, 95)),
        "frame_to_verdict_ms_p50": float(np.percentile(e2e, 50)),
        "throughput_fps_batch8": float(thr),
        "accuracy": m["accuracy"] if m else None,
        "ng_ok_accuracy": m["ng_ok_accuracy"] if m else None,
        "escape_rate": m["escape_rate"] if m else None,
        "overkill_rate": m["overkill_rate"] if m else None,
        "size_mb": size / 1e6,
        "load_s": load_s,
    }


def format_table(rows: list[dict[str, Any]], header: str) -> str:
    cols = [
        ("model", "{}"),
        ("latency_ms_p50", "{:.1f}"),
        ("latency_ms_p95", "{:.1f}"),
        ("frame_to_verdict_ms_p50", "{:.1f}"),
        ("throughput_fps_batch8", "{:.1f}"),
        ("accuracy", "{:.2%}"),
        ("ng_ok_accuracy", "{:.2%}"),
        ("escape_rate", "{:.2%}"),
        ("overkill_rate", "{:.2%}"),
        ("size_mb", "{:.2f}"),
    ]
    titles = [
        "model",
        "p50 ms",
        "p95 ms",
        "frame->verdict p50 ms",
        "batch-8 frames/s",
        "accuracy",
        "NG/OK acc",
        "escape",
        "overkill",
        "size MB",
    ]
    lines = [header, "| " + " | ".join(titles) + " |", "|" + "|".join("---" for _ in titles) + "|"]
    for r in rows:
        lines.append("| " + " | ".join("-" if r[k] is None else f.format(r[k]) for k, f in cols) + " |")
    return "\n".join(lines)


def save_chart(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["model"] for r in rows]
    colours = ["#4c72b0" if n.endswith("fp32") else "#dd8452" for n in names]
    fig, ax = plt.subplots(1, 4, figsize=(16, 4))
    p50 = np.array([r["latency_ms_p50"] for r in rows])
    p95 = np.array([r["latency_ms_p95"] for r in rows])
    ax[0].bar(names, p50, color=colours, yerr=[np.zeros_like(p50), p95 - p50], capsize=4)
    ax[0].set_title("latency, batch 1 (ms; bar p50, whisker p95)")
    ax[1].bar(names, [r["throughput_fps_batch8"] for r in rows], color=colours)
    ax[1].set_title("throughput, batch 8 (frames/s)")
    acc = [100 * (r["accuracy"] or 0) for r in rows]
    ax[2].bar(names, acc, color=colours)
    ax[2].set_title("accuracy (%)")
    ax[2].set_ylim(max(0.0, min(acc) - 10), 100)
    ax[3].bar(names, [r["size_mb"] for r in rows], color=colours)
    ax[3].set_title("model files (MB)")
    for a in ax:
        a.tick_params(axis="x", rotation=30, labelsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run(bundle: Path, n: int, seed: int, iters: int, threads: int, images: Path | None, progress: bool) -> dict:
    info = read_bundle(bundle, expected_part=None)
    keys = available(info)
    part = part_from_dict(info["part"], source=str(bundle))
    ispec = Runtime(bundle, precision="fp32", backend="onnxruntime", expected_part=None).input_spec
    with tempfile.TemporaryDirectory(prefix="pininspect-bench-") as tmp:
        folder = images or frames_io.render(part, Path(tmp) / "set", n, seed, BOTH_STYLES, 1.3, 2, progress)
        frames = frames_io.load(folder, ispec, "benchmark")
        root, _ = list_images(folder)
        first = cv2.imread(str(root / frames.files[0]), cv2.IMREAD_COLOR)  # a full frame, for frame->verdict
        if first is None:
            raise ValueError(f"{root / frames.files[0]}: not readable")
        full = [first]
        rows = []
        for key in keys:
            print(f"benchmarking {key} ...", file=sys.stderr, flush=True)
            rows.append(bench_model(bundle, key, frames, full, iters, threads))
        print("the station's self-check ...", file=sys.stderr, flush=True)
        station = Runtime(bundle, expected_part=None, threads=threads)
    import onnxruntime
    import openvino

    return {
        "bundle": str(bundle),
        "name": info["name"],
        "version": info["version"],
        "machine": {
            "cpu": cpu_name(),
            "isa": isa_text(),
            "cores": os.cpu_count(),
            "threads": threads,
            "platform": platform.platform(),
            "onnxruntime": onnxruntime.__version__,
            "openvino": openvino.__version__.split("-")[0],
            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        },
        "set": str(images) if images else f"rendered: n={n} seed={seed}",
        "frames": len(frames),
        "rows": rows,
        "station_choice": {"model": station.key, "reason": station.choice_reason},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m export.benchmark",
        description="Latency, throughput, accuracy and size of every model in a bundle.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    ap.add_argument("--model", type=Path, default=Path("models/default"), help="bundle folder (default: %(default)s)")
    ap.add_argument("--n", type=int, default=300, help="rendered frames for accuracy (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=8101, help="seed of the rendered set (default: %(default)s)")
    ap.add_argument("--images", type=Path, default=None, help="a labelled folder instead of rendering one")
    ap.add_argument("--iters", type=int, default=100, help="timed batch-1 calls per model (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=0, help="inference threads (default: all cores)")
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    ap.add_argument("--png", type=Path, default=None, help="write a chart")
    ap.add_argument(
        "--max-isa",
        type=str.upper,
        choices=ISA_LIMITS,
        default=None,
        metavar="ISA",
        help=f"cap OpenVINO's instruction set, e.g. AVX2 ({', '.join(ISA_LIMITS)}); sets {ISA_LIMIT_ENV}",
    )
    ap.add_argument("--quiet", action="store_true", help="no progress bars, only the table")
    args = ap.parse_args(argv)
    if args.max_isa:
        if "openvino" in sys.modules and os.environ.get(ISA_LIMIT_ENV, "").upper() != args.max_isa:
            print("error: --max-isa must be set before OpenVINO loads; run it as a command of its own", file=sys.stderr)
            return 2
        os.environ[ISA_LIMIT_ENV] = args.max_isa
    threads = args.threads or default_threads()
    try:
        res = run(args.model, args.n, args.seed, max(10, args.iters), threads, args.images, not args.quiet)
    except (BundleError, PartSpecError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    m = res["machine"]
    header = (
        f"{res['name']} {res['version']} on {m['cpu']} ({m['isa']}, {m['cores']} cores, {threads} threads, "
        f"load {m['load_average'] or 0:.1f}), onnxruntime {m['onnxruntime']}, openvino {m['openvino']}; "
        f"accuracy on {res['frames']} frames ({res['set']})"
    )
    print(format_table(res["rows"], header))
    print(f"\nthe station would run {res['station_choice']['reason']}")
    if isa_limit():
        cap = f"OpenVINO ran capped at {isa_limit()} ({ISA_LIMIT_ENV})"
        print(f"{cap}; ONNX Runtime used every instruction set of this CPU")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    if args.png:
        args.png.parent.mkdir(parents=True, exist_ok=True)
        save_chart(res["rows"], args.png, header)
    return 0


if __name__ == "__main__":
    sys.exit(main())
