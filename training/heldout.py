"""python -m training.heldout: the held-out-position experiment as one command.

Trains the default recipe with defects only outside columns 4 and 7 (`--preset heldout-columns`),
then evaluates on a fresh test set whose defects sit only in columns 4 and 7 (pins 4, 7, 13, 16,
22, 25) plus OK images. A model that only memorised where defects were seen fails it.

  python -m training.heldout                      # full recipe
  python -m training.heldout --set epochs=4       # any training setting, as in training.train
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from models.cli import command_parser, guarded
from models.part import PartSpecError, load_part
from models.synth.dataset import SynthError
from training import datasets
from training.data import DataError
from training.evaluate import evaluate, print_report
from training.train import resolve_config, train


def main(argv: list[str] | None = None) -> int:
    ap = command_parser("python -m training.heldout", __doc__)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="training setting override")
    ap.add_argument(
        "--data", type=Path, default=Path("data"), help="folder for the rendered data sets (default: %(default)s)"
    )
    args = ap.parse_args(argv)

    def run() -> int:
        cfg = resolve_config("heldout-columns", None, args.set)
        part = load_part(cfg.part)
        summary = train(cfg)
        folder = datasets.materialize(datasets.get("heldout-cols-4-7"), part, args.data)
        run_dir = Path(summary["run"])
        result = evaluate(run_dir / "model.safetensors", folder, run_dir / "heldout_preds.csv", progress=False)
        print("\nheld-out columns 4 and 7 (never defective in training):")
        print_report(result)
        (run_dir / "heldout_metrics.json").write_text(json.dumps(result["metrics"], indent=2) + "\n")
        return 0

    return guarded(run, {(ValueError, PartSpecError, DataError, SynthError, datasets.DatasetError): 2})


if __name__ == "__main__":
    sys.exit(main())
