"""MobileViT (Mehta & Rastegari, ICLR 2022), S and XS, feature extractor in plain torch.

A 3x3/2 stem, MobileNetV2 inverted-residual blocks (expansion 4) and, in the last three
stages, a MobileViT block: local 3x3 conv, 1x1 to the transformer width d, unfold into
2x2 patches (pixels at the same position in every patch attend to each other), L pre-norm
transformer layers (4 heads, MLP 2d, SiLU), fold back, 1x1 to C channels and a 3x3
fusion conv over [input, result]. A 1x1 conv expands the last stage (640 for S, 384 for
XS). Feature maps whose size is not a multiple of the patch size are resized
bilinearly around the transformer (as in the reference code), so 224x224 inputs work.

- S:  stem 16; stages 32, 64, 96, 128, 160; transformer d (layers) 144 (2), 192 (4),
  240 (3); final 640; 4,937,632 parameters.
- XS: stem 16; stages 32, 48, 64, 80, 96; transformer d (layers) 96 (2), 120 (4),
  144 (3); final 384; 1,932,848 parameters.

With the 1000-class head these give 5,578,632 / 2,317,848, the published 5.6 M / 2.3 M.
Module names follow timm's ``mobilevit_s``/``mobilevit_xs`` (``stem``, ``stages.S.B``,
``final_conv``; ``head.*`` dropped), so such a state_dict loads without renaming.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import MatMul
from ._layers import DropPath, drop_path_rates, init_weights, make_divisible, scale_depth

VARIANTS = {
    # stem, [(channels, inverted-residual repeats | transformer dim, transformer depth)], final
    "s": (16, [(32, 1, None, 0), (64, 3, None, 0), (96, 1, 144, 2), (128, 1, 192, 4), (160, 1, 240, 3)], 640),
    "xs": (16, [(32, 1, None, 0), (48, 3, None, 0), (64, 1, 96, 2), (80, 1, 120, 4), (96, 1, 144, 3)], 384),
}
HEADS = 4


class ConvBN(nn.Module):
    """conv -> BN -> SiLU (optional), with timm's child names ``conv``/``bn``."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.SiLU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise (stride), linear 1x1 project."""

    def __init__(self, cin: int, cout: int, stride: int, expand: float, drop: float = 0.0) -> None:
        super().__init__()
        mid = make_divisible(cin * expand)
        self.conv1_1x1 = ConvBN(cin, mid, 1)
        self.conv2_kxk = ConvBN(mid, mid, 3, stride, groups=mid)
        self.conv3_1x1 = ConvBN(mid, cout, 1, act=False)
        self.use_res = stride == 1 and cin == cout
        self.drop_path = DropPath(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3_1x1(self.conv2_kxk(self.conv1_1x1(x)))
        return x + self.drop_path(y) if self.use_res else y


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.scores, self.mix = MatMul(), MatMul()  # modules so FLOP counters see them

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = torch.softmax(self.scores(q, k.transpose(-2, -1)) * (d // self.heads) ** -0.5, dim=-1)
        return self.proj(self.mix(attn, v).transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.SiLU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TransformerBlock(nn.Module):
    """Pre-norm transformer layer (attention + MLP, each with a residual)."""

    def __init__(self, dim: int, heads: int, drop: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 2 * dim)
        self.drop_path = DropPath(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class MobileViTBlock(nn.Module):
    """Local conv -> unfold to patches -> transformer -> fold -> 1x1 -> fuse with the input."""

    def __init__(self, channels: int, dim: int, depth: int, patch: int = 2, drop: float = 0.0) -> None:
        super().__init__()
        self.patch = patch
        self.conv_kxk = ConvBN(channels, channels, 3)
        self.conv_1x1 = nn.Conv2d(channels, dim, 1, bias=False)
        self.transformer = nn.Sequential(*[TransformerBlock(dim, HEADS, drop) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.conv_proj = ConvBN(dim, channels, 1)
        self.conv_fusion = ConvBN(2 * channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        y = self.conv_1x1(self.conv_kxk(x))
        b, d, h, w = y.shape
        p = self.patch
        nh, nw = math.ceil(h / p), math.ceil(w / p)
        resized = (nh * p, nw * p) != (h, w)
        if resized:
            y = F.interpolate(y, size=(nh * p, nw * p), mode="bilinear", align_corners=False)
        # B x d x (nh p) x (nw p) -> (B p p) x (nh nw) x d: one sequence per in-patch position
        y = y.reshape(b, d, nh, p, nw, p).permute(0, 3, 5, 2, 4, 1).reshape(b * p * p, nh * nw, d)
        y = self.norm(self.transformer(y))
        y = y.reshape(b, p, p, nh, nw, d).permute(0, 5, 3, 1, 4, 2).reshape(b, d, nh * p, nw * p)
        if resized:
            y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
        return self.conv_fusion(torch.cat([shortcut, self.conv_proj(y)], dim=1))


class MobileViT(nn.Module):
    """MobileViT-S/XS without pooling/classifier; returns the N x C x H/32 x W/32 map.

    Parameters
    ----------
    variant : {"s", "xs"}
    width, depth : float
        Multipliers for channels/transformer widths and for block/transformer-layer counts.
    drop_path : float
        Final stochastic-depth rate (0 = published recipe).
    """

    def __init__(self, variant: str = "s", width: float = 1.0, depth: float = 1.0, drop_path: float = 0.0) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"MobileViT variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        stem, stages, final = VARIANTS[variant]
        ch = lambda c: make_divisible(c * width)  # noqa: E731
        # transformer width must split into HEADS heads of equal size
        td = lambda d: make_divisible(d * width, 4 * HEADS if width < 1 else HEADS)  # noqa: E731
        counts = [scale_depth(n, depth) if dim is None else scale_depth(L, depth) for _, n, dim, L in stages]
        rates = iter(drop_path_rates(sum(counts), drop_path))
        self.stem = ConvBN(3, ch(stem), 3, 2)
        cin = ch(stem)
        blocks: list[nn.Module] = []
        for i, ((c, n, dim, _), count) in enumerate(zip(stages, counts)):
            stride = 1 if i == 0 else 2
            if dim is None:
                stage = [InvertedResidual(cin if j == 0 else ch(c), ch(c), stride if j == 0 else 1, 4.0, next(rates))
                         for j in range(count)]
            else:
                drops = [next(rates) for _ in range(count)]
                stage = [InvertedResidual(cin, ch(c), stride, 4.0), MobileViTBlock(ch(c), td(dim), count, 2, max(drops))]
            blocks.append(nn.Sequential(*stage))
            cin = ch(c)
        self.stages = nn.Sequential(*blocks)
        self.final_conv = ConvBN(cin, ch(final), 1)
        self.out_channels = ch(final)
        init_weights(self, linear_std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_conv(self.stages(self.stem(x)))


#: timm keys that are not part of the feature extractor.
TIMM_DROP = ("head.",)
