"""python -m training.compare: rank trained runs on one selection set, not on a test set.

  python -m training.compare runs/default runs/flat50 runs/away25-flat50

Renders the selection set once (seed 545454, photo/flat 50/50, exactly PART.md's ranges, 3000
images: a seed no training, validation or test set uses), evaluates every run's checkpoint on it
and prints one table: 3-class accuracy, NG vs OK, escapes and overkills (counts and rates), pin
named, and where the escapes fall (drawing style, bends leaning away from the camera).

Choose between recipes here; then report the chosen one with `python -m training.ship`, whose
test sets no choice has looked at. With --out, the table is also saved as JSON.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

from models.checkpoint import CheckpointError, read_spec
from models.cli import command_parser
from models.part import PartSpec, PartSpecError, part_from_dict
from models.synth.dataset import SynthConfig, SynthError, generate_once, parse_styles
from training import datasets
from training.evaluate import bend_direction, evaluate

SELECTION = datasets.get("procedural-select")
SELECTION_N = 3000  # twice the registry's size: recipes here differ by fractions of a point


def selection_set(part: PartSpec, data: Path, n: int, seed: int, workers: int) -> Path:
    cfg = SynthConfig(n=n, seed=seed, styles=parse_styles(SELECTION.styles), widen=SELECTION.widen, workers=workers)
    return generate_once(part, cfg, data / f"select-{part.name}-{part.fingerprint()}-{seed}-{n}")


def escapes_by_kind(folder: Path, preds: Path) -> dict[str, int]:
    """Escapes (a defective image called OK) counted by drawing style and, for bends, direction."""
    with open(folder / "meta.jsonl") as f:
        meta = {m["file"]: m for m in map(json.loads, filter(str.strip, f))}
    out: dict[str, int] = {}
    with open(preds, newline="") as f:
        for r in csv.DictReader(f):
            m = meta.get(r["file"])
            if not m or m["label"] == "OK" or r["label"] != "OK":
                continue
            out[f"style {m['style']}"] = out.get(f"style {m['style']}", 0) + 1
            kind = m["label"] if m["label"] != "BENDNG" else f"BENDNG {bend_direction(m['params']['bend_dir_deg'])}"
            out[kind] = out.get(kind, 0) + 1
    return out


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def main(argv: list[str] | None = None) -> int:
    ap = command_parser("python -m training.compare", __doc__)
    ap.add_argument("runs", nargs="+", type=Path, help="run folders (each with model.safetensors) or checkpoints")
    ap.add_argument("--n", type=int, default=SELECTION_N, help="selection set size (default 3000)")
    ap.add_argument("--seed", type=int, default=SELECTION.seed, help="selection set seed (default 545454)")
    ap.add_argument("--data", type=Path, default=Path("data"), help="where the selection set is rendered")
    ap.add_argument("--workers", type=int, default=2, help="rendering processes")
    ap.add_argument("--out", type=Path, default=None, help="also save the table as JSON here")
    args = ap.parse_args(argv)
    ckpts = [r / "model.safetensors" if r.is_dir() else r for r in args.runs]
    try:
        parts = [part_from_dict(read_spec(c)["part"], str(c)) for c in ckpts]
        if len({p.fingerprint() for p in parts}) != 1:
            names = ", ".join(f"{c}: {p.name} ({p.fingerprint()})" for c, p in zip(ckpts, parts, strict=True))
            raise CheckpointError(f"these models are for different parts ({names}); compare one part at a time")
        folder = selection_set(parts[0], args.data, args.n, args.seed, args.workers)
    except (CheckpointError, PartSpecError, SynthError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"selection set: {folder} ({args.n} images, seed {args.seed}, photo/flat 50/50, PART.md ranges)")
    table: list[dict[str, Any]] = []
    for run, ckpt in zip(args.runs, ckpts, strict=True):
        preds = folder / f"preds-{run.name if run.is_dir() else run.stem}.csv"
        r = evaluate(ckpt, folder, preds, progress=False)
        m = r["metrics"]
        c = m["confusion"]
        ok = len(c) - 1  # OK is the last class
        row = {
            "run": str(run),
            "accuracy": m["accuracy"],
            "ng_ok_accuracy": m["ng_ok_accuracy"],
            "escapes": sum(c[i][ok] for i in range(ok)),
            "escape_rate": m["escape_rate"],
            "overkills": sum(c[ok][:ok]),
            "overkill_rate": m["overkill_rate"],
            "pin_accuracy": m.get("pin_accuracy"),
            "escapes_by_kind": escapes_by_kind(folder, preds),
        }
        table.append(row)
    print(
        "\n| run | 3-class | NG vs OK | escapes | overkills | pin named | escapes by kind |\n"
        "|---|---|---|---|---|---|---|"
    )
    for t in table:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(t["escapes_by_kind"].items())) or "-"
        print(
            f"| {t['run']} | {t['accuracy']:.4f} | {t['ng_ok_accuracy']:.4f} | {t['escapes']} ({t['escape_rate']:.2%}) "
            f"| {t['overkills']} ({t['overkill_rate']:.2%}) | {_num(t['pin_accuracy'])} | {kinds} |"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        setting = {**SELECTION.settings(args.n), "seed": args.seed}
        args.out.write_text(json.dumps({"selection_set": setting, "runs": table}, indent=2) + "\n")
        print(f"\nsaved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
