"""python -m training.shading: how bright a good pin is low down against near its top.

A renderer gap the eye misses but a model does not: along a straight pin's axis, the Blender
renderer draws the lower half about a third as bright as the top (the metal mirrors the dark
housing; the end faces the lights), while the plain procedural drawing lights it evenly. A
model trained on even pins then reads a path-traced good pin, bright only near its top, as one
pushed back. This command measures it on labelled folders with the generator's meta.jsonl
(pin positions), so a renderer setting can be checked against another renderer before training:

  python -m training.shading data/blender-select-*/ data/procedural-select-*/ --n 100

For each folder it prints, over its first N good frames, percentiles of each frame's median
(over its pins) ratio of the mean brightness at 10-45% of the pin's length to that at 75-100%,
then the median of that ratio over every pin of each row, back row first (a renderer may shade
the rows differently: the front row mirrors the open space in front of the part), then the median
brightness (brightest channel) of the pins' ends and the share of them clipped to white (>= 250):
the plain drawing clips most ends, the Blender renderer keeps them in the pin's colour.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from models.cli import command_parser
from models.part import PartSpecError, load_part
from models.synth.dataset import read_meta

PERCENTILES = (5, 25, 50, 75, 95)
_T = np.linspace(0.0, 1.05, 22)  # along the axis, base (0) to tip (1), a little past the end
_LOW, _TOP = slice(2, 10), slice(16, 21)  # 10-45% and 75-100% of the length


class ShadingError(Exception):
    """A folder that cannot be measured: the message names it and what is wrong."""


def pin_ratios(image: np.ndarray, pins: list[list[float]]) -> list[float]:
    """Each pin's mean brightness low on the pin over that near its top. `pins` holds each pin's
    base and tip in pixels (bx, by, tx, ty), as meta.jsonl does."""
    grey = image.astype(np.float32).mean(-1)
    ratios = []
    for bx, by, tx, ty in pins:
        xs = (bx + (tx - bx) * _T).astype(np.float32)[None]
        ys = (by + (ty - by) * _T).astype(np.float32)[None]
        v = cv2.remap(grey, xs, ys, cv2.INTER_LINEAR)[0]
        ratios.append(float(v[_LOW].mean() / (v[_TOP].mean() + 1e-3)))
    return ratios


def end_values(image: np.ndarray, pins: list[list[float]]) -> list[float]:
    """Each pin's end brightness: the brightest channel, averaged over 3x3 pixels at its tip."""
    peak = image.max(-1).astype(np.float32)
    h, w = peak.shape
    values = []
    for _, _, tx, ty in pins:
        x, y = min(max(int(round(tx)), 1), w - 2), min(max(int(round(ty)), 1), h - 2)
        values.append(float(peak[y - 1 : y + 2, x - 1 : x + 2].mean()))
    return values


def low_to_top(image: np.ndarray, pins: list[list[float]]) -> float:
    """The frame's median, over its pins, of `pin_ratios`."""
    return float(np.median(pin_ratios(image, pins)))


def measure(folder: Path, n: int = 100, cols: int = 9) -> dict[str, Any]:
    """Percentiles of `low_to_top` over the first `n` OK frames of a generated folder, and the
    median of `pin_ratios` over each row's pins (`cols` pins a row, numbered row-major), and of
    `end_values` with the share of ends clipped to white."""
    folder = Path(folder)
    meta_path = folder / "meta.jsonl"
    if not meta_path.exists():
        raise ShadingError(f"{folder}: no meta.jsonl (pin positions); only generated folders can be measured")
    values: list[float] = []
    by_row: dict[int, list[float]] = {}
    ends: list[float] = []
    for rec in read_meta(meta_path):
        if rec["label"] != "OK":
            continue
        image = cv2.imread(str(folder / "images" / rec["file"]), cv2.IMREAD_COLOR)
        if image is None:
            raise ShadingError(f"{folder}/images/{rec['file']}: missing or not an image")
        ratios = pin_ratios(image, rec["pins"])
        values.append(float(np.median(ratios)))
        ends += end_values(image, rec["pins"])
        for k, r in enumerate(ratios):
            by_row.setdefault(k // cols, []).append(r)
        if len(values) >= n:
            break
    if not values:
        raise ShadingError(f"{folder}: no OK frame to measure")
    return {
        "folder": str(folder),
        "frames": len(values),
        "percentiles": dict(zip(PERCENTILES, np.percentile(values, PERCENTILES).tolist(), strict=True)),
        "row_medians": [float(np.median(by_row[r])) for r in sorted(by_row)],
        "end_median": float(np.median(ends)),
        "ends_clipped": float(np.mean(np.asarray(ends) >= 250)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = command_parser("python -m training.shading", __doc__)
    ap.add_argument("folders", nargs="+", type=Path, help="generated folders (images/, labels.csv, meta.jsonl)")
    ap.add_argument("--n", type=int, default=100, help="good frames to measure in each folder (default 100)")
    ap.add_argument("--part", default="default", help="the part the folders show (its pins per row)")
    args = ap.parse_args(argv)
    if args.n < 1:
        print(f"error: --n must be at least 1, got {args.n}", file=sys.stderr)
        return 2
    try:
        cols = load_part(args.part).cols
    except PartSpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    lines = []
    for folder in args.folders:  # every folder measured before the table, so an error is the only line
        try:
            row = measure(folder, args.n, cols)
        except (ShadingError, OSError, ValueError, KeyError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        cells = " | ".join(f"{v:.2f}" for v in row["percentiles"].values())
        rows = " / ".join(f"{v:.2f}" for v in row["row_medians"])
        ends = f"{row['end_median']:.0f} | {row['ends_clipped']:.0%}"
        lines.append(f"| {Path(folder).name} | {row['frames']} | {cells} | {rows} | {ends} |")
    head = " | ".join(f"p{p}" for p in PERCENTILES)
    print(f"| folder | good frames | {head} | by row, back to front | pin ends | ends clipped |")
    print("|---|---|" + "---|" * len(PERCENTILES) + "---|---|---|")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
