"""python -m training.synth: render a labelled data set of the part.

Examples:
  python -m training.synth --out data/train --n 20000 --seed 1 --workers 2
  python -m training.synth --out /tmp/s --n 300 --seed 1 --defect-columns 1,2,3,5,6,8,9 --sheet sheet.png
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2

from models.cli import guarded
from models.labels import LabelsError, check_writable
from models.options import add_flags, from_args
from models.part import PartSpecError, load_part
from models.synth.dataset import SynthConfig, SynthError, generate, read_meta
from training.synth.sheet import contact_sheet


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.synth",
        description="Render synthetic camera frames of a connector with labels (BENDNG, NUKENG, OK), "
        "the position of every pin, and every random choice made, so any image can be re-rendered.",
        epilog="Output: OUT/images/*.png, OUT/labels.csv (file,label,pin), OUT/meta.jsonl, OUT/dataset.json.",
    )
    ap.add_argument("--part", default="default", help="part name (models/parts/NAME.json) or path to a part JSON file")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    add_flags(ap, SynthConfig)
    ap.set_defaults(workers=min(2, os.cpu_count() or 1))
    ap.add_argument("--sheet", type=Path, default=None, help="also write a contact sheet PNG of the first images")
    ap.add_argument("--overwrite", action="store_true", help="replace a data set already in --out")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)

    def render() -> int:
        spec = load_part(args.part)
        cfg = from_args(SynthConfig, args)
        if args.sheet:  # before the rendering, not after it
            check_writable(args.sheet)
        labels = generate(spec, cfg, args.out, overwrite=args.overwrite, progress=not args.quiet)
        print(f"wrote {cfg.n} images to {args.out / 'images'} and {labels}")
        if args.sheet:
            try:
                contact_sheet(args.out, read_meta(args.out / "meta.jsonl"), args.sheet)
            except (OSError, ValueError, cv2.error) as e:
                raise SynthError(f"{args.sheet}: no contact sheet ({e}); the data set is complete") from None
            print(f"contact sheet: {args.sheet}")
        return 0

    return guarded(
        render, {(PartSpecError, SynthError, LabelsError): 2}, "interrupted; the images written so far are kept"
    )


if __name__ == "__main__":
    sys.exit(main())
