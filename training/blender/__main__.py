"""python -m training.blender: path trace a labelled data set of the part with Blender.

Examples (from the repo root, after `make blender-venv`):
  .venv-blender/bin/python -m training.blender --out data/blender --n 1500 --seed 1
  .venv-blender/bin/python -m training.blender --out /tmp/b --n 30 --seed 2 --defect-columns 4,7
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from models.cli import guarded
from models.part import PartSpecError, load_part
from training.blender.dataset import is_rendered, render_folder, resumable_frames
from training.blender.sampling import (
    BORDER_DEFECTS,
    DEFAULT_SAMPLES,
    LIGHT_HOUSINGS,
    BlenderConfig,
    BlenderRenderError,
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line and exit 2, as every other refusal here
        self.exit(2, f"error: {message} (see --help)\n")


def _columns(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(c) for c in text.split(",") if c.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected column numbers like 4,7, got {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(
        prog=".venv-blender/bin/python -m training.blender",
        description="Render camera frames of the connector with Blender's Cycles path tracer (CPU), labelled "
        "BENDNG / NUKENG / OK, with every pin's position and every random choice recorded, so any frame can be "
        "rendered again. The same folder format as python -m training.synth, from an independent renderer.",
        epilog="Output: OUT/images/*.png, OUT/labels.csv (file,label,pin), OUT/meta.jsonl, OUT/dataset.json. "
        "Stopped part-way (Ctrl-C, a crash)? Run the same command again: the frames already made are kept. "
        f"About 3 s a frame on 2 free cores at the default {DEFAULT_SAMPLES} samples; 1500 frames take about "
        "1 h 20 min. See training/blender/README.md.",
    )
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--n", type=int, default=300, help="number of frames, classes balanced (default 300)")
    ap.add_argument("--seed", type=int, default=0, help="same seed and settings, same frames (default 0)")
    ap.add_argument("--part", default="default", help="part name (models/parts/NAME.json) or a part JSON file")
    ap.add_argument(
        "--samples",
        type=int,
        default=DEFAULT_SAMPLES,
        help=f"path-tracing samples per pixel, denoised; more is cleaner and slower (default {DEFAULT_SAMPLES})",
    )
    ap.add_argument(
        "--widen",
        type=float,
        default=1.0,
        help="stretch the camera ranges (pose, tilt, pitch, noise, JPEG...) about their centre; "
        "1 = exactly PART.md (default), up to 3; the defect ranges never change",
    )
    ap.add_argument(
        "--light-housings",
        type=float,
        default=LIGHT_HOUSINGS,
        help=f"share of frames with a white, ivory or beige housing instead of a dark one, 0 to 1 "
        f"(default {LIGHT_HOUSINGS}); a training set for light housings can raise it",
    )
    ap.add_argument(
        "--border-defects",
        type=float,
        default=BORDER_DEFECTS,
        help="share of the defects moved to a border pin (back row, outer columns), 0 to 1; with it, "
        "every bent border pin leans out towards the housing's edge "
        f"(default {BORDER_DEFECTS}: defects on any pin, bent any way)",
    )
    ap.add_argument("--classes", default="BENDNG,NUKENG,OK", help="classes to draw, balanced (default all three)")
    ap.add_argument(
        "--defect-columns",
        type=_columns,
        default=None,
        help="columns (1 = left) where defects may sit, e.g. 1,2,3,5,6,8,9 (default every column)",
    )
    ap.add_argument("--threads", type=int, default=0, help="render threads (default 0 = every core)")
    ap.add_argument("--overwrite", action="store_true", help="replace another data set already in --out")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    def render() -> int:
        spec = load_part(args.part)
        cfg = BlenderConfig(
            n=args.n,
            seed=args.seed,
            classes=tuple(c.strip() for c in args.classes.split(",") if c.strip()),
            defect_columns=args.defect_columns,
            widen=args.widen,
            samples=args.samples,
            light_housings=args.light_housings,
            border_defects=args.border_defects,
            threads=args.threads if args.threads else 0,
        )
        if is_rendered(spec, cfg, args.out):
            print(f"already rendered: {args.out} holds these {cfg.n} frames (dataset.json)")
            return 0
        kept = 0 if args.overwrite else resumable_frames(spec, cfg, args.out)
        if kept:
            print(f"resuming: {kept} of {cfg.n} frames already in {args.out}")
        render_folder(spec, cfg, args.out, overwrite=args.overwrite, progress=not args.quiet)
        print(f"wrote {cfg.n - kept} frames ({kept} kept) to {args.out / 'images'} and {args.out / 'labels.csv'}")
        return 0

    kept = "interrupted; the frames written so far are kept: run the same command to go on"
    return guarded(render, {(PartSpecError, BlenderRenderError): 2}, kept)


if __name__ == "__main__":
    sys.exit(main())
