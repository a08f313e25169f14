import numpy as np
import pytest
import torch

from models.checkpoint import CheckpointError, load_checkpoint, read_spec, save_checkpoint
from models.decision import decide
from models.pinvit import build
from models.preprocess import InputSpec, preprocess


def test_checkpoint_round_trip(tmp_path):
    model = build("pinvit_tiny_cs16", {"depth": 1}).eval()
    path = save_checkpoint(tmp_path / "m.safetensors", model, {"model_name": "pinvit_tiny_cs16", "input": {}})
    again, spec = load_checkpoint(path)
    assert spec["model_config"]["depth"] == 1
    x = torch.from_numpy(preprocess(np.full((480, 640, 3), 90, np.uint8), InputSpec()))
    with torch.no_grad():
        for a, b in zip(model(x), again(x), strict=True):
            assert torch.allclose(a, b)


def test_bad_checkpoints_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        read_spec(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        load_checkpoint(junk)
    model = build("pinvit_tiny_cs16", {"depth": 1})
    path = save_checkpoint(tmp_path / "t.safetensors", model, {"model_name": "pinvit_tiny_cs16"})
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="t.safetensors"):
        load_checkpoint(path)


def test_decide_rule():
    scores = np.array([[0.1, 0.1, 0.8], [0.6, 0.3, 0.1], [0.3, 0.3, 0.4], [0.1, 0.7, 0.2]])
    pins = np.zeros((4, 28))
    pins[:, 5] = 1
    label, pin = decide(scores, pins)
    assert list(label) == [2, 0, 0, 1]  # torn between defects is still NG
    assert list(pin) == [0, 5, 5, 5]
    label, _ = decide(scores, pins, {"BENDNG": 0.9, "NUKENG": 0.9})
    assert list(label) == [2, 2, 2, 2]


def test_unknown_model_name_is_a_checkpoint_error(tmp_path):
    path = save_checkpoint(tmp_path / "u.safetensors", build("pinvit_tiny_cs16", {"depth": 1}), {"model_name": "nope"})
    with pytest.raises(CheckpointError, match="u.safetensors"):
        load_checkpoint(path)
