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
from pathlib import Path
from typing import Any

from edge_app.settings import default_model_dir
from models.bundle import Backend, BundleError, Precision
from models.cli import guarded
from models.labels import LabelsError, check_writable, write_predictions
from models.metrics import format_metrics
from models.part import PartSpecError, part_from_dict
from models.runtime import Runtime
from models.scoring import score

InputError = LabelsError  # a folder or labels file that cannot be used


def predict_folder(
    runtime: Runtime,
    images: Path,
    out: Path,
    labels: Path | None = None,
    batch: int = 8,
    progress: bool = True,
) -> dict[str, Any]:
    """Score every image in `images` with the one scorer (models.scoring), write the predictions
    CSV; metrics when labels exist."""
    part = runtime.info.get("part")  # checked by read_bundle; labels name pins of this part
    n_pins = part_from_dict(part, source="bundle part").n_pins if part else None
    check_writable(Path(out))
    scored = score(runtime, images, labels, n_pins, batch=batch, progress=progress, desc=f"predicting ({runtime.key})")
    out = write_predictions(Path(out), scored.rows())
    result: dict[str, Any] = {"n": len(scored), "skipped": len(scored.skipped), "predictions": str(out)}
    if scored.truth is not None:
        result["unlabelled"] = scored.unlabelled
        result["metrics"] = scored.metrics()
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m edge_app.predict",
        description="Run a model bundle (from python -m export.quantize) over a folder of frames and write a CSV.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    ap.add_argument(
        "--model",
        type=Path,
        default=default_model_dir(),
        help="bundle folder (has bundle.json; default: the shipped model, wherever it is installed)",
    )
    ap.add_argument("--images", type=Path, required=True, help="folder of 640x480 frames (or a folder with images/)")
    ap.add_argument("--out", type=Path, default=Path("preds.csv"), help="predictions CSV to write")
    ap.add_argument(
        "--backend",
        choices=[b.value for b in Backend],
        default=None,
        help="default: the fastest model that agrees with FP32 on this machine (measured once, then cached)",
    )
    ap.add_argument(
        "--precision",
        choices=[p.value for p in Precision],
        default=None,
        help="default: as --backend chooses; int8 or fp32 forces one",
    )
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
