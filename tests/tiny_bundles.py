"""Small checkpoints and bundles for the tests, built in seconds (no training).

The weights are random, with the output heads scaled up so scores spread over 0..1 instead of
sitting at 1/3: then a quantization error can flip a verdict, and a test comparing INT8 with FP32
verdicts is not trivially true. The verdicts mean nothing about pins.

    from tiny_bundles import tiny_bundle
    bundle = tiny_bundle(tmp_path / "bundle")      # all four models, ~15 s on 2 cores
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from models.part import CLASSES, PartSpec, load_part

_BUILT: dict[tuple[Any, ...], Path] = {}


def tiny_spec(part: PartSpec | None = None, name: str = "tiny", thresholds: dict[str, float] | None = None) -> dict:
    """A model spec shaped like the one training.train writes."""
    from models.decision import DEFAULT_THRESHOLDS
    from models.preprocess import InputSpec

    part = part or load_part("default")
    ispec = InputSpec(frame_width=part.camera.frame_width, frame_height=part.camera.frame_height)
    return {
        "model_name": "pinvit_tiny_cs16",
        "classes": list(CLASSES),
        "input": ispec.to_dict(),
        "part": part.to_dict(),
        "part_fingerprint": part.fingerprint(),
        "thresholds": dict(thresholds or DEFAULT_THRESHOLDS),
        "train_config": {"name": name},
        "config_hash": "0123456789abcdef",
        "data": {"train": "none (random weights)", "train_hash": "", "val": "", "val_hash": ""},
        "code_version": "0.0.0-test",
        "val_metrics": {},
        "epochs_run": 0,
    }


def tiny_checkpoint(path: Path, seed: int = 0, part: PartSpec | None = None, sharpen: float = 25.0) -> Path:
    """A random pinvit_tiny_cs16 checkpoint with spread-out scores."""
    import torch

    from models.checkpoint import save_checkpoint
    from models.pinvit import build

    torch.manual_seed(seed)
    part = part or load_part("default")
    model = build("pinvit_tiny_cs16", {"n_pins": part.n_pins})
    with torch.no_grad():
        model.dense_head.weight.mul_(sharpen)
        model.pin_head.weight.mul_(sharpen / 2.5)
    model.eval()
    return save_checkpoint(Path(path), model, tiny_spec(part, name=f"tiny-{seed}"))


def tiny_bundle(
    out: Path,
    models: list[str] | None = None,
    calib_n: int = 16,
    eval_n: int = 0,
    seed: int = 0,
    part: PartSpec | None = None,
    quantize_stem: bool = True,
) -> Path:
    """Export a tiny checkpoint to a bundle in `out`. Within one process the same arguments give
    the same folder back (tests share it; copy it before damaging it)."""
    from export.build import ALL_MODELS, ExportConfig, build_bundle

    key = (tuple(models or ALL_MODELS), calib_n, eval_n, seed, part.fingerprint() if part else None, quantize_stem)
    if key in _BUILT and (_BUILT[key] / "bundle.json").exists():
        return _BUILT[key]
    out = Path(out)
    ckpt = tiny_checkpoint(checkpoint_of(out), seed, part)
    cfg = ExportConfig(
        checkpoint=str(ckpt),
        out=str(out),
        models=list(models or ALL_MODELS),
        calib_n=calib_n,
        eval_n=eval_n,
        gate=eval_n > 0,
        workers=1,
        max_drop=100.0,  # random weights: accuracy is chance either way
        max_escape_rise=100.0,
        quantize_stem=quantize_stem,
    )
    build_bundle(cfg, progress=False)
    _BUILT[key] = out
    return out


def checkpoint_of(bundle: Path) -> Path:
    """Where tiny_bundle keeps the checkpoint it exported (beside the bundle)."""
    return Path(bundle).parent / f"{Path(bundle).name}-checkpoint" / "model.safetensors"


def copy_bundle(src: Path, dst: Path) -> Path:
    """A private copy of a bundle folder, to damage in a test."""
    shutil.copytree(src, dst)
    return dst


def other_part(name: str = "other", **changes: Any) -> PartSpec:
    """The default part under another name (and geometry), for refusal tests."""
    return dataclasses.replace(load_part("default"), name=name, **changes)
