"""ConvNeXt-T (Liu et al., CVPR 2022) feature extractor in plain torch.

Patchify stem (4x4/4 conv + LayerNorm), stages of depths 3-3-9-3 and widths
96-192-384-768 separated by LayerNorm + 2x2/2 conv downsampling. A block is a 7x7
depthwise conv, LayerNorm, Linear 4x expansion, GELU, Linear back, layer scale (init
1e-6) and stochastic depth. A final LayerNorm (``norm``) closes the extractor. At
width = depth = 1 it has 27,820,128 parameters (the published 28.59 M minus the
768 x 1000 classifier; the final norm is kept).

Module names follow torchvision's ``convnext_tiny`` (its ``classifier.0`` is our
``norm``; ``classifier.2`` is dropped); :func:`timm_to_mertool` maps timm's names.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ._layers import DropPath, LayerNorm2d, drop_path_rates, init_weights, make_divisible, scale_depth

_EPS = 1e-6


class Permute(nn.Module):
    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)


class CNBlock(nn.Module):
    """ConvNeXt block; children indexed as torchvision's (``block.0`` dwconv ... ``block.5``)."""

    def __init__(self, dim: int, drop: float, layer_scale: float = 1e-6) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, 7, padding=3, groups=dim),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=_EPS),
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Linear(4 * dim, dim),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), layer_scale))
        self.stochastic_depth = DropPath(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.stochastic_depth(self.layer_scale * self.block(x))


class ConvNeXtTiny(nn.Module):
    """ConvNeXt-T without pooling/classifier; returns the (normed) N x C x H/32 x W/32 map.

    Parameters
    ----------
    width, depth : float
        Channel and block-count multipliers (1.0, 1.0 = ConvNeXt-T).
    drop_path : float
        Final stochastic-depth rate (0.1 in the published ConvNeXt-T recipe).
    """

    def __init__(self, width: float = 1.0, depth: float = 1.0, drop_path: float = 0.1) -> None:
        super().__init__()
        dims = [make_divisible(c * width) for c in (96, 192, 384, 768)]
        repeats = [scale_depth(n, depth) for n in (3, 3, 9, 3)]
        rates = iter(drop_path_rates(sum(repeats), drop_path))
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0], eps=_EPS))]
        for i, (dim, n) in enumerate(zip(dims, repeats)):
            if i > 0:
                layers.append(nn.Sequential(LayerNorm2d(dims[i - 1], eps=_EPS), nn.Conv2d(dims[i - 1], dim, 2, 2)))
            layers.append(nn.Sequential(*[CNBlock(dim, next(rates)) for _ in range(n)]))
        self.features = nn.Sequential(*layers)
        self.norm = LayerNorm2d(dims[-1], eps=_EPS)
        self.out_channels = dims[-1]
        init_weights(self, linear_std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.features(x))


def torchvision_to_mertool(key: str, model: ConvNeXtTiny) -> str | None:
    """torchvision ``convnext_tiny``: identical names except the head (``classifier.0`` = ``norm``)."""
    if key.startswith("classifier.0."):
        return "norm." + key[len("classifier.0."):]
    if key.startswith("classifier."):
        return None
    return key


def timm_to_mertool(key: str, model: ConvNeXtTiny) -> str | None:
    """timm ``convnext_tiny``: ``stem.{0,1}``, ``stages.S.downsample.{0,1}``,
    ``stages.S.blocks.B.{conv_dw,norm,mlp.fc1,mlp.fc2,gamma}``, ``head.norm``, ``head.fc``
    (dropped). ``gamma`` (C,) becomes ``layer_scale`` (C, 1, 1); the loader reshapes."""
    if key.startswith("stem."):
        return "features.0." + key[len("stem."):]
    if key.startswith("head.norm."):
        return "norm." + key[len("head.norm."):]
    m = re.match(r"stages\.(\d+)\.downsample\.(\d)\.(.+)$", key)
    if m:
        return f"features.{2 * int(m[1])}.{m[2]}.{m[3]}"
    m = re.match(r"stages\.(\d+)\.blocks\.(\d+)\.(.+)$", key)
    if m:
        table = {"conv_dw.": "block.0.", "norm.": "block.2.", "mlp.fc1.": "block.3.", "mlp.fc2.": "block.5."}
        prefix = f"features.{2 * int(m[1]) + 1}.{m[2]}."
        if m[3] == "gamma":
            return prefix + "layer_scale"
        for old, new in table.items():
            if m[3].startswith(old):
                return prefix + new + m[3][len(old):]
    return None
