"""export.onnx_export: the squeeze-If fold is exact, and the description is embedded."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import timm
import torch

from export.onnx_export import export_onnx, get_description
from models.pinvit import PinViT


class Top(torch.nn.Module):
    """Picks one row per batch item with gather + squeeze(1), as PinViT's decode does."""

    def forward(self, x):
        idx = x.sum(-1).argmax(1, keepdim=True)
        return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1])).squeeze(1).softmax(-1)


class Wrap(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.top = Top()

    def forward(self, x):
        t = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        s = self.top(t)
        return s, s * 2, t[..., 0].reshape(-1, 4, 4)


def test_fold_keeps_results_and_dynamic_batch(tmp_path):
    path = export_onnx(Wrap(), tmp_path / "m.onnx", (4, 4), {"format": "x", "n": [1, 2]})
    m = onnx.load(str(path))
    assert "If" not in {n.op_type for n in m.graph.node}
    assert get_description(m) == {"format": "x", "n": [1, 2]}
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for b in (1, 5):
        x = np.random.default_rng(b).normal(size=(b, 3, 4, 4)).astype(np.float32)
        with torch.no_grad():
            ref = Wrap()(torch.from_numpy(x))
        for got, want in zip(sess.run(None, {"input": x}), ref, strict=True):
            np.testing.assert_allclose(got, want.numpy(), atol=1e-6)


@pytest.mark.parametrize(
    "overrides",
    [{"instance_norm_stages": 2}, {"pin_contrast": True, "mixstyle": 0.5}],
    ids=["instance-norm", "pin-contrast+mixstyle"],
)
def test_a_model_with_domain_settings_exports_and_onnxruntime_agrees(tmp_path, overrides):
    """The model runs on the station through ONNX: a stem with instance norm (or MixStyle, the
    identity at inference) and a head with pin contrast must export as they run."""
    torch.manual_seed(0)
    model = timm.create_model("pinvit_tiny_cs16", depth=1, stem_depth=2, **overrides).eval()
    assert isinstance(model, PinViT)
    x = torch.randn(2, 3, 192, 320)
    path = export_onnx(model, tmp_path / "m.onnx", (192, 320), {"test": True})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        want = model(x)
    for g, w in zip(got, want, strict=True):
        assert np.allclose(g, w.numpy(), atol=1e-4)
