"""Checkpoints as safetensors: weights plus a JSON description (never pickle, never eval).

The description ("model spec") carries what is needed to use the weights right: the timm model
name and its config, the input spec (crop, size, mean/std), the part spec, classes, thresholds,
and where the model came from (data and config hashes, code version).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from models.pinvit import PinViT, PinViTConfig, build
from models.preprocess import InputSpec

FORMAT = "pininspect-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file."""


def save_checkpoint(path: Path, model: PinViT, spec: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = {**spec, "format": FORMAT, "model_config": model.cfg.to_dict()}
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"pininspect": json.dumps(spec, sort_keys=True)})
    tmp.replace(path)  # never leave a half-written checkpoint under the real name
    return path


def read_spec(path: Path) -> dict[str, Any]:
    """The JSON description of a checkpoint, without loading the weights."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    if "pininspect" not in meta:
        raise CheckpointError(f"{path}: a safetensors file, but not a pininspect checkpoint (no model spec)")
    spec = json.loads(meta["pininspect"])
    if spec.get("format") != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {spec.get('format')!r}, this version reads {FORMAT}")
    return spec


def load_checkpoint(path: Path) -> tuple[PinViT, dict[str, Any]]:
    spec = read_spec(path)
    try:
        model = build(spec["model_name"], PinViTConfig.from_dict(spec["model_config"]).to_dict())
    except (RuntimeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: cannot build the model it describes ({e})") from None
    try:
        state = load_file(str(path))
        model.load_state_dict(state)
    except (SafetensorError, RuntimeError, OSError) as e:
        raise CheckpointError(f"{path}: weights do not load ({str(e).splitlines()[0]})") from None
    model.eval()
    return model, spec


class TorchModel:
    """A torch model behind the runtime's scoring interface (`models.scoring.Model`), so a
    checkpoint is scored by the same code, preprocessing and verdict rule as a bundle."""

    def __init__(self, model: PinViT, spec: dict[str, Any]):
        self.model = model.eval()
        self.spec = spec
        self.input_spec = InputSpec.from_dict(spec["input"])
        self.thresholds: dict[str, float] = dict(spec.get("thresholds", {}))

    @classmethod
    def load(cls, path: Path) -> TorchModel:
        return cls(*load_checkpoint(path))

    def infer_batch(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with torch.no_grad():
            scores, pins, heat = (t.numpy() for t in self.model(torch.from_numpy(np.ascontiguousarray(x, np.float32))))
        return scores, pins, heat
