"""python -m training.speed: how fast training runs on this CPU, in each precision.

Trains the default recipe for one short epoch on the same renders, once in float32
(`amp=off`) and once in bf16 autocast, and prints one table: training images a second, each
against float32, and which one the default (`amp: auto`) picks on this CPU. Use it on a new
machine before a long run: the default should train at no less than 80% of float32's speed.

  python -m training.speed                  # 960 renders (made once, cached), ~30 s a precision
  python -m training.speed --n 320 --json runs/speed.json

bf16 is measured only where the CPU does it in hardware (AVX512-BF16 or AMX): elsewhere it is
emulated and many times slower (add `--emulated-bf16` to measure that too, minutes more).
The renders are cached in data/ like any training set; the runs go to a temporary folder.
Exit codes: 0 measured, 2 bad option or part.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from models.cli import command_parser, guarded
from models.cpu import cpu_name, has_native_bf16, isa_text
from models.part import PartSpecError
from models.synth.dataset import SynthError
from training.data import DataError
from training.train import resolve_config, train, use_bf16

_OWN_KEYS = {"amp", "name", "out"}  # what each measurement sets: a user's value would mislabel the table


def measure(n: int, precisions: list[str], sets: list[str], out: Path, quiet: bool = True) -> list[dict[str, Any]]:
    """One short training per precision (`off`, `bf16`) on the same `n` renders: its summary's
    `train_images_per_s`."""
    fixed = sorted({key.partition("=")[0].strip() for key in sets} & _OWN_KEYS)
    if fixed:
        raise ValueError(f"--set {', '.join(fixed)}: training.speed sets these itself (each precision in turn)")
    rows = []
    for amp in precisions:
        cfg = resolve_config(
            None, None, [f"name=speed-{amp}", f"amp={amp}", "epochs=1", f"data.n={n}", "data.val_n=30", f"out={out}"]
            + sets,
        )  # fmt: skip
        print(f"training one epoch of {n} renders, amp={amp} ...", file=sys.stderr, flush=True)
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink) if quiet else contextlib.nullcontext():
            summary = train(cfg, progress=not quiet)
        rows.append({"amp": amp, "precision": summary["precision"], "images_per_s": summary["train_images_per_s"]})
    base = next((r["images_per_s"] for r in rows if r["amp"] == "off"), None)
    for r in rows:
        r["vs_float32"] = round(r["images_per_s"] / base, 2) if base else None
    return rows


def table(rows: list[dict[str, Any]], auto_bf16: bool) -> str:
    pick = "bf16" if auto_bf16 else "off"
    lines = ["| amp | precision | training images/s | vs float32 | default picks |", "|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r['vs_float32']:.2f}x" if r["vs_float32"] is not None else "-"
        mark = "yes" if r["amp"] == pick else ""
        lines.append(f"| {r['amp']} | {r['precision']} | {r['images_per_s']:.1f} | {ratio} | {mark} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = command_parser("python -m training.speed", __doc__)
    ap.add_argument("--n", type=int, default=960, help="training renders per measurement (default: %(default)s)")
    ap.add_argument(
        "--emulated-bf16", action="store_true", help="measure bf16 also where the CPU lacks it (slow: emulated)"
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the table and the CPU here")
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a training setting, as in training.train"
    )
    ap.add_argument("--verbose", action="store_true", help="show the training runs' own output")
    args = ap.parse_args(argv)
    if args.n < 32:
        ap.error("--n: at least 32 renders (two batches)")
    native = has_native_bf16()
    precisions = ["off"] + (["bf16"] if native or args.emulated_bf16 else [])

    def run() -> int:
        print(f"CPU: {cpu_name()} ({isa_text()}); bf16 in hardware: {'yes' if native else 'no'}")
        with tempfile.TemporaryDirectory(prefix="speed-") as tmp:
            rows = measure(args.n, precisions, args.set, Path(tmp), quiet=not args.verbose)
        auto_bf16 = use_bf16("auto")
        print(table(rows, auto_bf16))
        chosen = next(r for r in rows if r["amp"] == ("bf16" if auto_bf16 else "off"))
        print(f"the default (amp: auto) trains in {chosen['precision']} here: {chosen['vs_float32']:.2f}x float32")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            doc = {"cpu": cpu_name(), "isa": isa_text(), "n": args.n, "rows": rows, "auto": chosen["amp"]}
            args.json.write_text(json.dumps(doc, indent=2) + "\n")
        return 0

    return guarded(run, {(ValueError, PartSpecError, DataError, SynthError): 2})


if __name__ == "__main__":
    sys.exit(main())
