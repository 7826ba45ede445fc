"""ResNet-18 (He et al., CVPR 2016) feature extractor in plain torch.

Stem 7x7/2 conv + 3x3/2 max-pool, four stages of two basic blocks (64, 128, 256, 512
channels; 1x1 conv + BN shortcut where the shape changes). At width = depth = 1 it has
11,176,512 parameters (the published 11.69 M minus the 512 x 1000 classifier).
Module names equal torchvision's and timm's ``resnet18`` (``conv1``, ``bn1``,
``layerN.B.{conv1,bn1,conv2,bn2,downsample.0,downsample.1}``); their ``fc.*`` keys are
dropped on load. ResNet has no stochastic depth in its published recipe; ``drop_path``
is offered for symmetry with the other backbones (default 0).
"""

from __future__ import annotations

import torch
from torch import nn

from ._layers import DropPath, drop_path_rates, init_weights, make_divisible, scale_depth


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, drop: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.drop_path = DropPath(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(shortcut + self.drop_path(y))


class ResNet18(nn.Module):
    """ResNet-18 without pooling/classifier; returns the N x C x H/32 x W/32 map.

    Parameters
    ----------
    width, depth : float
        Channel and block-count multipliers (1.0, 1.0 = ResNet-18).
    drop_path : float
        Final stochastic-depth rate (0 = the published network).
    """

    def __init__(self, width: float = 1.0, depth: float = 1.0, drop_path: float = 0.0) -> None:
        super().__init__()
        chans = [make_divisible(c * width) for c in (64, 128, 256, 512)]
        repeats = [scale_depth(2, depth) for _ in range(4)]
        rates = iter(drop_path_rates(sum(repeats), drop_path))
        self.conv1 = nn.Conv2d(3, chans[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(chans[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = chans[0]
        for i, (cout, n) in enumerate(zip(chans, repeats)):
            blocks = [BasicBlock(cin if j == 0 else cout, cout, (1 if i == 0 else 2) if j == 0 else 1, next(rates))
                      for j in range(n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            cin = cout
        self.out_channels = chans[-1]
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


#: torchvision/timm keys that are not part of the feature extractor.
TORCHVISION_DROP = ("fc.",)
