"""PinViT: a timm Vision Transformer with a convolutional stem and dense per-pin heads.

Why dense heads: one bad pin among 27 is too little signal for an image label at this data
budget (a plain ViT stays at chance; see docs/ablation.md). The generator knows where every pin
is, so each output token is told (a) whether a defective pin lies under it and which defect,
and (b) which pin (1..27) it sits on, if any (geometry only: never which pin is defective). The
image verdict is read from the most defective-looking token, and the pin number from the pin map
under the defect.

Post-processing lives in `forward`, so torch, ONNX and OpenVINO return the same three outputs:
  scores  (B, 3)       BENDNG, NUKENG, OK probabilities at the most defective-looking token
  pins    (B, P+1)     which pin is defective (0 = none): the defect tokens' pin beliefs, combined
  heatmap (B, gh, gw)  per-token probability of a defect

Read top to bottom: blocks, model, configs, registered variants (timm's layout).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn
from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer

# ---------------------------------------------------------------------------------------------
# Blocks


def _instance_norm(channels: int) -> nn.Module:
    """Each image's feature maps normalized by their own per-channel mean and spread (IBN-Net, Pan
    et al., ECCV 2018): in the first stages this removes what a renderer or camera sets for the
    whole frame (tint, contrast, texture statistics) and keeps what differs within it (a pin that
    is not like its neighbours)."""
    return nn.InstanceNorm2d(channels, affine=True)


class MixStyle(nn.Module):
    """MixStyle (Zhou et al., ICLR 2021): while training, with probability `p` per batch, each
    image's feature statistics (per-channel mean and spread, what a renderer or camera sets for
    the whole frame) are mixed with another image's of the batch; the content stays. The model
    sees styles between those of its renders, and learns features that do not depend on them.
    At inference (and in the exported graph) it is the identity."""

    def __init__(self, p: float = 0.5, alpha: float = 0.1, eps: float = 1e-6):
        super().__init__()
        self.p, self.alpha, self.eps = p, alpha, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p <= 0 or len(x) < 2 or torch.rand(()) >= self.p:
            return x
        mu = x.mean((2, 3), keepdim=True).detach()
        sig = (x.var((2, 3), keepdim=True) + self.eps).sqrt().detach()
        lam = torch.distributions.Beta(self.alpha, self.alpha).sample((len(x), 1, 1, 1)).to(x)
        perm = torch.randperm(len(x), device=x.device)
        mu_mix = lam * mu + (1 - lam) * mu[perm]
        sig_mix = lam * sig + (1 - lam) * sig[perm]
        return (x - mu) / sig * sig_mix + mu_mix

    def extra_repr(self) -> str:
        return f"p={self.p}, alpha={self.alpha}"


class ConvStem(nn.Module):
    """Patch embedding as a few stride-2 3x3 convolutions instead of one 16x16 linear patch:
    cheap, and it gives the transformer local edges (a pin's outline, a tip's offset)."""

    def __init__(
        self,
        img_size: Any = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 192,
        norm_layer: Any = None,
        flatten: bool = True,
        bias: bool = True,
        stem_depth: int = 1,
        instance_norm_stages: int = 0,
        mixstyle: float = 0.0,
        **_: Any,
    ):
        super().__init__()
        h, w = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.img_size = (h, w)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (h // patch_size, w // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.flatten = flatten
        self.dynamic_img_pad = False
        n_down = patch_size.bit_length() - 1  # 16 -> 4 stride-2 convs
        chans = [in_chans] + [max(16, embed_dim // 2 ** (n_down - i)) for i in range(1, n_down)]
        if not 0 <= instance_norm_stages <= len(chans) - 1:
            raise ValueError(
                f"instance_norm_stages: {instance_norm_stages} is outside [0, {len(chans) - 1}] "
                f"(the stem has {len(chans) - 1} normalized stages)"
            )
        if not 0 <= mixstyle <= 1:
            raise ValueError(f"mixstyle: {mixstyle} is not a probability in [0, 1]")
        layers: list[nn.Module] = []
        for stage, (cin, cout) in enumerate(zip(chans[:-1], chans[1:], strict=True)):
            norm = _instance_norm if stage < instance_norm_stages else nn.BatchNorm2d
            layers += [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), norm(cout), nn.ReLU(inplace=True)]
            for _ in range(stem_depth - 1):  # extra stride-1 convs: more local feature work per stage
                layers += [nn.Conv2d(cout, cout, 3, 1, 1, bias=False), norm(cout), nn.ReLU(inplace=True)]
            if mixstyle > 0 and stage >= instance_norm_stages:  # (after instance norm every image's style is one)
                # in the stage's last activation's slot: the weights keep their names, with or without it
                layers[-1] = nn.Sequential(layers[-1], MixStyle(mixstyle))
        layers.append(nn.Conv2d(chans[-1], embed_dim, 3, 2, 1, bias=bias))
        self.proj = nn.Sequential(*layers)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def feat_ratio(self, as_scalar: bool = True) -> Any:
        return self.patch_size[0] if as_scalar else self.patch_size

    def dynamic_feat_size(self, img_size: tuple[int, int]) -> tuple[int, int]:
        return img_size[0] // self.patch_size[0], img_size[1] // self.patch_size[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        if self.flatten:
            x = x.flatten(2).transpose(1, 2)
        return self.norm(x)


# ---------------------------------------------------------------------------------------------
# Model


@dataclass(frozen=True)
class PinViTConfig:
    img_size: tuple[int, int] = (192, 320)  # (height, width)
    patch_size: int = 16
    embed_dim: int = 192
    depth: int = 6
    num_heads: int = 3
    mlp_ratio: float = 3.0
    conv_stem: bool = True
    stem_depth: int = 1  # convs per stem stage (1 = one stride-2 conv per stage)
    instance_norm_stages: int = 0  # the first stem stages normalize per image (instance), the rest per batch
    mixstyle: float = 0.0  # training only: chance a batch mixes its images' styles after batch-norm stages
    pin_contrast: bool = False  # the dense head sees each token minus the typical pin of the frame
    n_pins: int = 27
    num_classes: int = 3  # BENDNG, NUKENG, OK: the dense map's last class is "no defect here"
    drop_path_rate: float = 0.05
    head: str = "dense"  # "dense": verdict from the per-token map; "cls": from the CLS token (plain ViT)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PinViTConfig:
        d = dict(d)
        d["img_size"] = tuple(d["img_size"])
        return cls(**d)


class PinViT(nn.Module):
    def __init__(self, cfg: PinViTConfig):
        super().__init__()
        self.cfg = cfg
        kw: dict[str, Any] = {}
        if cfg.conv_stem:
            stem = functools.partial(
                ConvStem,
                stem_depth=cfg.stem_depth,
                instance_norm_stages=cfg.instance_norm_stages,
                mixstyle=cfg.mixstyle,
            )
            kw = {"embed_layer": stem}
        self.vit = VisionTransformer(
            img_size=cfg.img_size,
            patch_size=cfg.patch_size,
            embed_dim=cfg.embed_dim,
            depth=cfg.depth,
            num_heads=cfg.num_heads,
            mlp_ratio=cfg.mlp_ratio,
            num_classes=cfg.num_classes,  # the CLS head: image-level logits (the plain-ViT baseline)
            drop_path_rate=cfg.drop_path_rate,
            **kw,
        )
        self.grid = self.vit.patch_embed.grid_size
        self.dense_head = nn.Linear(cfg.embed_dim, cfg.num_classes)
        self.pin_head = nn.Linear(cfg.embed_dim, cfg.n_pins + 1)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw logits: image (B, C) from the CLS token, dense (B, T, C), pin map (B, T, P+1)."""
        tokens = self.vit.forward_features(x)
        patches = tokens[:, self.vit.num_prefix_tokens :]
        pin_logits = self.pin_head(patches)
        feats = pin_contrast(patches, pin_logits) if self.cfg.pin_contrast else patches
        return self.vit.forward_head(tokens), self.dense_head(feats), pin_logits

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image, dense, pin_logits = self.forward_features(x)
        if self.cfg.head == "cls":
            b, t = dense.shape[:2]
            return image.softmax(-1), pin_logits.new_zeros(b, pin_logits.shape[-1]), dense.new_zeros(b, *self.grid)
        return decode(dense, pin_logits, self.grid)


def pin_contrast(patches: torch.Tensor, pin_logits: torch.Tensor) -> torch.Tensor:
    """Each token's features minus those of a typical pin on this frame: the mean of the tokens the
    pin map puts on a pin (weight: 1 - p(no pin)). 26 of 27 pins are good, so the mean is a good
    pin as this camera, light and renderer draw it; whatever they do to every token alike cancels,
    and a token unlike the mean is a pin unlike its neighbours. Only the difference goes on: a
    linear head given both the features and the difference could learn the features alone."""
    on_pin = 1.0 - pin_logits.detach().softmax(-1)[..., :1]  # (B, T, 1); the pin map stays geometry only
    typical = (patches * on_pin).sum(1, keepdim=True) / (on_pin.sum(1, keepdim=True) + 1e-6)
    return patches - typical


VOTE_SQUARINGS = 4  # the pin vote weighs (defect / top defect)^(2^4 = 16), see decode


def decode(dense: torch.Tensor, pin_logits: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    """Dense logits -> (scores, pins, heatmap); see the module docstring. Export-friendly ops only."""
    p = dense.softmax(-1)  # (B, T, C), last class = no defect
    defect = 1.0 - p[..., -1]  # (B, T); saturated tokens tie at exactly 1, the same in every runtime
    top = defect.argmax(1, keepdim=True)  # (B, 1)
    scores = torch.gather(p, 1, top.unsqueeze(-1).expand(-1, -1, p.shape[-1]))[:, 0]
    # Which pin: every defect token votes with its whole pin belief, in log space (a product of
    # experts). The pin map is purely geometric, so a token at the edge of the defect may sit
    # nearer a neighbour; the defective pin is the one no defect token rules out. A token's vote
    # weighs (its defect probability / the top token's)^16: the surest defect tokens decide, the
    # faint ones around them barely count (the exponent was chosen on the selection set, see
    # docs/ablation.md). (the weights use the defect classes' own sum: 1 - p(no defect) cancels to noise when small)
    d = p[..., :-1].sum(-1)
    w = (d + 1e-12) / (d.amax(1, keepdim=True) + 1e-12)  # the surest token: 1
    for _ in range(VOTE_SQUARINGS):  # ^16 by squaring: exact multiplies in every runtime (no Pow op)
        w = w * w
    w = w / w.sum(1, keepdim=True)
    pins = (pin_logits.log_softmax(-1) * w.unsqueeze(-1)).sum(1).softmax(-1)
    heatmap = defect.reshape(-1, grid[0], grid[1])
    return scores, pins, heatmap


def image_log_scores(dense: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Log of the image scores exactly as `forward` reads them (at the most defective-looking
    token), for an image-level loss that trains the decision rule the station uses."""
    scores, _, _ = decode(dense, dense[..., :1], grid)
    return torch.log(scores.clamp_min(1e-6))


# ---------------------------------------------------------------------------------------------
# Registered variants: timm.create_model("pinvit_small_cs16", img_size=(192, 320))


def _create(pretrained: bool, **kwargs: Any) -> PinViT:
    if pretrained:
        raise ValueError("no pretrained PinViT weights exist; train one with python -m training.train")
    fields = set(PinViTConfig.__dataclass_fields__)
    return PinViT(PinViTConfig(**{k: v for k, v in kwargs.items() if k in fields}))


@register_model
def pinvit_small_cs16(pretrained: bool = False, **kwargs: Any) -> PinViT:
    return _create(pretrained, **{"embed_dim": 192, "depth": 6, "num_heads": 3, "conv_stem": True, **kwargs})


@register_model
def pinvit_tiny_cs16(pretrained: bool = False, **kwargs: Any) -> PinViT:
    return _create(pretrained, **{"embed_dim": 128, "depth": 4, "num_heads": 2, "conv_stem": True, **kwargs})


@register_model
def pinvit_plain_p16(pretrained: bool = False, **kwargs: Any) -> PinViT:
    """A plain ViT (16x16 linear patches) as a newcomer would write it: the seed-like baseline."""
    return _create(pretrained, **{"embed_dim": 192, "depth": 6, "num_heads": 3, "conv_stem": False, **kwargs})


def build(name: str, cfg_overrides: dict[str, Any] | None = None) -> PinViT:
    import timm

    model = timm.create_model(name, pretrained=False, **(cfg_overrides or {}))
    assert isinstance(model, PinViT)
    return model
