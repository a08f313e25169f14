"""python -m training.crossrender: does a model know the part, or only the renderer it saw?

Scores a checkpoint on fresh test sets of each renderer (the procedural generator and the
path-traced Blender renderer, which share no drawing code), or first trains a model on one
renderer or a mix of both and then scores it on each:

  python -m training.crossrender score --checkpoint models/default/model.safetensors
  python -m training.crossrender score --checkpoint runs/x/model.safetensors --sets blender-select --n 300
  python -m training.crossrender train --on blender --set epochs=10     # Blender -> procedural
  python -m training.crossrender train --on mix                          # both -> each
  python -m training.crossrender total runs/crossrender/a_*.json runs/crossrender/b_*.json
  python -m training.crossrender average runs/crossrender/a_*.json runs/crossrender/b_*.json

Every row reports 3-class accuracy, NG vs OK, escape (defective called OK), overkill (good
called NG), pin named, and missing pins (height <= 10%: only the hole shows), which must never
be called OK. Sets come from training.datasets (rendered once into data/, then reused); the
Blender renderer needs `make blender-venv`. Test sets are for scoring; choose recipes on the
selection sets (`--sets procedural-select,blender-select`). `total` adds up the rows that `score
--json` wrote, per model: escapes, overkills and wrong NG/OK calls over several sets (how the
shipped run was chosen, docs/ablation.md). `average` scores what several models would call
together, their class scores averaged frame by frame (an ensemble), from the predictions their
`score --json` runs saved: no model is run again.
"""

from __future__ import annotations

import csv
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from models.checkpoint import CheckpointError
from models.cli import command_parser, write_json
from models.decision import decide
from models.labels import LabelsError, read_labels
from models.metrics import confusion_counts, metrics
from models.part import CLASSES, PartSpecError, load_part
from training import datasets
from training.evaluate import breakdowns, evaluate

DEFAULT_SETS = ("procedural-test", "blender-test")
TRAIN_ON = ("procedural", "blender", "mix")


def score(
    checkpoint: Path,
    set_names: list[str],
    part: str = "default",
    n: int | None = None,
    data: Path | None = None,
    progress: bool = True,
    preds_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """One row of metrics per named set; each set's predictions CSV goes to `preds_dir`
    (default runs/crossrender/), never beside the checkpoint (models/default is shipped)."""
    spec = load_part(part)
    rows = []
    out = Path(preds_dir) if preds_dir else datasets.REPO / "runs" / "crossrender"
    for name in set_names:
        s = datasets.get(name)
        folder = datasets.materialize(s, spec, data, n=n, progress=progress)
        preds = out / f"preds-{Path(checkpoint).parent.name}-{folder.name}.csv"
        result = evaluate(Path(checkpoint), folder, preds, progress=progress)
        rows.append({"set": name, "renderer": s.renderer, "folder": str(folder), "predictions": str(preds),
                     **result["metrics"]})  # fmt: skip
    return rows


def format_rows(rows: list[dict[str, Any]], checkpoint: Path) -> str:
    lines = [
        f"model: {checkpoint}",
        "| set | renderer | images | 3-class | NG vs OK | escape | overkill | pin named | missing pins called OK "
        "| wrong NG/OK: dark housings | light housings | escapes: border pins (bent outward) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mp = r.get("missing_pins", {"n": 0, "escapes": 0})
        pin = f"{r['pin_accuracy']:.3f}" if "pin_accuracy" in r else "-"
        lines.append(
            f"| {r['set']} | {r['renderer']} | {r['n']} | {r['accuracy']:.3f} | {r['ng_ok_accuracy']:.3f} | "
            f"{r['escape_rate']:.2%} | {r['overkill_rate']:.2%} | {pin} | "
            f"{mp['escapes']} of {mp['n']} | {_tone_cell(r, 'dark')} | {_tone_cell(r, 'light')} | "
            f"{_border_cell(r.get('by_place', {}))} |"
        )
    return "\n".join(lines)


def _tone_cell(row: dict[str, Any], tone: str) -> str:
    t = row.get("by_housing", {}).get(tone)
    return f"{t['escapes'] + t['overkills']} of {t['n']}" if t else "-"


def _border_cell(places: dict[str, dict[str, int]]) -> str:
    """Escapes on border pins of the defects there, and of those the bends leaning outward."""
    if not places:
        return "-"
    border = [places.get(k, {"escapes": 0, "defective": 0}) for k in ("border", "border_out")]
    out = border[1]
    return (
        f"{sum(b['escapes'] for b in border)} of {sum(b['defective'] for b in border)} "
        f"({out['escapes']} of {out['defective']})"
    )


def totals(files: list[Path]) -> dict[str, dict[str, Any]]:
    """Per checkpoint, the sets and counts of the `score --json` files given: images, escapes of
    defective, overkills of good, wrong NG/OK calls, missing pins called OK. ValueError naming a
    file that is not such a record."""
    out: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"sets": [], "n": 0, "escapes": 0, "defective": 0, "overkills": 0, "good": 0, "missing": 0,
                 "missing_ok": 0, "by_housing": defaultdict(lambda: {"n": 0, "wrong": 0}),
                 "by_place": defaultdict(lambda: {"defective": 0, "escapes": 0})}
    )  # fmt: skip
    for f in files:
        try:
            record = json.loads(Path(f).read_text())
            checkpoint, rows = record["checkpoint"], record["rows"]
            for r in rows:
                t = out[checkpoint]
                t["sets"].append(f"{r['set']} {r['n']}")
                t["n"] += r["n"]
                for k, v in confusion_counts(r["confusion"]).items():  # older records lack the counts
                    t[k] += v
                t["missing"] += r.get("missing_pins", {}).get("n", 0)
                t["missing_ok"] += r.get("missing_pins", {}).get("escapes", 0)
                for tone, h in r.get("by_housing", {}).items():  # older records lack it
                    t["by_housing"][tone]["n"] += h["n"]
                    t["by_housing"][tone]["wrong"] += h["escapes"] + h["overkills"]
                for place, h in r.get("by_place", {}).items():  # older records lack it
                    for k in ("defective", "escapes"):
                        t["by_place"][place][k] += h[k]
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"{f}: not a record of crossrender score --json ({type(e).__name__}: {e})") from None
    for t in out.values():
        t["wrong"] = t["escapes"] + t["overkills"]
    return dict(out)


def _predictions(checkpoint: str, row: dict[str, Any], record: Path) -> Path:
    """The predictions CSV behind a `score --json` row: recorded in it, or (records written before
    it was) where score puts it by default."""
    if row.get("predictions"):
        return Path(row["predictions"])
    return record.parent / f"preds-{Path(checkpoint).parent.name}-{Path(row['folder']).name}.csv"


def _class_scores(path: Path) -> dict[str, list[float]]:
    try:
        with open(path, newline="") as f:
            return {r["file"]: [float(r[f"score_{c}"]) for c in CLASSES] for r in csv.DictReader(f)}
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"{path}: not a predictions CSV of training.evaluate ({type(e).__name__}: {e})") from None


def average(files: list[Path]) -> dict[str, Any]:
    """What the models of the `score --json` records would call together, their class scores
    averaged frame by frame and decided at the default thresholds, on each set every model was
    scored on: a record like score's (no pin naming: the CSVs keep the named pin, not the pin
    scores). ValueError naming a file that is not such a record or a set one model lacks."""
    by_model: dict[str, dict[str, tuple[dict[str, Any], Path]]] = defaultdict(dict)
    for f in files:
        try:
            record = json.loads(Path(f).read_text())
            for r in record["rows"]:
                by_model[record["checkpoint"]][r["folder"]] = (r, _predictions(record["checkpoint"], r, Path(f)))
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{f}: not a record of crossrender score --json ({type(e).__name__}: {e})") from None
    if len(by_model) < 2:
        raise ValueError(f"average needs the records of two models or more (got {len(by_model)})")
    folders = list(next(iter(by_model.values())))
    for ckpt, sets in by_model.items():
        if set(sets) != set(folders):
            raise ValueError(f"{ckpt}: scored on other sets than the first model ({sorted(sets)} vs {sorted(folders)})")
    rows = []
    for folder in folders:
        first = next(iter(by_model.values()))[folder][0]
        truth = read_labels(Path(folder) / "labels.csv")
        scores = [_class_scores(sets[folder][1]) for sets in by_model.values()]
        names = [n for n in truth if all(n in s for s in scores)]
        if len(names) < len(truth):
            raise ValueError(f"{folder}: {len(truth) - len(names)} frames lack a prediction of some model")
        mean = np.mean([[s[n] for n in names] for s in scores], axis=0)
        called, _ = decide(mean, np.zeros((len(names), 2)))
        m = metrics(np.array([truth[n][0] for n in names]), called)
        m |= breakdowns(Path(folder), [{"file": n, "label": CLASSES[c]} for n, c in zip(names, called, strict=True)])
        rows.append({"set": first["set"], "renderer": first["renderer"], "folder": folder, **m})
    return {"checkpoint": "average of " + " + ".join(by_model), "rows": rows}


def format_totals(tot: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| model | sets | images | escapes | overkills | wrong NG/OK | missing pins called OK "
        "| wrong NG/OK: dark housings | light housings | escapes: border pins (bent outward) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ckpt, t in tot.items():
        tones = [t["by_housing"].get(k) for k in ("dark", "light")]
        lines.append(
            f"| {ckpt} | {', '.join(t['sets'])} | {t['n']} | {t['escapes']} of {t['defective']} | "
            f"{t['overkills']} of {t['good']} | {t['wrong']} | {t['missing_ok']} of {t['missing']} | "
            + " | ".join(f"{h['wrong']} of {h['n']}" if h else "-" for h in tones)
            + f" | {_border_cell(t['by_place'])} |"
        )
    return "\n".join(lines)


def train_on(renderer: str, sets: list[str], part: str, n_blender: int | None, progress: bool) -> Path:
    """Train the default recipe on `renderer`'s frames (blender, or the renders plus Blender frames
    for mix) and return the checkpoint."""
    from training.train import resolve_config, train

    spec = load_part(part)
    extra: list[str] = [f"name=cross-{renderer}", f"part={part}"]
    if renderer != "procedural":
        folder = datasets.materialize(datasets.get("blender-train"), spec, n=n_blender, progress=progress)
        extra.append(f"data.{'folder' if renderer == 'blender' else 'mix_folder'}={folder}")
    cfg = resolve_config(None, None, extra + sets)
    summary = train(cfg, progress=progress)
    return Path(summary["run"]) / "model.safetensors"


def main(argv: list[str] | None = None) -> int:
    ap = command_parser("python -m training.crossrender", __doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sc = sub.add_parser("score", help="score a checkpoint on each renderer's test set")
    sc.add_argument(
        "--checkpoint",
        type=Path,
        default=Path("models/default/model.safetensors"),
        help="model weights to score (default: the shipped model, models/default/model.safetensors)",
    )
    to = sub.add_parser("total", help="add up score --json files per model: escapes, overkills, wrong calls")
    to.add_argument("files", type=Path, nargs="+", help="JSON files written by score --json")
    av = sub.add_parser(
        "average", help="what several models would call together (class scores averaged), from their score --json"
    )
    av.add_argument("files", type=Path, nargs="+", help="JSON files written by score --json, two models or more")
    av.add_argument("--json", type=Path, default=None, help="also write the rows as JSON (a record total reads)")
    tr = sub.add_parser("train", help="train on one renderer (or a mix), then score on each")
    tr.add_argument("--on", choices=TRAIN_ON, required=True, help="frames to train on")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="training setting (repeatable)")
    tr.add_argument("--blender-n", type=int, default=None, help="Blender training frames (default: the set's)")
    for p in (sc, tr):
        p.add_argument(
            "--sets", default=",".join(DEFAULT_SETS), help=f"sets to score on (known: {', '.join(datasets.SETS)})"
        )
        p.add_argument(
            "--n", type=int, default=None, help="score on the first N frames of each set's seed (quick look)"
        )
        p.add_argument("--part", default="default", help="part spec the sets are rendered from (default: default)")
        p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
        p.add_argument("--quiet", action="store_true", help="no progress bars, only the table")
    args = ap.parse_args(argv)
    if args.cmd == "total":
        try:
            print(format_totals(totals(args.files)))
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    if args.cmd == "average":
        try:
            record = average(args.files)
        except (ValueError, LabelsError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(format_rows(record["rows"], Path(record["checkpoint"])))
        return write_json(args.json, record)
    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    try:
        for name in names:
            datasets.get(name)
        if args.cmd == "train":
            checkpoint = train_on(args.on, args.set, args.part, args.blender_n, not args.quiet)
        else:
            checkpoint = args.checkpoint
        rows = score(checkpoint, names, args.part, args.n, progress=not args.quiet)
    except (datasets.DatasetError, CheckpointError, LabelsError, PartSpecError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_rows(rows, checkpoint))
    return write_json(args.json, {"checkpoint": str(checkpoint), "rows": rows})


if __name__ == "__main__":
    sys.exit(main())
