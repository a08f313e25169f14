"""python -m training.evaluate: score a checkpoint on a folder of 640x480 frames.

  python -m training.evaluate --checkpoint models/default/model.safetensors --images DIR --out preds.csv
      [--labels DIR/labels.csv] [--heatmaps OUTDIR] [--json metrics.json]

Writes one row per image (`file,label,pin,score_BENDNG,score_NUKENG,score_OK`; pin is the
predicted defective pin, 0 for OK). With labels it prints the confusion matrix, accuracy, escape
rate (a defective part called OK) and overkill rate (a good part called NG), the pin accuracy,
and, when the folder has the generator's meta.jsonl, the BENDNG/NUKENG confusion by bend
direction (PART.md: a pin bent towards the camera looks pushed back), the NG/OK errors by
housing tone (PART.md's dark housings against its white, ivory and beige ones) and the escapes by
where the defect is (inner pins, border pins, border pins bent out towards the housing's edge).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from models import overlay
from models.checkpoint import CheckpointError, TorchModel
from models.cli import command_parser, write_json
from models.labels import LabelsError, check_writable, write_predictions
from models.metrics import format_metrics
from models.part import CLASSES, PartSpec, PartSpecError, load_part, part_from_dict
from models.preprocess import InputSpec
from models.scoring import Batch, Outputs, score
from models.synth.dataset import read_meta


def annotate(
    frame: np.ndarray, heat: np.ndarray, ispec: InputSpec, label: str, pin: int, name: str, radius: int
) -> np.ndarray:
    """The frame as the station draws it (heatmap, defective pin circled), with the verdict on top."""
    out = overlay.heat_layer(frame, heat, ispec)
    if label != "OK":
        overlay.circle(out, overlay.locate(heat, ispec), label, pin, radius)
    text = f"{label}" + (f"  pin {pin}" if pin else "") + f"  ({name})"
    cv2.rectangle(out, (0, 0), (out.shape[1], 34), (0, 0, 0), -1)
    cv2.putText(out, text, (8, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.8, overlay.COLOURS_BGR[label], 2, cv2.LINE_AA)
    return out


def bend_direction(deg: float) -> str:
    """PART.md's axis: 90 = away from the camera, 270 = towards it."""
    d = deg % 360
    if 45 <= d < 135:
        return "away"
    if 225 <= d < 315:
        return "towards camera"
    return "sideways"


def evaluate(
    checkpoint: Path,
    images: Path,
    out: Path,
    labels: Path | None = None,
    heatmaps: Path | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> dict[str, Any]:
    """Score a checkpoint on a folder with the one scorer (models.scoring), write the predictions
    CSV (and an overlay per frame with `heatmaps`); metrics when the folder is labelled."""
    model = TorchModel.load(checkpoint)
    spec, ispec = model.spec, model.input_spec
    part = part_from_dict(spec["part"], source=f"{checkpoint} (part)") if "part" in spec else None
    n_pins = part.n_pins if part else None
    radius = overlay.pin_radius(part or load_part("default"))  # a checkpoint older than its part record
    check_writable(Path(out))
    if heatmaps:
        check_writable(Path(heatmaps), folder=True)

    def draw(b: Batch, outputs: Outputs, lab: np.ndarray, pin: np.ndarray) -> None:
        for k, name in enumerate(b.names):
            out_path = Path(heatmaps or ".") / (Path(name).stem + ".jpg")
            assert b.frames is not None
            img = annotate(b.frames[k], outputs[2][k], ispec, CLASSES[lab[k]], int(pin[k]), name, radius)
            if not cv2.imwrite(str(out_path), img):
                raise LabelsError(f"{out_path}: cannot write the heatmap image (disk full or not writable?)")

    scored = score(
        model,
        images,
        labels,
        n_pins,
        batch=batch_size,
        progress=progress,
        desc="evaluating",
        on_batch=draw if heatmaps else None,
        keep_frames=bool(heatmaps),
    )
    rows = scored.rows()
    out = write_predictions(Path(out), rows)
    result: dict[str, Any] = {"n": len(rows), "skipped": scored.skipped, "predictions": str(out)}
    m = scored.metrics()
    if m is not None:
        result["metrics"] = {**m, **breakdowns(Path(images), rows)}
    return result


def breakdowns(folder: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What a rendered folder's meta.jsonl lets us split the calls `rows` (file, label) by: bend
    direction, missing pins, housing tone, and where on the part the defect is (when its
    dataset.json names a part known here); nothing for a folder without it (relabelled frames)."""
    meta_path = Path(folder) / "meta.jsonl"
    if not meta_path.exists():
        return {}
    meta = {r["file"]: r for r in read_meta(meta_path)}
    out = {
        "bend_direction": _by_bend_direction(meta, rows),
        "missing_pins": missing_pins(meta, rows),
        "by_housing": by_housing(meta, rows),
    }
    part = _folder_part(Path(folder))
    if part is not None:
        out["by_place"] = by_place(meta, rows, part)
    return out


def _folder_part(folder: Path) -> PartSpec | None:
    """The part a rendered folder was drawn for (dataset.json names it), or None when that part
    is not known here or has changed since (its fingerprint differs)."""
    try:
        identity = json.loads((folder / "dataset.json").read_text())
        part = load_part(identity["part"])
    except (OSError, ValueError, KeyError, TypeError, PartSpecError):
        return None
    return part if part.fingerprint() == identity.get("part_fingerprint") else None


PLACES = {  # by_place's keys, in the order reports show them
    "inner": "inner pins",
    "border": "border pins, other defects",
    "border_out": "border pins bent outward",
}


def by_place(meta: dict[str, dict[str, Any]], rows: list[dict[str, Any]], part: PartSpec) -> dict[str, dict[str, int]]:
    """Defective frames by where the defect is: an inner pin, a border pin (back row, outer
    columns), or a border pin bent out towards the housing's edge (PartSpec.leans_outward);
    defects and escapes (called OK) of each. A frame is placed by its labelled pin (a procedural
    training render with several defects, by the first)."""
    border = set(part.border_pins())
    table: dict[str, dict[str, int]] = {}
    for r in rows:
        m = meta.get(r["file"])
        if not m or m["label"] == "OK":
            continue
        pin = int(m["pin"])
        place = "inner"
        if pin in border:
            out = m["label"] == "BENDNG" and part.leans_outward(pin, m["params"]["bend_dir_deg"])
            place = "border_out" if out else "border"
        t = table.setdefault(place, {"defective": 0, "escapes": 0})
        t["defective"] += 1
        t["escapes"] += r["label"] == "OK"
    return table


def _by_bend_direction(meta: dict[str, dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """How BENDNG images are called, split by which way the pin leans."""
    table: dict[str, dict[str, int]] = {}
    for r in rows:
        m = meta.get(r["file"])
        if not m or m["label"] != "BENDNG":
            continue
        d = bend_direction(m["params"]["bend_dir_deg"])
        table.setdefault(d, {c: 0 for c in CLASSES})[r["label"]] += 1
    return table


MISSING_HEIGHT = 0.1  # a NUKENG pin at or below this share of its height: only the hole (or a stub) shows


def missing_pins(meta: dict[str, dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How pins that are (nearly) gone are called: the most obvious defect there is, never OK."""
    called = [
        r["label"]
        for r in rows
        if (m := meta.get(r["file"])) and m["label"] == "NUKENG" and m["params"]["nuke_height"] <= MISSING_HEIGHT
    ]
    escapes = sum(label == "OK" for label in called)
    return {"n": len(called), "escapes": escapes, "escape_rate": escapes / max(1, len(called))}


def housing_tone(params: dict[str, Any]) -> str | None:
    """'dark' or 'light' (PART.md: most housings black or dark grey, some white, ivory or beige),
    from a frame's parameters in either renderer's meta.jsonl; None when they do not say."""
    if isinstance(params.get("housing"), dict) and "kind" in params["housing"]:  # the Blender renderer
        return "dark" if params["housing"]["kind"] == "dark" else "light"
    if "housing_colour" in params:  # the procedural one (BGR 0-255): lighter than mid-grey is light
        return "light" if float(np.mean(params["housing_colour"])) > 127.5 else "dark"
    return None


def by_housing(meta: dict[str, dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per housing tone: frames, defective ones and those called OK (escapes), good ones and those
    called NG (overkills). A light housing shows the pins with less contrast and their shadows."""
    table: dict[str, dict[str, int]] = {}
    for r in rows:
        m = meta.get(r["file"])
        tone = housing_tone(m["params"]) if m else None
        if tone is None:
            continue
        t = table.setdefault(tone, {"n": 0, "defective": 0, "escapes": 0, "good": 0, "overkills": 0})
        t["n"] += 1
        if m["label"] == "OK":
            t["good"] += 1
            t["overkills"] += r["label"] != "OK"
        else:
            t["defective"] += 1
            t["escapes"] += r["label"] == "OK"
    return table


def format_by_place(table: dict[str, dict[str, int]]) -> str:
    lines = ["escapes by where the defect is"]
    for key, what in PLACES.items():
        if key in table:
            t = table[key]
            lines.append(f"  {what:<36} escapes {t['escapes']} of {t['defective']}")
    return "\n".join(lines)


def format_by_housing(table: dict[str, dict[str, int]]) -> str:
    lines = ["NG vs OK by housing tone"]
    for tone, t in sorted(table.items()):
        lines.append(
            f"  {tone:<6} n={t['n']:<5} escapes {t['escapes']} of {t['defective']}  "
            f"overkills {t['overkills']} of {t['good']}  wrong NG/OK {t['escapes'] + t['overkills']}"
        )
    return "\n".join(lines)


def print_report(result: dict[str, Any]) -> None:
    print(
        f"{result['n']} images scored -> {result['predictions']}"
        + (f" ({len(result['skipped'])} skipped)" if result["skipped"] else "")
    )
    m = result.get("metrics")
    if not m:
        return
    print()
    print(format_metrics(m))
    if m.get("missing_pins", {}).get("n"):
        mp = m["missing_pins"]
        print(f"missing pins (height <= {MISSING_HEIGHT:.0%}): {mp['escapes']} of {mp['n']} called OK")
    if m.get("by_housing"):
        print("\n" + format_by_housing(m["by_housing"]))
    if m.get("by_place"):
        print("\n" + format_by_place(m["by_place"]))
    if m.get("bend_direction"):
        print("\nBENDNG images by bend direction -> predicted")
        for d, counts in sorted(m["bend_direction"].items()):
            n = sum(counts.values())
            print(f"  {d:<16} n={n:<5}" + "  ".join(f"{c} {v / max(1, n):.1%}" for c, v in counts.items()))


def main(argv: list[str] | None = None) -> int:
    ap = command_parser("python -m training.evaluate", __doc__)
    ap.add_argument(
        "--checkpoint",
        type=Path,
        default=Path("models/default/model.safetensors"),
        help="model weights (default: %(default)s)",
    )
    ap.add_argument("--images", type=Path, required=True, help="folder of 640x480 frames (or a folder with images/)")
    ap.add_argument("--labels", type=Path, default=None, help="labels.csv (default: DIR/labels.csv when present)")
    ap.add_argument("--out", type=Path, default=Path("preds.csv"), help="predictions CSV to write")
    ap.add_argument("--heatmaps", type=Path, default=None, help="write an overlay image per frame here")
    ap.add_argument("--json", type=Path, default=None, help="also write the metrics as JSON")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    try:
        if args.json:
            check_writable(args.json)
        result = evaluate(args.checkpoint, args.images, args.out, args.labels, args.heatmaps, progress=not args.quiet)
    except (CheckpointError, LabelsError, PartSpecError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_report(result)
    return write_json(args.json, result)


if __name__ == "__main__":
    sys.exit(main())
