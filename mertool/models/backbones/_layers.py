"""Small building blocks shared by the backbones (plain torch)."""

from __future__ import annotations

import math

import torch
from torch import nn


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a (scaled) channel count to a multiple of ``divisor``, never more than 10 % down.

    The rule of the MobileNet/EfficientNet papers, so that width multipliers give the
    published channel counts at 1.0 and hardware-friendly ones below.
    """
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def scale_depth(repeats: int, depth: float) -> int:
    """Blocks in a stage after a depth multiplier (at least one)."""
    return max(1, int(math.ceil(repeats * depth)))


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch for whole samples during training.

    Survivors are scaled by ``1 / (1 - p)`` so the expectation is unchanged.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop-path probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ConvNormAct(nn.Sequential):
    """conv -> BatchNorm -> activation (``act=None`` for none); children 0, 1, 2.

    The numbered children give the same state_dict keys as torchvision's
    ``Conv2dNormActivation`` (``.0.weight``, ``.1.running_mean`` ...).
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int = 3,
        stride: int = 1,
        groups: int = 1,
        act: type[nn.Module] | None = nn.SiLU,
        eps: float = 1e-5,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout, eps=eps),
        ]
        if act is not None:
            layers.append(act())
        super().__init__(*layers)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel axis of an N x C x H x W map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def drop_path_rates(total: int, rate: float) -> list[float]:
    """Linearly increasing stochastic-depth rates over ``total`` blocks (0 .. rate)."""
    if total <= 1:
        return [0.0] * total
    return [rate * i / total for i in range(total)]


def init_weights(module: nn.Module, linear_std: float | None = None) -> None:
    """Published initialisations: He (fan-out, per group) for convs, BN/LN at identity, linear layers
    uniform(+-1/sqrt(fan_out)) or normal(0, ``linear_std``). PyTorch's default conv init
    shrinks activations layer by layer, which leaves a deep untrained net with nearly
    constant outputs in eval mode."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            # fan-out per group: torch's kaiming_normal_ ignores groups, which makes
            # depthwise kernels ~C times too small and the signal vanish with depth
            fan_out = m.weight.shape[0] // m.groups * m.weight[0, 0].numel()
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            if linear_std is None:
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
            else:
                nn.init.trunc_normal_(m.weight, std=linear_std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
