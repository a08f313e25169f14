"""python -m training.train: train a PinViT on synthetic renders of a part.

Top to bottom: config, data, model, loop, checkpoint (nanoGPT's shape). With no arguments it
trains the shipped default recipe: renders the data set if it is not on disk yet, trains,
evaluates on a fresh validation set every epoch, and writes a run folder:

  runs/<name>/config.json       the resolved config
  runs/<name>/log.jsonl         one line per epoch: loss, accuracy, per-class recall, pin accuracy
  runs/<name>/curves.png        training curves
  runs/<name>/confusion.png     confusion matrix of the last validation
  runs/<name>/model.safetensors the checkpoint (weights + model spec)

Examples:
  python -m training.train                                  # the default recipe
  python -m training.train --preset seed-like               # the original failure, reproduced
  python -m training.train --config my.json --set epochs=4 --set lr=5e-4
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from timm.utils import ModelEmaV3
from tqdm import tqdm

from models.checkpoint import load_checkpoint, save_checkpoint
from models.cli import guarded
from models.cpu import has_native_bf16, isa_text
from models.decision import DEFAULT_THRESHOLDS, decide
from models.metrics import metrics
from models.options import check, describe, merge, option, parse_sets
from models.part import CLASSES, PartSpec, PartSpecError, load_part
from models.pinvit import PinViT, PinViTConfig, build, image_log_scores
from models.preprocess import InputSpec, normalize
from models.synth.dataset import (
    BOTH_STYLES,
    LOOKS,
    SynthConfig,
    SynthError,
    generate_once,
    looks,
    parse_styles,
)
from training import datasets
from training.data import DataError, Samples, click_targets, concat, dense_targets, folder_hash, load_folder

REPO = Path(__file__).resolve().parent.parent
CODE_VERSION = "0.1.0"
AMP_MODES = ("auto", "bf16", "off")

# ---------------------------------------------------------------------------------------------
# Config


@dataclass
class DataConfig:
    n: int = option(7000, "training renders")
    seed: int = option(1, "seed of the training renders")
    styles: str = option(BOTH_STYLES, "drawing styles and their shares (chosen on the selection set, docs/ablation.md)")
    widen: float = option(1.3, "camera ranges stretched about PART.md's (1 = exactly PART.md)", bounds=(1.0, 3.0))
    max_defects: int = option(3, "defective renders get 1..K bad pins (more examples per image)")
    away_bends: float = option(0.0, "share of bends drawn small and leaning away from the camera", bounds=(0, 1))
    vary: float = option(0.0, "randomize what PART.md leaves open (render.py: _look_params)", bounds=(0, 1))
    hard_light: float = option(
        0.0, "share of photo renders lit by one hard key light (render.py: _light_params)", bounds=(0, 1)
    )
    pin_shade: float = option(
        0.0, "share of photo renders with pins dark low, lit near the top (render.py: _shade_params)", bounds=(0, 1)
    )
    shade_rows: float = option(
        0.0, "share of the shaded renders whose pin rows each get their own darkness (render.py: _row_levels)",
        bounds=(0, 1),
    )  # fmt: skip
    tip_tone: float = option(
        0.0, "share of photo renders with pin ends in the pin's colour, not white (render.py: _tip_params)",
        bounds=(0, 1),
    )  # fmt: skip
    defect_columns: list[int] | None = option(None, "defects only in these pin columns (null: anywhere)")
    val_n: int = option(600, "validation renders")
    val_seed: int = option(9001, "seed of the validation renders")
    val_widen: float = option(
        1.3, "validation camera ranges (photo/flat 50/50, whatever the training data)", bounds=(1, 3)
    )
    val_defect_columns: list[int] | None = option(None, "validation defects only in these columns")
    folder: str | None = option(None, "a labelled folder to train on instead of rendering one")
    mix_folder: str | None = option(None, "a labelled folder trained on together with the renders (or folder)")
    mix_set: str | None = option(
        None, "or named training sets, comma-separated (training/datasets.py, e.g. blender-train,blender-train-b)"
    )
    mix_n: int | None = option(None, "frames of each mix_set: the first mix_n of its seed (null: the whole set)")
    mix_repeat: int = option(
        1, "each mixed frame is seen this many times an epoch (a few line frames beside many renders)", bounds=(1, 100)
    )
    val_folder: str | None = option(None, "a labelled folder to validate on instead of renders")
    keep_set: str | None = option(
        None, "named training sets seen once an epoch beside the mixed frames (training.adapt: the base's own "
        "Blender frames, so that fine-tuning on a line keeps what it knew of them)",
    )  # fmt: skip
    keep_n: int | None = option(None, "frames of each keep_set, as mix_n (null: the whole set)")
    keep_per_epoch: int | None = option(
        None, "of the keep_set frames, this many drawn afresh each epoch (a shorter epoch that still sees them "
        "all over the run; null: every one, every epoch)", bounds=(1, 1_000_000),
    )  # fmt: skip


@dataclass
class TrainConfig:
    name: str = option("default", "the run's folder under out/")
    part: str = option("default", "part spec: a name in models/parts or a JSON file")
    model: str = option("pinvit_tiny_cs16", "timm model name (models/pinvit.py)")
    model_overrides: dict[str, Any] = option({"stem_depth": 2}, "PinViTConfig fields over the model's")
    input: dict[str, Any] = option({}, "InputSpec fields (crop, size, mean/std) over the defaults")
    data: DataConfig = field(default_factory=DataConfig)
    supervision: str = option(
        "dense", "dense: per-token targets from the renders; image: labels only", choices=("dense", "image")
    )
    epochs: int = option(10, "passes over the training set", bounds=(1, 1000))
    batch_size: int = option(16, "images per step", bounds=(1, 4096))
    lr: float = option(1.5e-3, "peak learning rate (AdamW, cosine)", bounds=(0, 1))
    min_lr: float = option(1e-5, "learning rate at the end of the cosine", bounds=(0, 1))
    weight_decay: float = option(0.05, "AdamW weight decay", bounds=(0, 1))
    warmup_steps: int = option(150, "linear warm-up steps", bounds=(0, 10**6))
    grad_clip: float = option(1.0, "gradient norm clip", bounds=(0, 1000))
    ema_decay: float = option(
        0.0, "0: off; else validate and save an average of the weights: their plain mean from ema_start on, "
        "an exponential one with this decay once the mean spans 1/(1 - decay) steps (e.g. 0.9995)",
        bounds=(0, 0.99999),
    )  # fmt: skip
    ema_start: float = option(0.5, "share of the run's steps before the weights are averaged", bounds=(0, 1))
    defect_weight: float = option(4.0, "dense loss weight of tokens on a defective pin", bounds=(0, 1000))
    pin_map_weight: float = option(0.5, "weight of the pin-map loss", bounds=(0, 1000))
    image_weight: float = option(0.5, "weight of the multiple-instance image loss", bounds=(0, 1000))
    aug_shift_px: int = option(12, "random translation of the model input, input pixels", bounds=(0, 200))
    aug_color: float = option(0.15, "random brightness/contrast per image", bounds=(0, 1))
    aug_camera: float = option(0.0, "per-channel gain, gamma, blur, noise, JPEG, small rotation, scale", bounds=(0, 1))
    aug_randconv: float = option(
        0.0, "share of images passed through a random colour convolution (texture gone, shapes kept)", bounds=(0, 1)
    )
    collapse_share: float = option(0.9, "a validation predicting one class this often...", bounds=(0, 1))
    collapse_after: int = option(
        3, "...in two validations in a row, from this epoch on, stops the run", bounds=(1, 10**6)
    )
    amp: str = option(
        "auto",
        "auto: bf16 where the CPU does bf16 in hardware (AVX512-BF16/AMX), else float32; "
        "bf16 forces it (many times slower without that hardware); off: float32",
        choices=AMP_MODES,
    )
    init_from: str | None = option(None, "start from this checkpoint's weights instead of random ones")
    threads: int = option(0, "torch threads (0: all cores)", bounds=(0, 1024))
    seed: int = option(0, "seed of initialization, shuffling and augmentation")
    out: str = option("runs", "folder the run's folder goes in")
    workers: int = option(2, "rendering / loading processes", bounds=(1, 256))


PRESETS: dict[str, dict[str, Any]] = {
    # The original experiment as a newcomer would write it: ~2000 renders of one style, a plain
    # 16x16-patch ViT, image labels only, one learning rate. It stays at chance.
    "seed-like": {
        "name": "seed-like",
        "model": "pinvit_plain_p16",
        "model_overrides": {"head": "cls"},
        "supervision": "image",
        "data": {"n": 2000, "styles": "photo=1", "widen": 1.0, "max_defects": 1},
        "epochs": 6,
        "batch_size": 32,
        "lr": 3e-4,
        "aug_shift_px": 0,
        "aug_color": 0.0,
    },
    # The held-out-position experiment: defects never on columns 4 and 7 in training; validation
    # defects only there.
    "heldout-columns": {
        "name": "heldout-columns",
        "data": {"defect_columns": [1, 2, 3, 5, 6, 8, 9], "val_defect_columns": [4, 7]},
    },
    # The shipped recipe: the default one plus 2000 frames of the Blender renderer (blender-train,
    # rendered once on first use: about 55 min on 2 cores, needs make blender-venv), from random
    # weights in one run. Chosen on both renderers' selection sets (docs/ablation.md).
    "both-renderers": {
        "data": {"mix_set": "blender-train", "mix_n": 2000},
    },
    # Fine-tuning instead of training from scratch: the shipped model's weights, 5 epochs on 7000
    # fresh renders at a lower learning rate. Add the station's relabelled archive with
    # --set data.folder=... (or point init_from at another run).
    "continue": {
        "name": "default-continued",
        "init_from": "models/default/model.safetensors",
        "data": {"seed": 2},
        "epochs": 5,
        "lr": 5e-4,
        "warmup_steps": 50,
    },
}


def resolve_config(preset: str | None, config_file: Path | None, sets: list[str]) -> TrainConfig:
    """The defaults, then the preset, the JSON file and the --set values, in that order; every
    key, type, choice and range checked (ValueError naming the key)."""
    cfg = TrainConfig()
    if preset:
        if preset not in PRESETS:
            raise ValueError(f"--preset: unknown preset {preset!r} (known: {', '.join(PRESETS)})")
        cfg = merge(cfg, PRESETS[preset])
    if config_file:
        try:
            cfg = merge(cfg, json.loads(Path(config_file).read_text()), f"{config_file}: ")
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{config_file}: cannot read config ({e})") from None
    cfg = merge(cfg, parse_sets(sets))
    check(cfg)
    if not cfg.ema_decay and cfg.ema_start != TrainConfig().ema_start:  # it would change nothing
        raise ValueError("ema_start: used only with ema_decay > 0 (without it the weights are not averaged)")
    if cfg.data.keep_per_epoch is not None and not cfg.data.keep_set:  # it would change nothing
        raise ValueError("data.keep_per_epoch: used only with data.keep_set (the frames it draws from)")
    unknown = sorted(set(cfg.model_overrides) - set(PinViTConfig.__dataclass_fields__))
    if unknown:  # timm would drop them and train the model without them
        known = ", ".join(sorted(PinViTConfig.__dataclass_fields__))
        raise ValueError(f"model_overrides: unknown model setting {', '.join(unknown)} (known: {known})")
    return cfg


def use_bf16(amp: str, flags: frozenset[str] | None = None) -> bool:
    """Whether `amp` means bf16 autocast on this machine."""
    return amp == "bf16" or (amp == "auto" and has_native_bf16(flags))


def config_hash(cfg: TrainConfig) -> str:
    return hashlib.sha256(json.dumps(dataclasses.asdict(cfg), sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Data


def _synth_folder(
    part: PartSpec,
    n: int,
    seed: int,
    styles: str,
    widen: float,
    cols: list[int] | None,
    workers: int,
    max_defects: int = 1,
    away_bends: float = 0.0,
    **render_looks: float,
) -> Path:
    """Render a data set once; later runs with the same settings reuse it. `render_looks` are the
    generator's LOOKS by name (absent: 0)."""
    unknown = set(render_looks) - set(LOOKS)
    if unknown:
        raise TypeError(f"unknown render looks: {', '.join(sorted(unknown))}")
    settings: list[Any] = [part.fingerprint(), n, seed, styles, widen, cols, max_defects]
    if away_bends:  # (absent when 0, so folders rendered before the option are still found)
        settings.append(away_bends)
    settings += [{name: render_looks[name]} for name in LOOKS if render_looks.get(name)]  # likewise
    key = json.dumps(settings, sort_keys=True)
    folder = datasets.data_dir() / f"synth-{part.name}-{n}-{seed}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"
    cfg = SynthConfig(
        n=n,
        seed=seed,
        styles=parse_styles(styles),
        widen=widen,
        defect_columns=tuple(cols) if cols else None,
        workers=workers,
        max_defects=max_defects,
        away_bends=away_bends,
        **{name: render_looks.get(name, 0.0) for name in LOOKS},
    )
    return generate_once(part, cfg, folder)


def prepare_data(
    cfg: TrainConfig, part: PartSpec, ispec: InputSpec, progress: bool = True
) -> tuple[Samples, Samples, dict[str, Any]]:
    d = cfg.data
    mix_dirs = _mix_folders(d, part, cfg.workers, progress)  # first: a set that cannot be made fails before the renders
    keep_dirs = _named_sets(d.keep_set, d.keep_n, "data.keep_set", part, cfg.workers, progress)
    train_dir = (
        Path(d.folder)
        if d.folder
        else _synth_folder(
            part,
            d.n,
            d.seed,
            d.styles,
            d.widen,
            d.defect_columns,
            cfg.workers,
            max_defects=d.max_defects,
            away_bends=d.away_bends,
            **looks(d),
        )
    )
    val_dir = (
        Path(d.val_folder)
        if d.val_folder
        else _synth_folder(part, d.val_n, d.val_seed, BOTH_STYLES, d.val_widen, d.val_defect_columns, cfg.workers)
    )
    pitch = float(np.mean(part.camera.pitch_px))
    train = load_folder(train_dir, ispec, workers=cfg.workers, progress=progress, pitch_px=pitch)
    val = load_folder(val_dir, ispec, workers=cfg.workers, progress=progress, pitch_px=pitch)
    info = {
        "train": str(train_dir),
        "train_hash": folder_hash(train_dir),
        "val": str(val_dir),
        "val_hash": folder_hash(val_dir),
    }
    if mix_dirs:
        mix = load_folder(mix_dirs[0], ispec, workers=cfg.workers, progress=progress, pitch_px=pitch)
        for more in mix_dirs[1:]:
            mix = concat(mix, load_folder(more, ispec, workers=cfg.workers, progress=progress, pitch_px=pitch))
        repeated = mix
        for _ in range(d.mix_repeat - 1):  # each copy gets its own shift/colour/camera augmentation per batch
            repeated = concat(repeated, mix)
        train = concat(train, repeated)  # (the renders copied once, not once per repeat)
    keep_from = len(train)
    for more in keep_dirs:  # once an epoch, whatever mix_repeat says
        train = concat(train, load_folder(more, ispec, workers=cfg.workers, progress=progress, pitch_px=pitch))
    if keep_dirs:
        info["keep_frames"] = len(train) - keep_from  # the last ones: epoch_order draws from them
    if mix_dirs or keep_dirs:
        # several sets: their folders and hashes comma-separated (training.ship reads them so)
        dirs = mix_dirs + keep_dirs
        info.update(mix=",".join(map(str, dirs)), mix_hash=",".join(folder_hash(m) for m in dirs))
    return train, val, info


def _mix_folders(d: DataConfig, part: PartSpec, workers: int, progress: bool) -> list[Path]:
    """The labelled folders trained on beside the renders: `mix_folder`, or the named sets of
    `mix_set` (each rendered into data/ on first use, by the Blender renderer for a Blender set)."""
    if d.mix_set and d.mix_folder:
        raise ValueError("data.mix_set and data.mix_folder: give one of them")
    if not d.mix_set:
        return [Path(d.mix_folder)] if d.mix_folder else []
    return _named_sets(d.mix_set, d.mix_n, "data.mix_set", part, workers, progress)


def _named_sets(spec: str | None, n: int | None, key: str, part: PartSpec, workers: int, progress: bool) -> list[Path]:
    """The folders of a comma-separated list of named training sets, each rendered into data/ on
    first use; DataError naming `key` before anything is rendered if one is not a training set."""
    if not spec:
        return []
    names = [x.strip() for x in spec.split(",")]
    if "" in names or len(set(names)) != len(names):
        raise DataError(f"{key}: {spec!r} is not a list of distinct set names (e.g. blender-train,blender-train-b)")
    try:
        named = [datasets.get(x) for x in names]  # every name checked before anything is rendered
        for s in named:
            if s.role != "train":  # a model trained on a test or selection set would be scored on what it saw
                ok = ", ".join(x for x, y in datasets.SETS.items() if y.role == "train")
                raise datasets.DatasetError(f"{s.name} is a {s.role} set, never trained on (train sets: {ok})")
        return [datasets.materialize(s, part, n=n, workers=workers, progress=progress) for s in named]
    except datasets.DatasetError as e:
        raise DataError(f"{key}: {e}") from None


def camera_augment(
    img: np.ndarray, truth: np.ndarray | None, strength: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Another camera on the same scene: a small rotation and scale about the centre (the pin
    positions move with it), per-channel gain, gamma, defocus, sensor noise and JPEG. Drawn anew
    every epoch, so the model cannot learn one renderer's exact pixels."""
    import cv2

    s = strength
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-4, 4) * s, 1 + rng.uniform(-0.08, 0.08) * s)
    img = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    if truth is not None:
        pts = truth.reshape(-1, 2) @ m[:, :2].T + m[:, 2]
        truth = pts.reshape(truth.shape).astype(np.float32)
    f = img.astype(np.float32) * (1 + rng.uniform(-0.15, 0.15, 3) * s).astype(np.float32)
    gamma = float(np.exp(rng.uniform(-0.3, 0.3) * s))
    f = 255.0 * (np.clip(f, 0, 255) / 255.0) ** gamma
    if rng.random() < 0.3 * s:
        f = cv2.GaussianBlur(f, (0, 0), rng.uniform(0.3, 1.2))
    if rng.random() < 0.5 * s:
        f = f + rng.normal(0, rng.uniform(1, 6), f.shape).astype(np.float32)
    out = np.clip(f, 0, 255).astype(np.uint8)
    if rng.random() < 0.3 * s:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(55, 95))])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out, truth


def random_convolution(x: torch.Tensor, share: float, rng: np.random.Generator) -> torch.Tensor:
    """RandConv (Xu et al., ICLR 2021) on a normalized batch: `share` of the images pass through a
    random 1x1/3x3/5x5 colour convolution, rescaled to the image's own per-channel mean and spread
    and blended with it by a random weight. Every shape stays where it was (reflect padding, so the
    pin targets still hold) while colour, shading and texture become something no renderer drew:
    what is left to go by is the pins' geometry."""
    if share <= 0:
        return x
    out = x.clone()
    c = x.shape[1]
    for i in np.flatnonzero(rng.random(len(x)) < share):
        k = int(rng.choice((1, 3, 5)))
        w = torch.from_numpy(rng.normal(0.0, 1.0 / math.sqrt(c * k * k), (c, c, k, k)).astype(np.float32))
        xi = x[i : i + 1]
        y = F.conv2d(F.pad(xi, (k // 2,) * 4, mode="reflect") if k > 1 else xi, w)
        y = (y - y.mean((2, 3), keepdim=True)) / (y.std((2, 3), keepdim=True) + 1e-6)
        y = y * xi.std((2, 3), keepdim=True) + xi.mean((2, 3), keepdim=True)
        a = float(rng.uniform(0.0, 1.0))
        out[i : i + 1] = a * xi + (1 - a) * y
    return out


def _points(truth: np.ndarray | None, click: np.ndarray | None) -> np.ndarray:
    """The pin positions (P, 4) and a click (2,) as one (K, 2) array, to move them together."""
    parts = [] if truth is None else [truth.reshape(-1, 2)]
    return np.concatenate(parts + ([] if click is None else [click.reshape(1, 2)])).astype(np.float32)


def _unpoints(
    pts: np.ndarray, truth: np.ndarray | None, click: np.ndarray | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    k = 0 if truth is None else truth.size // 2
    return (None if truth is None else pts[:k].reshape(truth.shape)), (None if click is None else pts[k])


def make_batch(
    s: Samples, idx: np.ndarray, ispec: InputSpec, cfg: TrainConfig, rng: np.random.Generator | None
) -> dict[str, torch.Tensor]:
    """Images (augmented when `rng` is given) and their targets."""
    import cv2

    imgs, dense, pinmap = [], [], []
    for i in idx:
        img = s.images[i]
        truth = None if s.truth is None or np.isnan(s.truth[i]).any() else s.truth[i]
        click = None if s.clicks is None or np.isnan(s.clicks[i]).any() else s.clicks[i]
        if rng is not None:
            if cfg.aug_shift_px:
                dx, dy = rng.integers(-cfg.aug_shift_px, cfg.aug_shift_px + 1, 2)
                m = np.float32([[1, 0, dx], [0, 1, dy]])
                img = cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REFLECT)
                if truth is not None:
                    truth = truth + np.float32([dx, dy, dx, dy])
                if click is not None:
                    click = click + np.float32([dx, dy])
            if cfg.aug_camera:
                img, moved = camera_augment(
                    img, None if truth is None and click is None else _points(truth, click), cfg.aug_camera, rng
                )
                if moved is not None:
                    truth, click = _unpoints(moved, truth, click)
            if cfg.aug_color:
                a = 1 + rng.uniform(-cfg.aug_color, cfg.aug_color)
                b = rng.uniform(-cfg.aug_color, cfg.aug_color) * 128
                img = cv2.convertScaleAbs(img, alpha=a, beta=b)
        imgs.append(img)
        if truth is not None:
            d_t, p_t = dense_targets(truth, s.defects[i] if s.defects is not None else [], ispec)
        else:  # no pin positions: what the label (and a click) say about where
            d_t, p_t = click_targets(int(s.labels[i]), int(s.pins[i]), click, ispec, s.pitch)
        dense.append(d_t)
        pinmap.append(p_t)
    # the image-level loss only applies where PART.md's classes do: images with at most one defect
    image_label = s.labels[idx].copy()
    if s.defects is not None:
        image_label[[len(s.defects[i]) > 1 for i in idx]] = -100
    return {
        "x": torch.from_numpy(normalize(imgs, ispec)),
        "label": torch.from_numpy(s.labels[idx]),
        "image_label": torch.from_numpy(image_label),
        "dense": torch.from_numpy(np.stack(dense)),
        "pinmap": torch.from_numpy(np.stack(pinmap)),
    }


# ---------------------------------------------------------------------------------------------
# Loss and evaluation


class NonFiniteLoss(ValueError):
    """A loss term that is NaN or infinite: training stops rather than write broken weights."""


def _ce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy over the targets that are known (not -100); 0 when none are, never a mean over
    nothing (which is NaN: a batch of relabelled photos has no dense targets)."""
    if not bool((target != -100).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target, weight=weight, ignore_index=-100)


def loss_terms(model: PinViT, batch: dict[str, torch.Tensor], cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """The weighted loss terms of one batch, by name; the training loss is their sum."""
    image, dense, pin_logits = model.forward_features(batch["x"])
    if cfg.supervision == "image":
        return {"image": _ce(image, batch["image_label"])}
    n_cls = dense.shape[-1]
    weight = torch.ones(n_cls)
    weight[:-1] = cfg.defect_weight
    log_scores = image_log_scores(dense, model.grid)
    has_label = batch["image_label"] != -100
    return {
        "dense": _ce(dense.reshape(-1, n_cls), batch["dense"].reshape(-1), weight),
        "pin_map": cfg.pin_map_weight * _ce(pin_logits.reshape(-1, pin_logits.shape[-1]), batch["pinmap"].reshape(-1)),
        "image": cfg.image_weight
        * (
            F.nll_loss(log_scores, batch["image_label"], ignore_index=-100)
            if bool(has_label.any())
            else log_scores.sum() * 0.0
        ),
    }


def compute_loss(model: PinViT, batch: dict[str, torch.Tensor], cfg: TrainConfig, where: str = "") -> torch.Tensor:
    """The training loss; raises NonFiniteLoss naming the term (and `where`, e.g. the batch)."""
    terms = loss_terms(model, batch, cfg)
    for name, value in terms.items():
        if not bool(torch.isfinite(value.detach()).all()):
            raise NonFiniteLoss(
                f"{where}the {name} loss is {value.item()} (not finite); stopping before the weights break"
            )
    return sum(terms.values(), torch.zeros(()))


@torch.no_grad()
def predict(model: PinViT, s: Samples, ispec: InputSpec, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Scores (N, 3) and pin probabilities (N, P+1) for every sample."""
    model.eval()
    scores, pins = [], []
    for i in range(0, len(s), batch_size):
        x = torch.from_numpy(normalize(list(s.images[i : i + batch_size]), ispec))
        sc, pn, _ = model(x)
        scores.append(sc.numpy())
        pins.append(pn.numpy())
    return np.concatenate(scores), np.concatenate(pins)


# ---------------------------------------------------------------------------------------------
# Plots


def save_plots(run: Path, history: list[dict[str, Any]], cm: list[list[int]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    ax[0].plot(ep, [h["train_loss"] for h in history], "o-", label="train loss")
    ax[0].set_xlabel("epoch")
    ax[0].set_title("loss")
    ax[0].legend()
    ax[1].plot(ep, [h["val"]["accuracy"] for h in history], "o-", label="3-class accuracy")
    ax[1].plot(ep, [h["val"]["ng_ok_accuracy"] for h in history], "s-", label="NG vs OK")
    for c in CLASSES:
        ax[1].plot(ep, [h["val"]["recall"][c] for h in history], "--", label=f"recall {c}")
    if all("pin_accuracy" in h["val"] for h in history):
        ax[1].plot(ep, [h["val"]["pin_accuracy"] for h in history], ":", label="pin named right")
    ax[1].set_ylim(0, 1.02)
    ax[1].set_xlabel("epoch")
    ax[1].set_title("validation")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(run / "curves.png", dpi=90)
    plt.close(fig)
    save_confusion(run / "confusion.png", cm, "validation")


def save_confusion(path: Path, cm: list[list[int]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = np.array(cm)
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.imshow(a, cmap="Blues")
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            ax.text(j, i, str(a[i, j]), ha="center", va="center", color="black" if a[i, j] < a.max() / 2 else "white")
    ax.set_xticks(range(len(CLASSES)), CLASSES)
    ax.set_yticks(range(len(CLASSES)), CLASSES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# The loop


def check_collapse(
    val: dict[str, Any], epoch: int, cfg: TrainConfig, before: dict[str, Any] | None = None
) -> str | None:
    """A message when the model predicts (nearly) one class for everything, or never predicts a
    class at all (the original failure called every image class 0), else None. With `before`, the
    previous epoch's validation, it must have done so there too: a model that swings away from a
    class for one epoch at the learning rate's peak is learning, not collapsed."""
    if epoch < cfg.collapse_after:
        return None
    recall = ", ".join(f"{c} {r:.2f}" for c, r in val["recall"].items())
    shares = [val["predicted_share"]] + ([before["predicted_share"]] if before else [])
    cls, share = max(val["predicted_share"].items(), key=lambda kv: kv[1])
    if all(sh[cls] >= cfg.collapse_share for sh in shares):
        return (
            f"collapsed: after {epoch} epochs the model calls {share:.0%} of validation images {cls} "
            f"(per-class recall {recall}); stopping"
        )
    never = [c for c in val["predicted_share"] if all(sh[c] < 0.01 for sh in shares)]
    if never:
        return (
            f"collapsed: after {epoch} epochs the model never predicts {', '.join(never)} "
            f"(per-class recall {recall}); stopping"
        )
    return None


def _model_and_input(cfg: TrainConfig, part: Any) -> tuple[PinViT, InputSpec]:
    """The model (from random weights, or `init_from`'s) and the input it takes."""
    model = build(cfg.model, {**cfg.model_overrides, "n_pins": part.n_pins})
    if cfg.init_from:
        start, start_spec = load_checkpoint(Path(cfg.init_from))
        if start.cfg != model.cfg:
            raise ValueError(f"init_from {cfg.init_from}: its architecture {start.cfg} differs from {model.cfg}")
        model.load_state_dict(start.state_dict())
        print(
            f"starting from {cfg.init_from} ({start_spec.get('epochs_run', '?')} epochs of "
            f"{start_spec.get('train_config', {}).get('name', '?')})"
        )
    h, w = model.cfg.img_size
    frame = {"frame_width": part.camera.frame_width, "frame_height": part.camera.frame_height}
    ispec = InputSpec(**{**frame, "width": w, "height": h, "patch": model.cfg.patch_size, **cfg.input})
    if (ispec.height, ispec.width) != (h, w):
        raise ValueError(f"input size {ispec.width}x{ispec.height} differs from the model's {w}x{h}")
    return model, ispec


def _lr_schedule(cfg: TrainConfig, total: int) -> Any:
    """Linear warm-up, then cosine decay to `min_lr` over the `total` steps."""

    def lr_at(step: int) -> float:
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        t = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
        return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * t))

    return lr_at


def train(cfg: TrainConfig, progress: bool = True) -> dict[str, Any]:
    t_start = time.time()
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    part = load_part(cfg.part)
    model, ispec = _model_and_input(cfg, part)
    run = Path(cfg.out) / cfg.name
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")

    train_s, val_s, data_info = prepare_data(cfg, part, ispec, progress)
    t_data = time.time() - t_start
    print(f"data: {len(train_s)} training, {len(val_s)} validation images ({t_data:.0f}s)")
    keep, per_epoch = data_info.get("keep_frames", 0), cfg.data.keep_per_epoch
    epoch_len = len(train_s) - keep + min(keep, per_epoch) if keep and per_epoch else len(train_s)
    if epoch_len < len(train_s):
        print(f"an epoch: {epoch_len} images ({per_epoch} of the {keep} kept frames, drawn afresh each epoch)")

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, epoch_len // cfg.batch_size)
    lr_at = _lr_schedule(cfg, steps_per_epoch * cfg.epochs)
    ema = None
    if cfg.ema_decay:  # timm's warm-up with power 1 and gamma 1: decay 1 - 1/(1 + n), a running mean
        start = int(cfg.ema_start * steps_per_epoch * cfg.epochs)
        ema = ModelEmaV3(model, cfg.ema_decay, update_after_step=start, use_warmup=True, warmup_power=1.0)
    kept = ema.module if ema else model  # what is validated and saved
    bf16 = use_bf16(cfg.amp)
    print(f"precision: {'bf16 autocast' if bf16 else 'float32'} (amp={cfg.amp}; CPU {isa_text()})")
    rng = np.random.default_rng(cfg.seed)
    history: list[dict[str, Any]] = []
    train_time, step, stopped = 0.0, 0, None
    val: dict[str, Any] = {}
    with open(run / "log.jsonl", "w") as log:
        for epoch in range(1, cfg.epochs + 1):
            t_epoch = time.time()
            losses = _epoch(
                model, opt, train_s, ispec, cfg, rng, lr_at, step, bf16, epoch, steps_per_epoch, progress, ema, keep
            )
            step += len(losses)
            train_time += time.time() - t_epoch
            val = _validate(kept, val_s, ispec)
            rec = {"epoch": epoch, "step": step, "train_loss": float(np.mean(losses)), "val": val,
                   "elapsed_s": round(time.time() - t_start, 1)}  # fmt: skip
            history.append(rec)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            _print_epoch(rec)
            save_plots(run, history, val["confusion"])
            stopped = check_collapse(val, epoch, cfg, history[-2]["val"] if len(history) > 1 else None)
            if stopped:
                print(stopped)
                break
    elapsed = time.time() - t_start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    spec = {
        "model_name": cfg.model,
        "classes": list(CLASSES),
        "input": ispec.to_dict(),
        "part": part.to_dict(),
        "part_fingerprint": part.fingerprint(),
        "thresholds": dict(DEFAULT_THRESHOLDS),
        "train_config": dataclasses.asdict(cfg),
        "config_hash": config_hash(cfg),
        "data": data_info,
        "code_version": CODE_VERSION,
        "val_metrics": val,
        "epochs_run": len(history),
        "collapsed": stopped,
        "train_seconds": round(elapsed, 1),
    }
    save_checkpoint(run / "model.safetensors", kept, spec)
    summary = {
        "run": str(run),
        "elapsed_s": round(elapsed, 1),
        "data_s": round(t_data, 1),
        "peak_rss_mb": round(peak_mb),
        "val": val,
        "collapsed": stopped,
        "precision": "bf16" if bf16 else "float32",
        "cpu_isa": isa_text(),
        "train_images_per_s": round(len(history) * steps_per_epoch * cfg.batch_size / max(train_time, 1e-9), 2),
    }
    (run / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"done in {elapsed / 60:.1f} min (data {t_data:.0f}s), peak memory {peak_mb:.0f} MB; run folder {run}")
    return summary


def _epoch(
    model: PinViT, opt: Any, train_s: Samples, ispec: InputSpec, cfg: TrainConfig, rng: np.random.Generator,
    lr_at: Any, step: int, bf16: bool, epoch: int, steps: int, progress: bool, ema: ModelEmaV3 | None = None,
    data_keep: int = 0,
) -> list[float]:  # fmt: skip
    """One pass over the training set in a fresh random order, from global step `step`; the loss
    of every batch. `ema`, if given, follows the weights after every step. The last `data_keep`
    frames are kept ones: `data.keep_per_epoch` of them are drawn for this pass (epoch_order)."""
    model.train()
    order = epoch_order(len(train_s), data_keep, cfg.data.keep_per_epoch, rng)
    losses: list[float] = []
    bar = tqdm(range(steps), desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", disable=not progress)
    for b in bar:
        batch = make_batch(train_s, order[b * cfg.batch_size : (b + 1) * cfg.batch_size], ispec, cfg, rng)
        batch["x"] = random_convolution(batch["x"], cfg.aug_randconv, rng)
        for g in opt.param_groups:
            g["lr"] = lr_at(step + b)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = compute_loss(model, batch, cfg, where=f"epoch {epoch}, batch {b + 1}: ")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if ema is not None:
            ema.update(model, step=step + b)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}", lr=f"{lr_at(step + b + 1):.1e}")
    return losses


def epoch_order(n: int, keep: int, per_epoch: int | None, rng: np.random.Generator) -> np.ndarray:
    """The indices of one epoch in random order: every frame, except that of the last `keep`
    (the kept frames) only `per_epoch` are drawn, afresh each epoch."""
    if not keep or per_epoch is None or per_epoch >= keep:
        return rng.permutation(n)
    drawn = n - keep + rng.choice(keep, size=per_epoch, replace=False)
    return rng.permutation(np.concatenate([np.arange(n - keep), drawn]))


def _validate(model: PinViT, val_s: Samples, ispec: InputSpec) -> dict[str, Any]:
    scores, pins = predict(model, val_s, ispec)
    pred, pred_pin = decide(scores, pins)
    return metrics(val_s.labels, pred, val_s.pins, pred_pin)


def _print_epoch(rec: dict[str, Any]) -> None:
    val = rec["val"]
    pin_txt = f" pin {val['pin_accuracy']:.3f}" if "pin_accuracy" in val else ""
    print(
        f"epoch {rec['epoch']}: loss {rec['train_loss']:.4f} | val acc {val['accuracy']:.3f} "
        f"NG/OK {val['ng_ok_accuracy']:.3f}{pin_txt} | recall "
        + " ".join(f"{c} {r:.2f}" for c, r in val["recall"].items())
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.train",
        description="Train the pin-defect model on synthetic renders (renders them first if needed).",
        epilog="Presets: " + ", ".join(PRESETS) + ".\n\nSettings (--set KEY=VALUE, or keys of the --config file),"
        " with their defaults:\n" + "\n".join(describe(TrainConfig())),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--preset", default=None, help="a named recipe: " + ", ".join(PRESETS))
    ap.add_argument("--config", type=Path, default=None, help="JSON file of settings to override")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set epochs=4 --set data.n=2000 (repeatable)",
    )
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)

    def run() -> int:
        train(resolve_config(args.preset, args.config, args.set), progress=not args.quiet)
        return 0

    return guarded(run, {(ValueError, PartSpecError, DataError, SynthError): 2})


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    sys.exit(main())
