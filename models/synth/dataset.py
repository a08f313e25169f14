"""Write a labelled image folder: `images/*.png`, `labels.csv`, `meta.jsonl`, `dataset.json`.

Reproducible by construction: the plan (label, pin, style per image) comes from `seed`, and each
image's params from `(seed, index)`, so the output does not depend on the number of workers,
and `meta.jsonl` holds everything needed to re-render any one image.
"""

from __future__ import annotations

import contextlib
import csv
import json
import multiprocessing as mp
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from models.options import option
from models.part import PartSpec, dataset_identity
from models.synth.render import STYLES, ground_truth, render, sample_params

GENERATOR_VERSION = "1"
# Both drawing styles, evenly: what training, validation, the test sets and export's calibration use.
BOTH_STYLES = "photo=0.5,flat=0.5"
# PNG writing costs as much as rendering. "fast": stored, uncompressed (0.9 MB a frame, ~1 ms);
# "small": SUB filter + Huffman only (~0.5 MB, ~8 ms), still 2-3x faster than zlib's default.
PNG_PARAMS = {
    "fast": [cv2.IMWRITE_PNG_COMPRESSION, 0, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE],
    "small": [
        cv2.IMWRITE_PNG_COMPRESSION,
        1,
        cv2.IMWRITE_PNG_FILTER,
        cv2.IMWRITE_PNG_FILTER_SUB,
        cv2.IMWRITE_PNG_STRATEGY,
        cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
    ],
}


class SynthError(RuntimeError):
    """A generation request that cannot be carried out; the message says why."""


@dataclass(frozen=True)
class SynthConfig:
    """What a rendered data set is; each field with a flag is an option of `python -m training.synth`."""

    n: int = option(300, "number of images (classes balanced)", "--n")
    seed: int = option(0, "same seed, same files", "--seed")
    classes: tuple[str, ...] = option(
        ("BENDNG", "NUKENG", "OK"), "classes to draw, balanced (default all three)", "--classes",
        parse=lambda t: tuple(c.strip() for c in t.split(",") if c.strip()), show_default=False,
    )  # fmt: skip
    defect_columns: tuple[int, ...] | None = option(
        None, "columns (1 = left) where defects may appear, e.g. 1,2,3,5,6,8,9 (default every column)",
        "--defect-columns", parse=lambda t: parse_columns(t),
    )  # fmt: skip
    styles: tuple[tuple[str, float], ...] = option(
        (("photo", 0.7), ("flat", 0.3)), "rendering styles and their ratio (default photo=0.7,flat=0.3)", "--styles",
        parse=lambda t: parse_styles(t), show_default=False,
    )  # fmt: skip
    widen: float = option(
        1.3, "stretch the part's camera ranges (light, pose, blur, noise...) by this factor, 1..3; 1 = PART.md",
        "--widen",
    )  # fmt: skip
    workers: int = option(1, "parallel processes", "--workers")
    png: str = option(
        "fast", "fast: uncompressed PNG (0.9 MB/frame, quickest); small: ~half the size, ~40% slower", "--png",
        choices=("fast", "small"),
    )  # fmt: skip
    max_defects: int = option(
        1, "training aid: defective images get 1..K bad pins (labels.csv names the first; meta.jsonl lists all); "
        "1 is PART.md's classes", "--max-defects",
    )  # fmt: skip
    away_bends: float = option(
        0.0, "training aid: this share (0..1) of bent pins is bent by the lower third of the part's range (8-14 "
        "degrees for PART.md) and away from the camera, the bend one oblique view shows least", "--away-bends",
    )  # fmt: skip
    vary: float = option(
        0.0, "0..1: randomize what PART.md leaves open (pin width as drawn, hole size and rim, tip, highlights, "
        "pin shadows, housing margin and sheen; render.py: _look_params); 1 = full spread", "--vary",
    )  # fmt: skip
    hard_light: float = option(
        0.0, "0..1: this share of photo frames is lit by one hard key light: sharp pin shadows across the housing, "
        "mirror-like pins, background out of focus (render.py: _light_params)", "--hard-light",
    )  # fmt: skip
    pin_shade: float = option(
        0.0, "0..1: this share of photo frames has pins dark low down and lit near the top, as a shiny pin that "
        "mirrors the dark housing (render.py: _shade_params)", "--pin-shade",
    )  # fmt: skip
    shade_rows: float = option(
        0.0, "0..1: this share of the shaded frames gives each row of pins its own darkness, as each row mirrors "
        "its own surroundings (render.py: _row_levels)", "--shade-rows",
    )  # fmt: skip
    tip_tone: float = option(
        0.0, "0..1: this share of photo frames draws pin ends in the pin's colour, not clipped to white "
        "(render.py: _tip_params)", "--tip-tone",
    )  # fmt: skip


# The render looks added one after another, each a 0..1 share drawn after all before it (0: not
# drawn, so a set rendered before it stays byte for byte), in the order they were added: the
# keyword arguments of render.sample_params, SynthConfig's fields and training's data settings.
LOOKS = ("vary", "hard_light", "pin_shade", "shade_rows", "tip_tone")


def looks(cfg: Any) -> dict[str, float]:
    """The render looks of a SynthConfig (or training's DataConfig), by name."""
    return {name: getattr(cfg, name) for name in LOOKS}


def parse_columns(text: str) -> tuple[int, ...]:
    """'1,2,3' -> (1, 2, 3)."""
    try:
        return tuple(int(c) for c in text.split(",") if c.strip())
    except ValueError:
        raise SynthError(f"--defect-columns: expected column numbers like 1,2,3, got {text!r}") from None


def parse_styles(text: str) -> tuple[tuple[str, float], ...]:
    """'photo=0.7,flat=0.3' -> (('photo', 0.7), ('flat', 0.3)); ratios are normalised."""
    out = []
    for part in text.split(","):
        name, _, ratio = part.partition("=")
        name = name.strip()
        if name not in STYLES:
            raise SynthError(f"--styles: unknown style {name!r} (known: {', '.join(STYLES)})")
        try:
            r = float(ratio) if ratio else 1.0
        except ValueError:
            raise SynthError(f"--styles: ratio for {name} is not a number: {ratio!r}") from None
        if r < 0:
            raise SynthError(f"--styles: ratio for {name} is negative")
        out.append((name, r))
    total = sum(r for _, r in out)
    if total <= 0:
        raise SynthError("--styles: the ratios add up to zero")
    return tuple((n, r / total) for n, r in out)


def plan(spec: PartSpec, cfg: SynthConfig) -> list[tuple[str, int, str, list[tuple[int, str]]]]:
    """(label, pin, style) for every image: classes balanced, styles mixed by ratio."""
    for c in cfg.classes:
        if c not in spec.classes:
            raise SynthError(f"--classes: unknown class {c!r} (known: {', '.join(spec.classes)})")
    cols = list(cfg.defect_columns) if cfg.defect_columns else list(range(1, spec.cols + 1))
    bad = [c for c in cols if not 1 <= c <= spec.cols]
    if bad:
        raise SynthError(f"--defect-columns: {bad} not on a part with {spec.cols} columns (1..{spec.cols})")
    pins = spec.pins_in_columns(cols)
    rng = np.random.default_rng([cfg.seed, 0xC1A55])
    labels = [cfg.classes[i % len(cfg.classes)] for i in range(cfg.n)]
    rng.shuffle(labels)
    names = [s for s, _ in cfg.styles]
    ratios = np.array([r for _, r in cfg.styles])
    # exact proportions, then shuffled, so a 300-image set really is 70/30
    counts = np.floor(ratios * cfg.n).astype(int)
    counts[np.argmax(ratios)] += cfg.n - counts.sum()
    styles = [s for s, k in zip(names, counts, strict=True) for _ in range(k)]
    rng.shuffle(styles)
    out = []
    defect_classes = [c for c in spec.classes if c != "OK"]
    for label, style in zip(labels, styles, strict=True):
        pin = 0 if label == "OK" else int(rng.choice(pins))
        extra: list[tuple[int, str]] = []
        if label != "OK" and cfg.max_defects > 1:
            k = int(rng.integers(0, cfg.max_defects))
            others = [q for q in pins if q != pin]
            for q in rng.choice(others, size=min(k, len(others)), replace=False):
                extra.append((int(q), str(rng.choice(defect_classes))))
        out.append((label, pin, style, extra))
    return out


def image_params(
    spec: PartSpec,
    cfg: SynthConfig,
    index: int,
    label: str,
    pin: int,
    style: str,
    extra: list[tuple[int, str]] | None = None,
) -> dict[str, Any]:
    return sample_params(
        spec,
        np.random.default_rng([cfg.seed, index]),
        label,
        pin,
        style,
        cfg.widen,
        extra or None,
        cfg.away_bends,
        **looks(cfg),
    )


def _job(args: tuple[PartSpec, dict[str, Any], str, str]) -> dict[str, Any]:
    spec, params, path, png = args
    img = render(spec, params)
    if not cv2.imwrite(path, img, PNG_PARAMS[png]):
        raise OSError(f"could not write {path}")
    return {"params": params, **ground_truth(spec, params)}


def _jobs(spec: PartSpec, cfg: SynthConfig, images: Path, items: Sequence[tuple[Any, ...]]) -> Iterator[Any]:
    for i, (label, pin, style, extra) in enumerate(items):
        yield spec, image_params(spec, cfg, i, label, pin, style, extra), str(images / f"{i:06d}.png"), cfg.png


def _settings(spec: PartSpec, cfg: SynthConfig) -> dict[str, Any]:
    """What decides a data set's pixels and labels, as dataset.json records it."""
    return {
        "generator_version": GENERATOR_VERSION,
        **dataset_identity(spec, cfg.n, cfg.seed, cfg.classes, cfg.defect_columns),
        "styles": dict(cfg.styles),
        "widen": cfg.widen,
        "max_defects": cfg.max_defects,
        "away_bends": cfg.away_bends,
        **looks(cfg),
    }


# Settings added after data sets were first cached, with the value that means "as before".
_LATER_SETTINGS = {"away_bends": 0.0, **dict.fromkeys(LOOKS, 0.0)}


def generate_once(spec: PartSpec, cfg: SynthConfig, out: Path, progress: bool = True) -> Path:
    """`out`, rendered by `generate` unless it already holds this very data set (same part and
    settings, per its dataset.json); a folder rendered with other settings is rendered again."""
    out = Path(out)
    try:
        held = json.loads((out / "dataset.json").read_text())
    except (OSError, json.JSONDecodeError):
        held = None
    want = _settings(spec, cfg)
    if isinstance(held, dict) and all(held.get(k, _LATER_SETTINGS.get(k)) == v for k, v in want.items()):
        return out
    if isinstance(held, dict):  # a set this generator rendered with other settings: none of its frames may stay
        shutil.rmtree(out / "images", ignore_errors=True)
    generate(spec, cfg, out, overwrite=True, progress=progress)
    return out


def generate(spec: PartSpec, cfg: SynthConfig, out: Path, overwrite: bool = False, progress: bool = True) -> Path:
    """Render `cfg.n` images into `out`; returns the path of labels.csv."""
    if cfg.n < 1:
        raise SynthError(f"--n must be at least 1, got {cfg.n}")
    if cfg.png not in PNG_PARAMS:
        raise SynthError(f"--png must be one of {', '.join(PNG_PARAMS)}, got {cfg.png!r}")
    if cfg.seed < 0:
        raise SynthError(f"--seed must be 0 or more, got {cfg.seed}")
    if not cfg.classes:
        raise SynthError(f"--classes: name at least one of {', '.join(spec.classes)}")
    if not 1 <= cfg.max_defects <= spec.n_pins:
        raise SynthError(f"--max-defects {cfg.max_defects}: use 1..{spec.n_pins}")
    for name, value, lo, hi in (
        ("away-bends", cfg.away_bends, 0, 1),
        *((name.replace("_", "-"), value, 0, 1) for name, value in looks(cfg).items()),
        ("widen", cfg.widen, 1, 3),
    ):
        if not lo <= value <= hi:  # also refuses NaN
            raise SynthError(f"--{name} {value}: use a value between {lo} and {hi}")
    if cfg.workers < 1:
        raise SynthError(f"--workers {cfg.workers}: use 1 or more")
    out = Path(out)
    if (out / "labels.csv").exists() and not overwrite:
        raise SynthError(f"{out} already holds a data set (labels.csv); choose another --out or pass --overwrite")
    items = plan(spec, cfg)
    images = out / "images"
    try:
        images.mkdir(parents=True, exist_ok=True)
        if overwrite:  # the old set's labels go first: they must never describe the new images
            for name in ("labels.csv", "dataset.json"):
                (out / name).unlink(missing_ok=True)
        for old in images.glob("*.png") if overwrite else ():
            old.unlink()
    except OSError as e:
        raise SynthError(f"{out}: cannot create the output folder ({e.strerror})") from None
    jobs = _jobs(spec, cfg, images, items)
    bar = tqdm(total=cfg.n, desc="rendering", unit="img", disable=not progress)
    # labels.csv marks a finished data set (a rerun refuses to overwrite it), so it is written under
    # a temporary name and renamed last: a run that fails leaves none behind to block the next one
    labels_tmp = out / "labels.csv.part"
    try:
        with open(labels_tmp, "w", newline="") as fl, open(out / "meta.jsonl", "w") as fm:
            writer = csv.writer(fl)
            writer.writerow(["file", "label", "pin"])
            if cfg.workers > 1:
                ctx = mp.get_context("fork" if os.name == "posix" else "spawn")
                with ctx.Pool(cfg.workers) as pool:
                    results: Iterator[Any] = pool.imap(_job, jobs, chunksize=8)
                    _write_rows(results, items, writer, fm, bar)
            else:
                _write_rows(map(_job, jobs), items, writer, fm, bar)
        summary = {
            **_settings(spec, cfg),
            "counts": {c: sum(1 for it in items if it[0] == c) for c in cfg.classes},
        }
        (out / "dataset.json").write_text(json.dumps(summary, indent=2) + "\n")
        os.replace(labels_tmp, out / "labels.csv")
    except OSError as e:
        raise SynthError(f"{out}: writing failed ({e}); the images already written are kept") from None
    finally:
        bar.close()
        with contextlib.suppress(OSError):
            labels_tmp.unlink(missing_ok=True)
    return out / "labels.csv"


def _write_rows(results: Iterator[Any], items: Sequence[tuple[Any, ...]], writer: Any, fm: Any, bar: Any) -> None:
    for i, record in enumerate(results):
        label, pin, style, _ = items[i]
        name = f"{i:06d}.png"
        writer.writerow([name, label, pin])
        fm.write(json.dumps({"file": name, "label": label, "pin": pin, "style": style, **record}) + "\n")
        bar.update(1)


def read_meta(path: Path) -> list[dict[str, Any]]:
    """The per-image records of a generated folder (its meta.jsonl)."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
