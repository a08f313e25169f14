"""Labelled folders -> in-memory training arrays, and the dense per-token targets.

A labelled folder is `images/` + `labels.csv` (file,label,pin). When the folder also has the
generator's `meta.jsonl`, every image gets dense targets (which tokens cover the defective pin,
which pin every token sits on). Frames without it (photos relabelled at the station) teach what
their label says about where (`click_targets`): an OK frame has no defect anywhere; a defect
whose pin a person clicked (labels.csv's `x,y`) is at the click and nowhere far from it, and the
tokens on the click are that pin. A defect without a click trains the image-level loss only.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from models import labels
from models.part import CLASSES
from models.preprocess import InputSpec, crop_resize


class DataError(labels.LabelsError):
    """A data folder that cannot be used; the message names the file and the problem."""


@dataclass
class Samples:
    images: np.ndarray  # (N, H, W, 3) uint8 BGR, already cropped and resized
    labels: np.ndarray  # (N,) int64, index into CLASSES
    pins: np.ndarray  # (N,) int64, 0 for OK
    truth: np.ndarray | None  # (N, P, 4) pin base/tip in *input* pixels, or None without meta
    files: list[str]
    meta: list[dict] | None  # the generator's records, when present
    defects: list[list[tuple[int, int]]] | None = None  # every (pin, class index) per image, from meta
    clicks: np.ndarray | None = None  # (N, 2) clicked pin in *input* pixels, NaN where none
    pitch: float = 24.25  # one pitch in input pixels (for click targets); load_folder sets it from the part

    def __len__(self) -> int:
        return len(self.labels)


def read_labels(folder: Path) -> list[tuple[str, str, int]]:
    """(file, label, pin) rows of a labelled folder's labels.csv."""
    path = Path(folder) / "labels.csv"
    if not path.exists():
        raise DataError(f"{path}: missing (a labelled folder has images/ and labels.csv)")
    return [(f, CLASSES[c], pin) for f, (c, pin) in labels.read_labels(path).items()]


def _load_one(args: tuple[str, InputSpec]) -> np.ndarray | str:
    path, spec = args
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        return f"{path}: missing or not a readable image"
    if img.shape[:2] != (spec.frame_height, spec.frame_width):
        return f"{path}: {img.shape[1]}x{img.shape[0]}, expected {spec.frame_width}x{spec.frame_height}"
    return crop_resize(img, spec)


def load_folder(
    folder: Path, spec: InputSpec, workers: int = 2, progress: bool = True, pitch_px: float = 48.5
) -> Samples:
    """Read a labelled folder into memory (cropped and resized once). `pitch_px`: the part's
    typical pitch in frame pixels, which sizes the targets of a clicked pin."""
    folder = Path(folder)
    rows = read_labels(folder)
    clicked = labels.read_clicks(folder / "labels.csv")
    meta_path = folder / "meta.jsonl"
    meta = None
    if meta_path.exists():
        with open(meta_path) as f:
            by_file = {m["file"]: m for m in map(json.loads, filter(str.strip, f))}
        if all(r[0] in by_file for r in rows):
            meta = [by_file[r[0]] for r in rows]
    jobs = [(str(folder / "images" / r[0]), spec) for r in rows]
    bar = tqdm(total=len(jobs), desc=f"loading {folder.name}", unit="img", disable=not progress)
    out: list[np.ndarray] = []
    if workers > 1 and len(jobs) > 64:
        with mp.get_context("fork" if os.name == "posix" else "spawn").Pool(workers) as pool:
            for res in pool.imap(_load_one, jobs, chunksize=32):
                if isinstance(res, str):
                    raise DataError(res)
                out.append(res)
                bar.update(1)
    else:
        for job in jobs:
            res = _load_one(job)
            if isinstance(res, str):
                raise DataError(res)
            out.append(res)
            bar.update(1)
    bar.close()
    truth = None
    if meta is not None:
        truth = np.stack(
            [
                np.concatenate(
                    [spec.frame_to_input(np.array(m["pins"])[:, :2]), spec.frame_to_input(np.array(m["pins"])[:, 2:])],
                    -1,
                )
                for m in meta
            ]
        ).astype(np.float32)
    clicks = None
    if clicked:
        clicks = np.full((len(rows), 2), np.nan, np.float32)
        for i, r in enumerate(rows):
            if r[0] in clicked:
                clicks[i] = spec.frame_to_input(np.array(clicked[r[0]]))
    return Samples(
        clicks=clicks,
        pitch=pitch_px * spec.width / (spec.crop[2] - spec.crop[0]),
        images=np.stack(out),
        labels=np.array([CLASSES.index(r[1]) for r in rows], np.int64),
        pins=np.array([r[2] for r in rows], np.int64),
        truth=truth,
        files=[r[0] for r in rows],
        meta=meta,
        defects=None
        if meta is None
        else [
            [(int(p), CLASSES.index(lbl)) for p, lbl in m.get("defects", [[m["pin"], m["label"]]] if m["pin"] else [])]
            for m in meta
        ],
    )


def concat(a: Samples, b: Samples) -> Samples:
    """Two sets as one, e.g. renders and a station's relabelled frames. Where only one side has
    pin positions, the other's are NaN (no dense targets for those images, only the image loss)."""
    n_pins = next((s.truth.shape[1] for s in (a, b) if s.truth is not None), 0)

    def truth(s: Samples) -> np.ndarray:
        return s.truth if s.truth is not None else np.full((len(s), n_pins, 4), np.nan, np.float32)

    def defects(s: Samples) -> list[list[tuple[int, int]]]:
        return s.defects if s.defects is not None else [[] for _ in range(len(s))]

    def clicks(s: Samples) -> np.ndarray:
        return s.clicks if s.clicks is not None else np.full((len(s), 2), np.nan, np.float32)

    both_meta = a.meta is not None and b.meta is not None
    return Samples(
        clicks=None if a.clicks is None and b.clicks is None else np.concatenate([clicks(a), clicks(b)]),
        pitch=a.pitch if a.clicks is not None or b.clicks is None else b.pitch,
        images=np.concatenate([a.images, b.images]),
        labels=np.concatenate([a.labels, b.labels]),
        pins=np.concatenate([a.pins, b.pins]),
        truth=None if a.truth is None and b.truth is None else np.concatenate([truth(a), truth(b)]),
        files=a.files + b.files,
        meta=(a.meta or []) + (b.meta or []) if both_meta else None,
        defects=None if a.defects is None and b.defects is None else defects(a) + defects(b),
    )


def folder_hash(folder: Path) -> str:
    """Hash of labels.csv and dataset.json: identifies the training data in a model card."""
    h = hashlib.sha256()
    for name in ("labels.csv", "dataset.json"):
        p = Path(folder) / name
        if p.exists():
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Dense targets


def token_centres(spec: InputSpec) -> np.ndarray:
    """(T, 2) centre of every output token in input pixels, in the model's token order."""
    gh, gw = spec.grid
    ys, xs = np.mgrid[0:gh, 0:gw]
    return np.stack([(xs.ravel() + 0.5) * spec.patch, (ys.ravel() + 0.5) * spec.patch], -1).astype(np.float64)


def _seg_dist(pts: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from points (T, 2) to segments a->b, broadcast over leading segment dims (..., 2)."""
    ab = b - a
    ap = pts[:, None, :] - a[None]
    t = np.clip((ap * ab[None]).sum(-1) / ((ab * ab).sum(-1)[None] + 1e-9), 0, 1)
    return np.linalg.norm(ap - t[..., None] * ab[None], axis=-1)


def dense_targets(
    truth: np.ndarray,
    defects: list[tuple[int, int]],
    spec: InputSpec,
    defect_radius: float = 0.55,
    pin_radius: float = 0.45,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-token targets from one image's pin positions (P, 4) in input pixels.

    defect (T,): class index of the defect under the token, or 2 ("no defect here", = OK index).
    pinmap (T,): 1..P for the pin slot nearest the token centre, when within `pin_radius` pitches
    of it, 0 elsewhere. A pin's slot is its actual base-to-tip segment and the segment a straight
    pin would have there. Purely geometric: a token's pin number never depends on which pin is
    defective, so naming a pin is learned from every pin in every image, and transfers to defect
    positions never seen in training (`python -m training.heldout`).
    The defective pin's segment is extended to where its straight tip would be: the evidence
    of a pushed-back or bent pin is partly the *absence* of a tip there.
    """
    centres = token_centres(spec).astype(np.float32)
    base, tip = truth[:, :2], truth[:, 2:]
    n_pins = len(truth)
    pitch = float(np.median(np.linalg.norm(np.diff(base[: min(n_pins, 9)], axis=0), axis=1))) if n_pins > 1 else 20.0
    straight_vec = np.median(tip - base, axis=0)  # a straight pin's base-to-tip (robust to a few bad pins)
    d = np.minimum(_seg_dist(centres, base, tip), _seg_dist(centres, base, base + straight_vec))  # (T, P)
    nearest = d.argmin(1)
    pinmap = np.where(d[np.arange(len(centres)), nearest] < pin_radius * pitch, nearest + 1, 0)
    defect = np.full(len(centres), len(CLASSES) - 1, np.int64)
    for pin, label in defects:
        k = pin - 1
        dd = np.minimum(
            _seg_dist(centres, base[k : k + 1], tip[k : k + 1])[:, 0],
            _seg_dist(centres, base[k : k + 1], (base[k] + straight_vec)[None])[:, 0],
        )
        hit = dd < defect_radius * pitch
        hit[dd.argmin()] = True
        defect[hit] = label
    return defect, pinmap.astype(np.int64)


def click_targets(
    label: int,
    pin: int,
    click: np.ndarray | None,
    spec: InputSpec,
    pitch: float,
    defect_radius: float = 0.6,
    unsure_radius: float = 2.2,
    pin_radius: float = 0.4,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-token targets from what a person said about a frame without pin positions (-100:
    unknown, not trained). OK: no defect under any token. A defect clicked at `click` (input
    pixels): the defect's class within `defect_radius` pitches of the click, "no defect" beyond
    `unsure_radius` (a bent pin's defect reaches ~1.6 pitches from its tip on the frame, and the
    person may click either end); the tokens within `pin_radius` of the click sit on `pin`. A defect without a
    click: nothing known per token."""
    gh, gw = spec.grid
    n = gh * gw
    unknown = np.full(n, -100, np.int64)
    no_defect = len(CLASSES) - 1
    if label == no_defect:
        return np.full(n, no_defect, np.int64), unknown
    if click is None or not np.isfinite(click).all():
        return unknown, unknown.copy()
    d = np.linalg.norm(token_centres(spec) - np.asarray(click, np.float64), axis=1) / pitch
    defect = unknown.copy()
    defect[d > unsure_radius] = no_defect
    defect[d < defect_radius] = label
    defect[d.argmin()] = label
    pinmap = unknown.copy()
    pinmap[d < pin_radius] = pin
    pinmap[d.argmin()] = pin
    return defect, pinmap
