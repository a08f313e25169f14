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
     FP32 model of its backend, and may not raise the escape rate (--max-escape-rise) or the
     overkill rate (--max-overkill-rise)
  8. only then writes the bundle (model files, 24 self-check frames the station chooses its model
     on, bundle.json with sha256s) into --out

Exit codes: 0 written; 1 a check failed (the output folder is left as it was); 2 bad input.
Takes a few minutes on a 2-core PC for the default model.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from export.build import ExportConfig, ExportError, GateFailed, build_bundle
from models.cli import guarded
from models.files import atomic_write
from models.options import add_flags, from_args
from models.part import PartSpecError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m export.quantize",
        description="Export a checkpoint to FP32/INT8 ONNX and OpenVINO IR, check parity and INT8 accuracy, "
        "and write a self-describing model bundle for the station.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    add_flags(ap, ExportConfig)
    ap.add_argument("--quiet", action="store_true", help="no progress bars (step lines are still printed)")
    args = ap.parse_args(argv)
    cfg = from_args(ExportConfig, args)

    def export() -> int:
        build_bundle(cfg, progress=not args.quiet)
        record_in_card(Path(cfg.out), sys.argv[1:] if argv is None else argv)
        return 0

    return guarded(
        export,
        {GateFailed: 1, (ExportError, PartSpecError): 2},
        "interrupted; the output folder was not changed",
    )


def record_in_card(out: Path, argv: list[str]) -> None:
    """The model card beside the bundle (training.ship writes it before the export) gets the
    export command as it was run, so its Reproduce block remakes this very bundle."""
    card = out / "MODEL_CARD.md"
    if not card.exists():
        return
    flags = " ".join(shlex.quote(a) for a in argv if a != "--quiet")
    command = f"python -m export.quantize {flags}".rstrip() + "   # -> the INT8 / FP32 bundle beside this card"
    lines = card.read_text().splitlines()
    new = [command if line.startswith("python -m export.quantize") else line for line in lines]
    if new != lines:
        atomic_write(card, "\n".join(new) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("TQDM_MININTERVAL", "1")
    sys.exit(main())
