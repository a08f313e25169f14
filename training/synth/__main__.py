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

from models.labels import LabelsError, check_writable
from models.part import PartSpecError, load_part
from models.synth.dataset import SynthConfig, SynthError, generate, parse_styles, read_meta
from training.synth.sheet import contact_sheet


def _columns(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(c) for c in text.split(",") if c.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated column numbers like 1,2,3, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.synth",
        description="Render synthetic camera frames of a connector with labels (BENDNG, NUKENG, OK), "
        "the position of every pin, and every random choice made, so any image can be re-rendered.",
        epilog="Output: OUT/images/*.png, OUT/labels.csv (file,label,pin), OUT/meta.jsonl, OUT/dataset.json.",
    )
    ap.add_argument("--part", default="default", help="part name (models/parts/NAME.json) or path to a part JSON file")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--n", type=int, default=300, help="number of images (classes balanced)")
    ap.add_argument("--seed", type=int, default=0, help="same seed, same files")
    ap.add_argument(
        "--defect-columns",
        type=_columns,
        default=None,
        help="columns (1 = left) where defects may appear, e.g. 1,2,3,5,6,8,9",
    )
    ap.add_argument("--classes", default="BENDNG,NUKENG,OK", help="classes to draw, balanced (default all three)")
    ap.add_argument("--styles", default="photo=0.7,flat=0.3", help="rendering styles and their ratio")
    ap.add_argument(
        "--widen",
        type=float,
        default=1.3,
        help="stretch the part's camera ranges (light, pose, blur, noise...) by this factor; 1 = PART.md",
    )
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="parallel processes")
    ap.add_argument(
        "--png",
        choices=["fast", "small"],
        default="fast",
        help="fast: uncompressed PNG (0.9 MB/frame, quickest); small: ~half the size, ~40%% slower",
    )
    ap.add_argument(
        "--max-defects",
        type=int,
        default=1,
        help="training aid: defective images get 1..K bad pins (labels.csv names the first; "
        "meta.jsonl lists all). Default 1, as PART.md defines the classes",
    )
    ap.add_argument(
        "--away-bends",
        type=float,
        default=0.0,
        help="training aid: this share (0..1) of bent pins is bent by the lower third of the part's range "
        "(8-14 degrees for PART.md) and away from the camera, the bend one oblique view shows least. Default 0",
    )
    ap.add_argument(
        "--vary",
        type=float,
        default=0.0,
        help="0..1: randomize what PART.md leaves open (pin width as drawn, hole size and rim, tip, "
        "highlights, pin shadows, housing margin and sheen); 1 = full spread. Default 0",
    )
    ap.add_argument("--sheet", type=Path, default=None, help="also write a contact sheet PNG of the first images")
    ap.add_argument("--overwrite", action="store_true", help="replace a data set already in --out")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    try:
        spec = load_part(args.part)
        if not 0 <= args.away_bends <= 1:
            raise SynthError(f"--away-bends {args.away_bends}: use a share between 0 and 1")
        if not 0 <= args.vary <= 1:
            raise SynthError(f"--vary {args.vary}: use a value between 0 and 1")
        if not 0.5 <= args.widen <= 3:
            raise SynthError(f"--widen {args.widen}: use a value between 1 (PART.md) and 3")
        cfg = SynthConfig(
            n=args.n,
            seed=args.seed,
            classes=tuple(c.strip() for c in args.classes.split(",") if c.strip()),
            defect_columns=args.defect_columns,
            styles=parse_styles(args.styles),
            widen=max(1.0, args.widen),
            workers=max(1, args.workers),
            png=args.png,
            max_defects=max(1, args.max_defects),
            away_bends=args.away_bends,
            vary=args.vary,
        )
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
    except (PartSpecError, SynthError, LabelsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the images written so far are kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
