"""Adapt the model to the line: fine-tune on relabelled frames, and hand it over only if it is better.

  python -m training.adapt --folder ARCHIVE_EXPORT --out runs/adapted
  python -m training.adapt --folder DIR --base models/default/model.safetensors --out OUT --no-export

DIR is a labelled folder (images/ + labels.csv with file,label,pin and, where a person clicked the
pin, x,y; meta.jsonl with pin positions is used where present), e.g. what the station's review
dialog exports. Steps, each with progress:

  1. split DIR into frames to train on and frames held back to score on (by class, seeded); where
     a defect's pin is named but neither clicked nor positioned, find it with the base model's
     pin map, so the dense and pin losses apply to it too (--no-locate: the verdict only)
  2. score the base model on the held-back frames and on our acceptance set (fresh renders)
  3. fine-tune the base on the training frames (each --repeat times an epoch) mixed with fresh
     renders and, where they are on disk, the sets the base trained on beside its renders (the
     shipped model's Blender frames, once an epoch; --no-base-frames: without), so it keeps what
     it knew
  4. score the adapted model the same way and print the before/after table
  5. refuse (exit 3, nothing handed over) if it is worse than the base on either: lower 3-class
     accuracy or more escapes on the held-back frames, or more than --max-drop points lower
     accuracy or more escapes than --max-escape-rise on the acceptance set
  6. write OUT/model.safetensors, OUT/MODEL_CARD.md, OUT/adapt.json, and the bundle in OUT/bundle
     through export.quantize and its INT8 gate (skip with --no-export), with the export choices
     the base's own bundle recorded (float stem, reduced range, calibration, models, gate limits)

Then: python -m edge_app --switch-model OUT/bundle (or the station's Model menu).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from models.bundle import export_flags
from models.checkpoint import CheckpointError, read_spec
from models.files import atomic_write
from models.labels import LABEL_FIELDS, LabelsError, read_clicks, read_labels
from models.part import CLASSES, PartSpecError, load_part
from training import datasets
from training.data import token_centres
from training.evaluate import evaluate

EXIT_REFUSED = 3


class AdaptError(ValueError):
    """Input adapt cannot use; one line naming the file."""


def export_argv(base: Path, out: Path) -> list[str]:
    """export.quantize's arguments for the adapted model: the choices recorded in the base's
    bundle.json (beside its checkpoint, as in models/default), so a model whose INT8 stem failed
    the gate is exported with its stem in float again; quantize's defaults where there is none.
    An INT8 model that fails the gate is left out (--drop-failing): the line gets the adapted model
    in the precisions that hold, rather than no bundle at all."""
    argv = ["--checkpoint", str(out / "model.safetensors"), "--out", str(out / "bundle"), "--drop-failing"]
    bundle = Path(base).parent / "bundle.json"
    try:
        info = json.loads(bundle.read_text())
    except (OSError, ValueError):
        return argv
    if not isinstance(info, dict):
        return argv
    argv += export_flags(info)
    if info.get("name"):
        argv += ["--name", f"{info['name']}-adapted"]
    return argv


def base_sets(tc: dict[str, Any], part: Any) -> tuple[str, int | None, list[Path]] | None:
    """The named training sets the base saw beside its renders (its data.mix_set, e.g. the shipped
    model's Blender frames), with their folders; None when it saw none. Folders not on disk (or
    not complete) are left out of the list: rendering a Blender set takes an hour."""
    d = tc.get("data") or {}
    spec, n = d.get("mix_set"), d.get("mix_n")
    if not spec:
        return None
    present = []
    for name in str(spec).split(","):
        try:
            folder = datasets.folder_of(datasets.get(name.strip()), part, n=n)
        except datasets.DatasetError:
            continue
        if (folder / "dataset.json").exists():
            present.append(folder)
    return str(spec), n, present


def split(folder: Path, out: Path, holdout: float, seed: int) -> tuple[Path, Path]:
    """Copy `folder`'s frames into out/train and out/holdout, `holdout` of each class held back."""
    labels = read_labels(folder / "labels.csv")
    clicks = read_clicks(folder / "labels.csv")
    if len(labels) < 4:
        raise AdaptError(f"{folder / 'labels.csv'}: {len(labels)} labelled frames; adapting needs at least 4")
    meta: dict[str, str] = {}
    if (folder / "meta.jsonl").exists():
        for line in (folder / "meta.jsonl").read_text().splitlines():
            if line.strip():
                meta[json.loads(line)["file"]] = line
    rng = random.Random(seed)
    parts: dict[str, list[str]] = {"train": [], "holdout": []}
    for cls in range(len(CLASSES)):
        files = sorted(f for f, (c, _) in labels.items() if c == cls)
        rng.shuffle(files)
        k = round(len(files) * holdout) if len(files) > 1 else 0
        parts["holdout"] += files[:k]
        parts["train"] += files[k:]
    dirs = []
    for name, files in parts.items():
        d = out / name
        shutil.rmtree(d, ignore_errors=True)
        (d / "images").mkdir(parents=True)
        for f in sorted(files):
            src = folder / "images" / f
            if not src.exists():
                raise AdaptError(f"{src}: listed in labels.csv but missing")
            shutil.copy2(src, d / "images" / f)
        _write_labels(d / "labels.csv", {f: labels[f] for f in sorted(files)}, clicks)
        if meta and all(f in meta for f in files):
            atomic_write(d / "meta.jsonl", "".join(meta[f] + "\n" for f in sorted(files)))
        dirs.append(d)
    if not parts["holdout"]:
        raise AdaptError(f"{folder}: nothing held back to score on (raise --holdout or add frames)")
    return dirs[0], dirs[1]


def locate_named_pins(ckpt: Path, folder: Path, min_belief: float = 0.5) -> dict[str, tuple[float, float]]:
    """Where the pin a person named sits on each defective frame that has neither a click nor pin
    positions: the part's grid as the base model's pin map fits it to the frame (the tokens it
    believes are that pin slot, weighted). Frames where no token is at least `min_belief` sure
    are left out. Returns {file: (x, y) frame pixels}."""
    import torch

    from models.checkpoint import load_checkpoint
    from models.preprocess import InputSpec, crop_resize, normalize, read_frame

    if (folder / "meta.jsonl").exists():
        return {}
    clicks = read_clicks(folder / "labels.csv")
    todo = [(f, pin) for f, (c, pin) in read_labels(folder / "labels.csv").items() if pin and f not in clicks]
    if not todo:
        return {}
    model, spec = load_checkpoint(ckpt)
    ispec = InputSpec.from_dict(spec["input"])
    centres = token_centres(ispec)
    found: dict[str, tuple[float, float]] = {}
    for k in tqdm(range(0, len(todo), 32), desc="locating named pins", unit="batch"):
        chunk = todo[k : k + 32]
        x = torch.from_numpy(
            normalize([crop_resize(read_frame(folder / "images" / f, ispec), ispec) for f, _ in chunk], ispec)
        )
        with torch.no_grad():
            belief = model.forward_features(x)[2].softmax(-1).numpy()  # (B, T, P + 1)
        for (f, pin), b in zip(chunk, belief, strict=True):
            w = b[:, pin]
            if w.max() < min_belief:
                continue
            w = np.where(w >= 0.5 * w.max(), w, 0.0)
            xy = ispec.input_to_frame((centres * w[:, None]).sum(0) / w.sum())
            found[f] = (float(xy[0]), float(xy[1]))
    return found


def write_clicks(folder: Path, clicks: dict[str, tuple[float, float]]) -> None:
    """Add `clicks` to labels.csv's x,y (a click already there stays)."""
    have = read_clicks(folder / "labels.csv")
    _write_labels(folder / "labels.csv", read_labels(folder / "labels.csv"), {**clicks, **have})


def _write_labels(path: Path, labels: dict[str, tuple[int, int]], clicks: dict[str, tuple[float, float]]) -> None:
    """labels.csv (file,label,pin,x,y) for `labels` (file -> (class index, pin)), x,y from `clicks`."""
    rows = [",".join(LABEL_FIELDS)]
    for f, (c, pin) in labels.items():
        x, y = (f"{v:.1f}" for v in clicks[f]) if f in clicks else ("", "")
        rows.append(f"{f},{CLASSES[c]},{pin},{x},{y}")
    atomic_write(path, "\n".join(rows) + "\n")


def _score(ckpt: Path, folder: Path, preds: Path) -> dict[str, Any]:
    return evaluate(ckpt, folder, preds, progress=False)["metrics"]


def verdict(before: dict[str, dict], after: dict[str, dict], max_drop: float, max_escape_rise: float) -> list[str]:
    """Why the adapted model must not be handed over (empty: it may)."""
    why = []
    b, a = before["line"], after["line"]
    if a["accuracy"] < b["accuracy"]:
        why.append(f"held-back line frames: accuracy {a['accuracy']:.4f} < base {b['accuracy']:.4f}")
    if a["escape_rate"] > b["escape_rate"]:
        why.append(f"held-back line frames: escapes {a['escape_rate']:.2%} > base {b['escape_rate']:.2%}")
    b, a = before["acceptance"], after["acceptance"]
    if a["accuracy"] < b["accuracy"] - max_drop / 100:
        why.append(
            f"acceptance set: accuracy {a['accuracy']:.4f} more than {max_drop} points below {b['accuracy']:.4f}"
        )
    if a["escape_rate"] > b["escape_rate"] + max_escape_rise / 100:
        why.append(f"acceptance set: escapes {a['escape_rate']:.2%} > base {b['escape_rate']:.2%}")
    return why


def _rate(m: dict[str, Any], what: str, of: str) -> str:
    """The rate with its count, "5.00% (3 of 60)": on held-back frames one frame is points."""
    rate = f"{m[what + '_rate']:.2%}"
    return f"{rate} ({m[what + 's']} of {m[of]})" if what + "s" in m and of in m else rate


def table(before: dict[str, dict], after: dict[str, dict]) -> str:
    lines = ["| set | model | n | 3-class | escape | overkill | pin named |", "|---|---|---|---|---|---|---|"]
    for s in ("line", "acceptance"):
        for who, m in (("base", before[s]), ("adapted", after[s])):
            pin = m.get("pin_accuracy", float("nan"))
            lines.append(
                f"| {s} | {who} | {m['n']} | {m['accuracy']:.4f} | {_rate(m, 'escape', 'defective')} | "
                f"{_rate(m, 'overkill', 'good')} | {pin:.3f} |"
            )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m training.adapt",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--folder", type=Path, required=True, help="relabelled frames: images/ + labels.csv")
    ap.add_argument("--base", type=Path, default=Path("models/default/model.safetensors"), help="model to adapt")
    ap.add_argument("--out", type=Path, required=True, help="folder for the adapted model, card and bundle")
    ap.add_argument("--holdout", type=float, default=0.3, help="share of each class held back to score on (0.3)")
    ap.add_argument("--renders", type=int, default=1500, help="fresh renders mixed in (default 1500)")
    ap.add_argument("--epochs", type=int, default=4, help="fine-tuning epochs (default 4)")
    ap.add_argument(
        "--repeat",
        type=int,
        default=4,
        help="each line frame is trained on this many times an epoch, beside the renders (default 4, "
        "chosen in docs/ablation.md)",
    )
    ap.add_argument("--acceptance-n", type=int, default=1500, help="acceptance-set frames scored (default 1500)")
    ap.add_argument("--max-drop", type=float, default=0.5, help="acceptance accuracy points it may lose (0.5)")
    ap.add_argument("--max-escape-rise", type=float, default=0.0, help="acceptance escape points it may add (0)")
    ap.add_argument("--seed", type=int, default=0, help="split and training seed")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="training setting (repeatable)")
    ap.add_argument("--no-export", action="store_true", help="hand over the checkpoint only (no bundle)")
    ap.add_argument(
        "--no-base-frames", dest="base_frames", action="store_false",
        help="do not mix in the training sets the base saw beside its renders (the shipped model's Blender "
        "frames, once an epoch, when they are on disk)",
    )  # fmt: skip
    ap.add_argument(
        "--no-locate",
        dest="locate",
        action="store_false",
        help="do not locate named-but-unclicked pins with the base model (they then train the verdict only)",
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from training.train import resolve_config, train

    out: Path = args.out
    try:
        if not (0 < args.holdout < 1):
            raise AdaptError(f"--holdout must be between 0 and 1, got {args.holdout}")
        if not (args.folder / "labels.csv").exists():
            raise AdaptError(f"{args.folder / 'labels.csv'}: missing (a labelled folder has images/ and labels.csv)")
        base_spec = read_spec(args.base)
        part = load_part(base_spec.get("part", {}).get("name", "default"))
        tc = base_spec.get("train_config", {})
        sets = [
            f"init_from={args.base}",
            "name=adapt",
            f"out={out / 'runs'}",
            f"part={part.name}",
            f"model={base_spec['model_name']}",
            f"model_overrides={json.dumps(tc.get('model_overrides', {}))}",
            f"input={json.dumps(tc.get('input', {}))}",
            f"data.mix_folder={out / 'split' / 'train'}",  # checked now; set to what split() makes below
            f"data.n={args.renders}",
            f"epochs={args.epochs}",
            f"data.mix_repeat={args.repeat}",
            f"seed={args.seed}",
        ]
        kept = base_sets(tc, part) if args.base_frames else None
        if kept and len(kept[2]) == len(kept[0].split(",")):
            sets += [f"data.keep_set={kept[0]}", f"data.keep_n={json.dumps(kept[1])}"]
        elif kept:
            print(f"note: the base trained on {kept[0]} too, not all on disk here: fine-tuning without them "
                  "(it may forget some of what it knew of them; python -m training.train --preset both-renderers "
                  "renders them)")  # fmt: skip
        sets += args.set
        cfg = resolve_config("continue", None, sets)  # a bad --set or --repeat fails here, before any work
        print(f"[1/6] splitting {args.folder} ({args.holdout:.0%} of each class held back)")
        train_dir, hold_dir = split(args.folder, out / "split", args.holdout, args.seed)
        cfg.data.mix_folder = str(train_dir)
        print("[2/6] scoring the base model")
        acc_set = datasets.materialize(datasets.get("test-allstyles"), part, n=args.acceptance_n)
        before = {
            "line": _score(args.base, hold_dir, out / "preds" / "base-line.csv"),
            "acceptance": _score(args.base, acc_set, out / "preds" / "base-acceptance.csv"),
        }
        located = locate_named_pins(args.base, train_dir) if args.locate else {}
        if located:
            write_clicks(train_dir, located)
            print(f"      located {len(located)} named pins with the base model's pin map (no click, no positions)")
        repeat = cfg.data.mix_repeat  # (a --set may have changed it)
        also = f" + the base's {cfg.data.keep_set}" if cfg.data.keep_set else ""
        if also and cfg.data.keep_per_epoch:
            also += f" ({cfg.data.keep_per_epoch} of its frames an epoch)"
        print(
            f"[3/6] fine-tuning on {train_dir} (x{repeat} an epoch) + {cfg.data.n} renders{also}, {cfg.epochs} epochs"
        )
        summary = train(cfg, progress=True)
        ckpt = Path(summary["run"]) / "model.safetensors"
        print("[4/6] scoring the adapted model")
        after = {
            "line": _score(ckpt, hold_dir, out / "preds" / "adapted-line.csv"),
            "acceptance": _score(ckpt, acc_set, out / "preds" / "adapted-acceptance.csv"),
        }
    except (AdaptError, LabelsError, CheckpointError, PartSpecError, datasets.DatasetError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table(before, after))
    why = verdict(before, after, args.max_drop, args.max_escape_rise)
    record = {"base": str(args.base), "folder": str(args.folder), "run": str(ckpt.parent), "before": before,
              "after": after, "refused": why, "pins_located": len(located)}  # fmt: skip
    atomic_write(out / "adapt.json", json.dumps(record, indent=2) + "\n")
    if why:
        print("[5/6] refused, nothing handed over: " + "; ".join(why), file=sys.stderr)
        print(f"the adapted run stays in {ckpt.parent} for inspection", file=sys.stderr)
        return EXIT_REFUSED
    print("[5/6] better than the base on both: handing it over")
    shutil.copyfile(ckpt, out / "model.safetensors")
    card = (
        f"# Adapted model\n\nBase: `{args.base}`. Line frames: `{args.folder}` "
        f"({args.holdout:.0%} held back, each trained on {repeat}x an epoch), fine-tuned {cfg.epochs} epochs "
        f"with {cfg.data.n} fresh renders "
        f"(`python -m training.adapt`).\n\n{table(before, after)}\n"
    )
    atomic_write(out / "MODEL_CARD.md", card)
    if args.no_export:
        print(f"[6/6] skipped the export (--no-export); model: {out / 'model.safetensors'}")
        return 0
    argv = export_argv(args.base, out)
    print("[6/6] exporting the bundle through export.quantize's INT8 gate: " + " ".join(argv))
    done = subprocess.run([sys.executable, "-m", "export.quantize", *argv])
    if done.returncode != 0:
        print(f"error: the export failed (exit {done.returncode}); the model is in {out}", file=sys.stderr)
        return done.returncode
    print(f"adapted bundle: {out / 'bundle'}  (station: python -m edge_app --switch-model {out / 'bundle'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
