"""PinViT's read-out (`decode`): verdict from the most defective-looking token, pin by vote."""

import math

import pytest
import timm
import torch

from models.pinvit import MixStyle, PinViT, decode

GRID = (1, 4)  # four tokens are enough to show the rule


def _logits(probs: list[list[float]]) -> torch.Tensor:
    return torch.tensor(probs).clamp_min(1e-9).log().unsqueeze(0)  # (1, T, K)


def test_pin_is_the_one_no_defect_token_rules_out():
    # three defect tokens around pin 5: each also sees a neighbour (4 or 6); the fourth token is clean
    dense = _logits([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.0, 0.0, 1.0]])
    pins = torch.zeros(1, 4, 8)
    pins[0, 0, 5], pins[0, 0, 6] = 0.5, 0.5
    pins[0, 1, 5], pins[0, 1, 4] = 0.5, 0.5
    pins[0, 2, 6], pins[0, 2, 5] = 0.9, 0.1
    pins[0, 3, 0] = 1.0  # the clean token sits on no pin
    pin_logits = pins.clamp_min(1e-9).log()
    # a plain average of the defect tokens' beliefs would name pin 6 (0.47 vs 0.37)
    assert pins[0, :3].mean(0).argmax().item() == 6
    scores, pin_probs, heatmap = decode(dense, pin_logits, GRID)
    assert pin_probs[0, 1:].argmax().item() + 1 == 5
    assert math.isclose(pin_probs.sum().item(), 1.0, rel_tol=1e-5)
    assert torch.allclose(scores[0], torch.tensor([0.9, 0.05, 0.05]), atol=1e-4)
    assert heatmap.shape == (1, *GRID) and heatmap[0, 0, 3] < 1e-6 < heatmap[0, 0, 0]


def test_a_faint_defect_token_does_not_veto_the_surest_one():
    # the surest defect token leans to pin 5; a faint one at the defect's edge is sure of pin 6
    dense = _logits([[0.95, 0.0, 0.05], [0.4, 0.0, 0.6], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    pins = torch.full((1, 4, 8), 1e-9)
    pins[0, 0, 5], pins[0, 0, 6] = 0.6, 0.4
    pins[0, 1, 5], pins[0, 1, 6] = 0.01, 0.99
    pins[0, 2:, 0] = 1.0
    pin_logits = pins.log()
    # weighted by defect^2 the faint token's certainty would win (pin 6)
    w = torch.tensor([0.95**2, 0.4**2])
    w = w / w.sum()
    assert (pin_logits[0, :2] * w[:, None]).sum(0).argmax().item() == 6
    _, pin_probs, _ = decode(dense, pin_logits, GRID)
    assert pin_probs[0].argmax().item() == 5


def test_no_defect_anywhere_still_gives_pin_probabilities():
    dense = _logits([[0.0, 0.0, 1.0]] * 4)
    _, pin_probs, _ = decode(dense, torch.zeros(1, 4, 8), GRID)
    assert torch.isfinite(pin_probs).all() and math.isclose(pin_probs.sum().item(), 1.0, rel_tol=1e-5)


def test_registered_with_timm_and_returns_the_three_outputs():
    model = timm.create_model("pinvit_tiny_cs16", pretrained=False, depth=1)
    assert isinstance(model, PinViT)
    model.eval()
    with torch.no_grad():
        scores, pins, heatmap = model(torch.randn(2, 3, 192, 320))
    assert scores.shape == (2, 3) and pins.shape == (2, 28) and heatmap.shape == (2, 12, 20)
    assert torch.allclose(scores.sum(1), torch.ones(2), atol=1e-5)
    assert torch.allclose(pins.sum(1), torch.ones(2), atol=1e-5)


def _stem_front(instance_norm_stages: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model("pinvit_tiny_cs16", depth=1, stem_depth=2, instance_norm_stages=instance_norm_stages)
    model.eval()
    return model.vit.patch_embed.proj[:6]  # the first stem stage: two convs, each with its norm and ReLU


def test_instance_norm_stages_take_out_what_a_camera_sets_for_the_whole_frame():
    """A frame twice as bright (a brighter lamp, another renderer's exposure) reaches the first stage's
    output unchanged with instance norm there; with batch norm (the default) it does not."""
    x = torch.randn(2, 3, 192, 320)
    with torch.no_grad():
        inst = _stem_front(1)
        assert torch.allclose(inst(2.0 * x), inst(x), atol=1e-4)
        batch = _stem_front(0)
        assert not torch.allclose(batch(2.0 * x), batch(x), atol=1e-2)


def test_mixstyle_mixes_styles_only_while_training_and_keeps_the_weights_names():
    """model_overrides.mixstyle: in training, a batch's images leave the batch-norm stem stages
    with each other's statistics mixed in; in eval (the station, the export) the stem is what it
    is without it, and a checkpoint of either loads into the other."""
    torch.manual_seed(0)
    plain = timm.create_model("pinvit_tiny_cs16", depth=1, stem_depth=2, instance_norm_stages=1)
    mixed = timm.create_model("pinvit_tiny_cs16", depth=1, stem_depth=2, instance_norm_stages=1, mixstyle=1.0)
    assert plain.state_dict().keys() == mixed.state_dict().keys()
    mixed.load_state_dict(plain.state_dict())
    n_mix = sum(isinstance(m, MixStyle) for m in mixed.modules())
    assert n_mix == 2  # after stages 2 and 3; stage 1 is instance-normalized
    x = torch.randn(4, 3, 192, 320)
    x[:2] = 3.0 * x[:2] + 1.0  # two "renderers": different contrast and level
    plain.eval()
    mixed.eval()
    with torch.no_grad():
        for got, want in zip(mixed(x), plain(x), strict=True):
            assert torch.equal(got, want)
        mixed.train()
        stem = mixed.vit.patch_embed.proj
        torch.manual_seed(1)
        out = stem(x)
        stem_plain = plain.vit.patch_embed.proj.train()
        assert not torch.allclose(out, stem_plain(x), atol=1e-3)  # styles were mixed
    with pytest.raises(ValueError, match="mixstyle: 1.5 is not a probability"):
        timm.create_model("pinvit_tiny_cs16", depth=1, mixstyle=1.5)


def test_mixstyle_swaps_feature_statistics_and_keeps_the_content():
    """With lambda 0 (all the other image's style) an image takes its partner's per-channel mean
    and spread, and its own normalized pattern stays."""
    m = MixStyle(p=1.0).train()
    m.alpha = 1e-3  # Beta(a, a) with a tiny a: lambda is 0 or 1
    x = torch.randn(2, 4, 8, 8)
    x[1] = 5.0 * x[1] + 2.0
    torch.manual_seed(3)
    for _ in range(100):  # a batch where both took image 1's style: 1 in 8
        y = m(x)
        for i in range(2):
            z = (y[i] - y[i].mean((1, 2), keepdim=True)) / y[i].std((1, 2), keepdim=True)
            zx = (x[i] - x[i].mean((1, 2), keepdim=True)) / x[i].std((1, 2), keepdim=True)
            assert torch.allclose(z, zx, atol=1e-3)  # the content is the image's own
        spreads = sorted(float(y[i].std()) for i in range(2))
        if spreads[0] > 2.5:  # both took image 1's style once
            return
    raise AssertionError("in 100 batches no image took the other's style")


def test_pin_contrast_sees_a_pin_against_the_other_pins_not_the_drawing():
    """pin_contrast: a change every token shares (another renderer's shading, another light)
    cancels, and the one token unlike the other pins is the one that stands out; background
    tokens do not count towards the typical pin."""
    from models.pinvit import pin_contrast

    torch.manual_seed(0)
    d, t = 8, 6
    pin = torch.randn(d)
    patches = pin.repeat(1, t, 1)  # (1, T, D): five pin tokens alike...
    patches[0, 2] += torch.randn(d)  # ...one pin unlike them
    patches[0, 5] = 10 * torch.randn(d)  # a background token
    pin_logits = torch.full((1, t, 28), -9.0)
    pin_logits[0, :5, 3] = 9.0  # tokens 0-4 on a pin (slot 3), token 5 on no pin (slot 0)
    pin_logits[0, 5, 0] = 9.0
    out = pin_contrast(patches, pin_logits)
    assert out.shape == (1, t, d)
    contrast = out[0, :5].norm(dim=-1)
    assert int(contrast.argmax()) == 2 and contrast[2] > 3 * contrast[[0, 1, 3, 4]].max()
    shifted = pin_contrast(patches + 5 * torch.randn(d), pin_logits)
    assert torch.allclose(shifted, out, atol=1e-4)


def test_a_model_with_pin_contrast_runs_and_keeps_its_outputs_and_weights():
    torch.manual_seed(0)
    model = timm.create_model("pinvit_tiny_cs16", depth=1, pin_contrast=True).eval()
    plain = timm.create_model("pinvit_tiny_cs16", depth=1).eval()
    model.load_state_dict(plain.state_dict())  # the same weights, read differently
    x = torch.randn(2, 3, 192, 320)
    with torch.no_grad():
        scores, pins, heatmap = model(x)
        assert not torch.allclose(heatmap, plain(x)[2])
    assert scores.shape == (2, 3) and pins.shape == (2, 28) and heatmap.shape == (2, 12, 20)
    assert torch.allclose(scores.sum(1), torch.ones(2), atol=1e-5)
    with torch.no_grad():
        assert torch.equal(model.forward_features(x)[2], plain.forward_features(x)[2])  # the pin map is as it was
