"""python -m edge_app.predict: run a model bundle over a folder of frames, torch-free.

  python -m edge_app.predict --model models/default --images DIR --out preds.csv
      [--backend openvino|onnxruntime] [--precision int8|fp32] [--labels CSV] [--part default]

The station's runtime (models.runtime) on a folder: the same bundle, preprocessing and verdict
rule as on the line. Writes one row per image (`file,label,pin,score_BENDNG,score_NUKENG,score_OK`;
pin is the suspected pin, 0 for OK), the same columns as `python -m training.evaluate` writes for
a checkpoint. DIR is a folder of 640x480 frames, or a labelled folder (DIR/images + DIR/labels.csv).
With labels it prints the confusion matrix, accuracy, escape rate (a defective part called OK)
and overkill rate (a good part called NG). An unreadable image is skipped with a warning; a
bundle, labels file or output path that cannot be used, or a folder where no image is readable,
ends with a one-line error naming the file, exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from models.bundle import Backend, BundleError, Precision
from models.cli import guarded
from models.labels import LabelsError, check_writable, list_images, read_labels, write_predictions
from models.metrics import format_metrics, metrics
from models.part import CLASSES, PartSpecError, part_from_dict
from models.preprocess import InputSpec, readable_frames
from models.runtime import Runtime

InputError = LabelsError  # a folder or labels file that cannot be used


# ---------------------------------------------------------------------------------------------
# Frames


def read_frames(
    root: Path, names: list[str], spec: InputSpec, batch: int
) -> Iterator[tuple[list[str], list[np.ndarray]]]:
    """Batches of (names, frames); an unreadable or wrong-size image is skipped with a warning."""
    chunk: list[str] = []
    frames: list[np.ndarray] = []
    for name, img in readable_frames(root, names, spec):
        chunk.append(name)
        frames.append(img)
        if len(chunk) == batch:
            yield chunk, frames
            chunk, frames = [], []
    if chunk:
        yield chunk, frames


# ---------------------------------------------------------------------------------------------
# The run


def predict_folder(
    runtime: Runtime,
    images: Path,
    out: Path,
    labels: Path | None = None,
    batch: int = 8,
    progress: bool = True,
) -> dict[str, Any]:
    """Score every image in `images`, write the predictions CSV; metrics when labels exist."""
    root, names = list_images(images)
    labels_path = labels or (Path(images) / "labels.csv" if (Path(images) / "labels.csv").exists() else None)
    part = runtime.info.get("part")  # checked by read_bundle; labels name pins of this part
    n_pins = part_from_dict(part, source="bundle part").n_pins if part else None
    truth = read_labels(labels_path, n_pins) if labels_path else None
    check_writable(Path(out))
    rows: list[dict[str, Any]] = []
    from tqdm import tqdm

    bar = tqdm(total=len(names), desc=f"predicting ({runtime.key})", unit="img", disable=not progress)
    for chunk, frames in read_frames(root, names, runtime.input_spec, batch):
        for name, v in zip(chunk, runtime.infer(frames), strict=True):
            rows.append({"file": name, "label": v.label, "pin": v.pin, **{f"score_{c}": v.scores[c] for c in CLASSES}})
        bar.update(len(chunk))
    bar.close()
    if not rows:
        raise InputError(f"{root}: none of the {len(names)} images could be read (see the warnings); nothing written")
    out = write_predictions(Path(out), rows)
    result: dict[str, Any] = {"n": len(rows), "skipped": len(names) - len(rows), "predictions": str(out)}
    if truth is not None:
        known = [r for r in rows if r["file"] in truth]
        result["unlabelled"] = len(rows) - len(known)
        result["metrics"] = metrics(
            np.array([truth[r["file"]][0] for r in known], int),
            np.array([CLASSES.index(r["label"]) for r in known]),
            np.array([truth[r["file"]][1] for r in known], int),
            np.array([r["pin"] for r in known], int),
        )
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m edge_app.predict",
        description="Run a model bundle (from python -m export.quantize) over a folder of frames and write a CSV.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    ap.add_argument("--model", type=Path, default=Path("models/default"), help="bundle folder (has bundle.json)")
    ap.add_argument("--images", type=Path, required=True, help="folder of 640x480 frames (or a folder with images/)")
    ap.add_argument("--out", type=Path, default=Path("preds.csv"), help="predictions CSV to write")
    ap.add_argument(
        "--backend",
        choices=[b.value for b in Backend],
        default=None,
        help="default: the fastest model that agrees with FP32 on this machine (measured once, then cached)",
    )
    ap.add_argument("--precision", choices=[p.value for p in Precision], default=None)
    ap.add_argument("--labels", type=Path, default=None, help="labels.csv (default: DIR/labels.csv when present)")
    ap.add_argument("--part", default="default", help="the part these frames show; a bundle for another is refused")
    ap.add_argument("--batch", type=int, default=8, help="frames per inference call")
    ap.add_argument("--threads", type=int, default=None, help="inference threads (default: all cores)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        ap.error(f"--threads {args.threads}: use 1 or more (or leave it out for all cores)")
    if args.batch < 1:
        ap.error(f"--batch {args.batch}: use 1 or more")

    def score() -> int:
        rt = Runtime(
            args.model, backend=args.backend, precision=args.precision, expected_part=args.part, threads=args.threads
        )
        print(f"model: {rt.describe()}\nchoice: {rt.choice_reason}", file=sys.stderr)
        result = predict_folder(rt, args.images, args.out, args.labels, args.batch, progress=not args.quiet)
        print(
            f"{result['n']} images scored -> {result['predictions']}"
            + (f" ({result['skipped']} skipped, see warnings)" if result["skipped"] else "")
        )
        if "metrics" in result:
            if result["unlabelled"]:
                print(f"{result['unlabelled']} scored images have no label and are left out of the metrics")
            print()
            print(format_metrics(result["metrics"]))
        return 0

    return guarded(score, {(BundleError, PartSpecError, InputError): 2})


if __name__ == "__main__":
    sys.exit(main())
