"""EfficientNetV2 (Tan & Le, ICML 2021), the S variant's stage layout, in plain torch.

Stages (expand ratio, kernel, stride, in, out, repeats) of EfficientNetV2-S:

=========  ======  =====  ======  ====  ====  =======
block      expand  kernel stride  in    out   repeats
=========  ======  =====  ======  ====  ====  =======
Fused-MB   1       3      1       24    24    2
Fused-MB   4       3      2       24    48    4
Fused-MB   4       3      2       48    64    4
MBConv+SE  4       3      2       64    128   6
MBConv+SE  6       3      1       128   160   9
MBConv+SE  6       3      2       160   256   15
=========  ======  =====  ======  ====  ====  =======

Stem 3x3 stride 2 to 24 channels, head 1x1 conv to 1280, SiLU everywhere, BatchNorm
eps 1e-3, squeeze-excitation to a quarter of the block's *input* channels, stochastic
depth rising linearly to ``drop_path`` over all blocks. At width = depth = 1 this has
20,177,488 parameters (the published 21.46 M minus the 1280 x 1000 classifier).

Module names follow torchvision's ``efficientnet_v2_s`` so its state_dict loads with
the classifier keys dropped; :func:`timm_to_mertool` maps timm's ``tf_efficientnetv2_s``
names (that model uses TF "same" padding, so outputs differ slightly from timm's).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ._layers import ConvNormAct, DropPath, drop_path_rates, init_weights, make_divisible, scale_depth

# (kind, expand, kernel, stride, cin, cout, repeats)
S_STAGES = [
    ("fused", 1, 3, 1, 24, 24, 2),
    ("fused", 4, 3, 2, 24, 48, 4),
    ("fused", 4, 3, 2, 48, 64, 4),
    ("mb", 4, 3, 2, 64, 128, 6),
    ("mb", 6, 3, 1, 128, 160, 9),
    ("mb", 6, 3, 2, 160, 256, 15),
]
_EPS = 1e-3


class SqueezeExcitation(nn.Module):
    """Channel gate: global mean -> 1x1 conv -> SiLU -> 1x1 conv -> sigmoid -> scale."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(self.act(self.fc1(s))))


class _ResidualBlock(nn.Module):
    """``block`` with a stochastic-depth residual when shapes allow (subclasses build it)."""

    block: nn.Sequential
    stochastic_depth: nn.Module
    use_res: bool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + self.stochastic_depth(y) if self.use_res else y


class FusedMBConv(_ResidualBlock):
    """Fused-MBConv: one k x k conv does the expansion (and stride), then a 1x1 projection."""

    def __init__(self, expand: int, kernel: int, stride: int, cin: int, cout: int, drop: float) -> None:
        super().__init__()
        self.use_res = stride == 1 and cin == cout
        hidden = cin * expand
        if expand == 1:
            layers: list[nn.Module] = [ConvNormAct(cin, cout, kernel, stride, eps=_EPS)]
        else:
            layers = [
                ConvNormAct(cin, hidden, kernel, stride, eps=_EPS),
                ConvNormAct(hidden, cout, 1, act=None, eps=_EPS),
            ]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = DropPath(drop)


class MBConv(_ResidualBlock):
    """MBConv: 1x1 expand -> k x k depthwise (stride) -> squeeze-excitation -> 1x1 project."""

    def __init__(self, expand: int, kernel: int, stride: int, cin: int, cout: int, drop: float) -> None:
        super().__init__()
        self.use_res = stride == 1 and cin == cout
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvNormAct(cin, hidden, 1, eps=_EPS))
        layers += [
            ConvNormAct(hidden, hidden, kernel, stride, groups=hidden, eps=_EPS),
            SqueezeExcitation(hidden, max(1, cin // 4)),
            ConvNormAct(hidden, cout, 1, act=None, eps=_EPS),
        ]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = DropPath(drop)


class EfficientNetV2(nn.Module):
    """EfficientNetV2 feature extractor (no pooling, no classifier).

    Parameters
    ----------
    width, depth : float
        Channel and repeat multipliers (1.0, 1.0 = EfficientNetV2-S).
    drop_path : float
        Final stochastic-depth rate (torchvision's default for V2-S is 0.2).
    stages : list, optional
        Stage table as in :data:`S_STAGES`.

    Attributes
    ----------
    out_channels : int
        Channels of the returned N x C x H/32 x W/32 map.
    """

    def __init__(
        self, width: float = 1.0, depth: float = 1.0, drop_path: float = 0.2, stages: list | None = None
    ) -> None:
        super().__init__()
        stages = S_STAGES if stages is None else stages
        ch = lambda c: make_divisible(c * width)  # noqa: E731 - tiny local helper
        repeats = [scale_depth(s[6], depth) for s in stages]
        rates = iter(drop_path_rates(sum(repeats), drop_path))
        features: list[nn.Module] = [ConvNormAct(3, ch(stages[0][4]), 3, 2, eps=_EPS)]
        for (kind, expand, kernel, stride, cin, cout, _), n in zip(stages, repeats):
            cls = FusedMBConv if kind == "fused" else MBConv
            blocks = [
                cls(expand, kernel, stride if i == 0 else 1, ch(cin) if i == 0 else ch(cout), ch(cout), next(rates))
                for i in range(n)
            ]
            features.append(nn.Sequential(*blocks))
        head = 1280 if width >= 1.0 else make_divisible(1280 * width)
        features.append(ConvNormAct(ch(stages[-1][5]), head, 1, eps=_EPS))
        self.features = nn.Sequential(*features)
        self.out_channels = head
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


# --- checkpoint key mapping -----------------------------------------------------------

#: torchvision keys that are not part of the feature extractor.
TORCHVISION_DROP = ("classifier.",)


def timm_to_mertool(key: str, model: EfficientNetV2) -> str | None:
    """Map one timm ``tf_efficientnetv2_s`` key to this module's name (None = not used).

    timm: ``conv_stem``/``bn1`` (stem), ``blocks.S.B.{conv,bn1}`` (expand-1 Fused-MBConv),
    ``blocks.S.B.{conv_exp,bn1,conv_pwl,bn2}`` (Fused-MBConv),
    ``blocks.S.B.{conv_pw,bn1,conv_dw,bn2,se.conv_reduce,se.conv_expand,conv_pwl,bn3}``
    (MBConv), ``conv_head``/``bn2`` (head), ``classifier`` (dropped).
    """
    last = len(model.features) - 1
    fixed = {"conv_stem.": "features.0.0.", "bn1.": "features.0.1.",
             "conv_head.": f"features.{last}.0.", "bn2.": f"features.{last}.1."}
    for old, new in fixed.items():
        if key.startswith(old):
            return new + key[len(old):]
    m = re.match(r"blocks\.(\d+)\.(\d+)\.(.+)$", key)
    if not m:
        return None
    s, b, rest = int(m[1]), int(m[2]), m[3]
    block = model.features[s + 1][b]
    mb = isinstance(block, MBConv)
    single = not mb and len(block.block) == 1
    if mb:
        table = {"conv_pw.": "0.0.", "bn1.": "0.1.", "conv_dw.": "1.0.", "bn2.": "1.1.",
                 "se.conv_reduce.": "2.fc1.", "se.conv_expand.": "2.fc2.", "conv_pwl.": "3.0.", "bn3.": "3.1."}
    elif single:
        table = {"conv.": "0.0.", "bn1.": "0.1."}
    else:
        table = {"conv_exp.": "0.0.", "bn1.": "0.1.", "conv_pwl.": "1.0.", "bn2.": "1.1."}
    for old, new in table.items():
        if rest.startswith(old):
            return f"features.{s + 1}.{b}.block.{new}{rest[len(old):]}"
    return None
