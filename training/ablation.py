"""python -m training.ablation: what each ingredient of the recipe adds, as one table.

Trains a ladder of recipes from the original experiment's (`seed-like`) up to the default, each
on the same validation set and the same compute budget per row, and writes the table to
docs/ablation.md (and runs/ablation/<row>/ for each run's curves and log).

  python -m training.ablation                 # every row (long: see the budget column)
  python -m training.ablation --rows seed-like,dense
  python -m training.ablation --scale 0.25    # everything 4x shorter, for a quick look
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from models.cli import command_parser
from models.options import merge
from training.train import TrainConfig, check_collapse, resolve_config, train

# Each row: (name, what changes, overrides on top of the default recipe). Read top to bottom: every
# row adds one ingredient to the row above it.
ROWS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "seed-like",
        "plain ViT (16x16 patches), image labels only, 2000 renders of one style, lr 3e-4",
        {"preset": "seed-like"},
    ),
    (
        "dense",
        "+ dense per-pin supervision (defect map + pin map from the generator's ground truth)",
        {
            "model": "pinvit_plain_p16",
            "data": {"n": 2000, "styles": "photo=1", "widen": 1.0, "max_defects": 1},
            "aug_shift_px": 0,
            "aug_color": 0.0,
        },
    ),
    (
        "conv-stem",
        "+ convolutional stem (stride-2 3x3 convs) instead of 16x16 linear patches",
        {"data": {"n": 2000, "styles": "photo=1", "widen": 1.0, "max_defects": 1}, "aug_shift_px": 0, "aug_color": 0.0},
    ),
    (
        "multi-defect",
        "+ training renders with 1-3 defective pins each (more defect examples per image)",
        {"data": {"n": 2000, "styles": "photo=1", "widen": 1.0}, "aug_shift_px": 0, "aug_color": 0.0},
    ),
    (
        "styles+widen",
        "+ photo/flat style mix and camera ranges widened 30% beyond PART.md",
        {"data": {"n": 2000}, "aug_shift_px": 0, "aug_color": 0.0},
    ),
    ("augment", "+ shift and brightness/contrast augmentation", {"data": {"n": 2000}}),
    ("default", "+ data volume and schedule: the shipped recipe", {}),
]


def run_row(name: str, overrides: dict[str, Any], scale: float, out: Path) -> dict[str, Any]:
    over = dict(overrides)
    preset = over.pop("preset", None)
    cfg = resolve_config(preset, None, [])
    cfg = merge(cfg, over)
    cfg = merge(
        cfg, {"name": name, "out": str(out), "epochs": max(1, round(cfg.epochs * scale)), "collapse_after": 10_000}
    )  # let every row run its course: the table shows the collapse
    return train(cfg, progress=False)


def main(argv: list[str] | None = None) -> int:
    ap = command_parser("python -m training.ablation", __doc__)
    ap.add_argument("--rows", default=",".join(r[0] for r in ROWS), help="comma-separated rows to run")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every row's epochs by this")
    ap.add_argument(
        "--out", type=Path, default=Path("runs/ablation"), help="run folders go here (default: %(default)s)"
    )
    ap.add_argument(
        "--table",
        type=Path,
        default=Path("docs/ablation.md"),
        help="markdown file the table is written into (default: %(default)s)",
    )
    args = ap.parse_args(argv)
    wanted = [r for r in ROWS if r[0] in args.rows.split(",")]
    if not wanted:
        print(f"error: --rows: none of {args.rows!r} is a row ({', '.join(r[0] for r in ROWS)})", file=sys.stderr)
        return 2
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for name, what, over in wanted:
        print(f"== {name}: {what}")
        s = run_row(name, over, args.scale, args.out)
        results[name] = {"what": what, **s}
        args.out.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=2))
    write_table(results, args.table)
    print(f"table: {args.table}")
    return 0


def _collapsed(val: dict[str, Any]) -> str:
    """The training collapse check applied to a row's final validation."""
    msg = check_collapse(val, epoch=10_000, cfg=TrainConfig())
    return "no" if msg is None else msg.split(" the model ", 1)[1].split(" (")[0]


def write_table(results: dict[str, Any], path: Path) -> None:
    lines = [
        "| row | what changes | train images | epochs | minutes | 3-class acc | NG vs OK | escape | overkill "
        "| pin named | recall B / N / OK | collapsed? |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, _, _ in ROWS:
        if name not in results:
            continue
        r = results[name]
        v = r["val"]
        cfg = json.loads((Path(r["run"]) / "config.json").read_text())
        rec = " / ".join(f"{v['recall'][c]:.2f}" for c in ("BENDNG", "NUKENG", "OK"))
        lines.append(
            f"| {name} | {r['what']} | {cfg['data']['n'] if not cfg['data'].get('folder') else 'folder'} "
            f"| {cfg['epochs']} | {r['elapsed_s'] / 60:.1f} | {v['accuracy']:.3f} | {v['ng_ok_accuracy']:.3f} "
            f"| {v['escape_rate']:.3f} | {v['overkill_rate']:.3f} | {v.get('pin_accuracy', float('nan')):.3f} "
            f"| {rec} | {_collapsed(v)} |"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    body = path.read_text() if path.exists() else ""
    start, end = "<!-- ablation:start -->", "<!-- ablation:end -->"
    table = start + "\n" + "\n".join(lines) + "\n" + end
    if start in body and end in body:
        body = body[: body.index(start)] + table + body[body.index(end) + len(end) :]
    else:
        body = body + ("\n" if body else "") + table + "\n"
    path.write_text(body)


if __name__ == "__main__":
    sys.exit(main())
