"""The same frames through torch, ONNX Runtime and OpenVINO: FP32 agrees to 1e-3, INT8 on the verdict.

The INT8 check is meaningful because tiny_bundles' model has its output heads scaled up: its
scores spread over 0..1, so quantization noise can flip a verdict. On frames where the FP32 verdict
is clear (every decision margin above MARGIN), INT8 must give the same verdict; frames closer to a
threshold than that may flip, and the test says how many there were. Random weights, so this says
nothing about accuracy: the quantize gate measures that on a trained model.
"""

import numpy as np
import pytest
from tiny_bundles import checkpoint_of, tiny_bundle

from export.data import load, render
from models.decision import decide
from models.part import load_part
from models.runtime import Runtime

FP32_TOL = 1e-3
MARGIN = 0.15  # score distance from every decision boundary for a verdict to count as clear
# Mean score change INT8 may make. No per-frame maximum: a borderline frame of a random-weight
# model with scaled heads moves by 0.4 on one CPU (AVX2, no VNNI) and 0.1 on another, and either
# is sound; a broken INT8 model (saturated products) changes clear verdicts, which is checked.
INT8_MEAN_TOL = 0.05


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    bundle = tiny_bundle(tmp_path_factory.mktemp("parity") / "bundle")
    folder = render(
        load_part("default"), tmp_path_factory.mktemp("frames"), 24, 11, "photo=0.5,flat=0.5", 1.3, 1, False
    )
    return bundle, load(folder, Runtime(bundle, precision="fp32").input_spec, "parity")


def _outputs(rt, frames):
    return rt.infer_batch(frames.inputs())


def _margin(scores, thresholds):
    """How far each frame's verdict is from changing (min over the rule's comparisons)."""
    b, n = scores[:, 0], scores[:, 1]
    t = np.array([thresholds["BENDNG"], thresholds["NUKENG"]])
    ng_margin = np.abs(np.maximum(np.maximum(b - t[0], n - t[1]), b + n - t.min()))
    class_margin = np.where(b + n >= t.min(), np.abs(b - n), np.inf)  # which defect: only matters when NG
    return np.minimum(ng_margin, class_margin)


def test_torch_onnxruntime_and_openvino_fp32_agree(setup):
    import torch

    from models.checkpoint import load_checkpoint

    bundle, frames = setup
    model, _ = load_checkpoint(checkpoint_of(bundle))
    with torch.no_grad():
        ref = [t.numpy() for t in model(torch.from_numpy(frames.inputs()))]
    for backend in ("onnxruntime", "openvino"):
        out = _outputs(Runtime(bundle, backend=backend, precision="fp32"), frames)
        for name, a, b in zip(("scores", "pins", "heatmap"), out, ref, strict=True):
            assert a.shape == b.shape
            assert np.abs(a - b).max() <= FP32_TOL, f"{backend} {name}: {np.abs(a - b).max():.2e}"
    # batch 1 gives the same as the batch (dynamic batch dimension, nothing baked in)
    rt = Runtime(bundle, backend="openvino", precision="fp32")
    one = rt.infer_batch(frames.inputs(0, 1))
    assert np.abs(one[0][0] - ref[0][0]).max() <= FP32_TOL


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_int8_gives_the_fp32_verdict_where_it_is_clear(setup, backend):
    bundle, frames = setup
    fp32 = Runtime(bundle, backend=backend, precision="fp32")
    int8 = Runtime(bundle, backend=backend, precision="int8")
    s32, p32, h32 = _outputs(fp32, frames)
    s8, p8, h8 = _outputs(int8, frames)
    th = fp32.thresholds
    clear = _margin(s32, th) > MARGIN
    assert clear.sum() >= len(frames) // 3, "too few clear frames: the test would say nothing"
    l32, l8 = decide(s32, p32, th)[0], decide(s8, p8, th)[0]
    assert (l32[clear] == l8[clear]).all(), f"{backend} INT8 changed {int((l32 != l8)[clear].sum())} clear verdicts"
    assert np.abs(s8 - s32).mean() <= INT8_MEAN_TOL
    print(
        f"{backend}: {clear.sum()}/{len(frames)} clear frames, all agree; "
        f"{int((l32 != l8)[~clear].sum())} of {int((~clear).sum())} borderline frames flipped; "
        f"max |dscore| {np.abs(s8 - s32).max():.3f}"
    )
