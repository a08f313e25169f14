"""python -m export.quantize: turn a trained checkpoint into the bundle the station runs.

  python -m export.quantize                                   # models/default/model.safetensors -> models/default
  python -m export.quantize --checkpoint runs/x/model.safetensors --out bundles/x
  python -m export.quantize --calib frames/ --eval labelled/   # your own frames instead of renders

What it does, in order (each step prints its progress):
  1. loads the checkpoint (weights + model spec: input spec, part, thresholds, provenance)
  2. renders 300 calibration frames and 600 held-out evaluation frames (another seed), or reads
     --calib / --eval folders
  3. FP32 ONNX (input "input", outputs scores, pins, heatmap; dynamic batch)
  4. INT8 ONNX: ONNX Runtime static QDQ of the conv stem and the transformer's linear layers,
     per channel
  5. OpenVINO IR FP32, and INT8 with NNCF (transformer model type); in both INT8 models the
     output heads stay float (--float-stem keeps the conv stem float too)
  6. parity: torch, ONNX Runtime FP32 and OpenVINO FP32 must agree within 1e-3 on the same frames
  7. accuracy of every model on the evaluation set (accuracy, NG/OK accuracy, escape and overkill
     rate), and the gate: an INT8 model may lose at most --max-drop accuracy points against the
     FP32 model of its backend, and may not raise the escape rate
  8. only then writes the bundle (model files, 24 self-check frames the station chooses its model
     on, bundle.json with sha256s) into --out

Exit codes: 0 written; 1 a check failed (the output folder is left as it was); 2 bad input.
Takes a few minutes on a 2-core PC for the default model.
"""

from __future__ import annotations

import argparse
import os
import sys

from export.build import ALL_MODELS, ExportConfig, ExportError, GateFailed, build_bundle
from models.part import PartSpecError


def _models(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in ALL_MODELS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown model(s) {', '.join(bad)}; choose from {', '.join(ALL_MODELS)}")
    return items


def main(argv: list[str] | None = None) -> int:
    d = ExportConfig()
    ap = argparse.ArgumentParser(
        prog="python -m export.quantize",
        description="Export a checkpoint to FP32/INT8 ONNX and OpenVINO IR, check parity and INT8 accuracy, "
        "and write a self-describing model bundle for the station.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    ap.add_argument("--checkpoint", default=d.checkpoint, help="trained checkpoint (default: %(default)s)")
    ap.add_argument("--out", default=d.out, help="bundle folder to write (default: %(default)s)")
    ap.add_argument(
        "--models",
        type=_models,
        default=d.models,
        help="comma-separated subset of " + ",".join(ALL_MODELS) + " (onnxruntime/fp32 is always built)",
    )
    ap.add_argument("--calib", default=None, help="folder of frames to calibrate on (default: render --calib-n)")
    ap.add_argument("--calib-n", type=int, default=d.calib_n, help="rendered calibration frames (default: %(default)s)")
    ap.add_argument("--calib-seed", type=int, default=d.calib_seed)
    ap.add_argument("--eval", default=None, help="labelled folder for the accuracy gate (default: render --eval-n)")
    ap.add_argument(
        "--eval-n",
        type=int,
        default=d.eval_n,
        help="rendered evaluation frames (default: %(default)s; 0 = no accuracy check, needs --no-gate)",
    )
    ap.add_argument("--eval-seed", type=int, default=d.eval_seed)
    ap.add_argument(
        "--max-drop",
        type=float,
        default=d.max_drop,
        help="accuracy points INT8 may lose against FP32 (default: %(default)s)",
    )
    ap.add_argument(
        "--max-escape-rise",
        type=float,
        default=d.max_escape_rise,
        help="escape-rate points INT8 may add (default: %(default)s)",
    )
    ap.add_argument(
        "--no-gate",
        action="store_true",
        help="report the INT8 accuracy but write the bundle even if it fails (parity still must pass)",
    )
    ap.add_argument("--ort-calibration", choices=["minmax", "percentile", "entropy"], default=d.ort_calibration)
    ap.add_argument(
        "--float-stem",
        action="store_true",
        help="keep the conv stem in float in both INT8 models: slower (the stem is ~40%% of the float time), "
        "for a model whose INT8 stem fails the accuracy gate",
    )
    ap.add_argument(
        "--reduce-range",
        action="store_true",
        help="7-bit ORT weights, for target CPUs without VNNI (avoids u8*s8 saturation)",
    )
    ap.add_argument("--name", default=None, help="bundle name shown at the station (default: the training run's)")
    ap.add_argument("--threads", type=int, default=0, help="threads for torch and inference (default: all cores)")
    ap.add_argument("--workers", type=int, default=d.workers, help="rendering processes (default: %(default)s)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars (step lines are still printed)")
    args = ap.parse_args(argv)
    cfg = ExportConfig(
        checkpoint=args.checkpoint,
        out=args.out,
        models=args.models,
        calib=args.calib,
        calib_n=args.calib_n,
        calib_seed=args.calib_seed,
        eval=args.eval,
        eval_n=args.eval_n,
        eval_seed=args.eval_seed,
        gate=not args.no_gate,
        max_drop=args.max_drop,
        max_escape_rise=args.max_escape_rise,
        ort_calibration=args.ort_calibration,
        reduce_range=args.reduce_range,
        quantize_stem=not args.float_stem,
        threads=args.threads,
        workers=args.workers,
        name=args.name,
    )
    try:
        build_bundle(cfg, progress=not args.quiet)
    except GateFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (ExportError, PartSpecError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the output folder was not changed", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TQDM_MININTERVAL", "1")
    sys.exit(main())
