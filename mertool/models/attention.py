"""Directional attention for FaceSleuth's motion branch: CVA and SOA.

One module type covers every variant of the papers' ablations, so that weights carry
over between them (the SOA-vs-CVA equivalence is a test):

- ``"y"``  CVA, continuous vertical attention: features are averaged over the width
  (one value per row), a bottleneck turns the row profile into weights, and every
  column is re-weighted by them.
- ``"x"``  the horizontal counterpart (one value per column).
- ``"xy"`` both, coordinate-attention style (shared reduction conv, one restoring
  conv per axis, the two weight maps multiplied).
- ``"soa"`` single-orientation attention: a direction ``d = (cos t, sin t)`` in image
  coordinates (x right, y down) with a learnable angle ``t``. Orientation-aware pooling
  (OAP) averages features along the lines orthogonal to ``d`` (one value per position
  along ``d``), and the weights are mapped back onto the grid along the same lines.
  ``t = 90 deg`` is exactly ``"y"``, ``t = 0`` exactly ``"x"`` (on square maps).

Each module i (Eq. 1-3 of cva-fpf-au.md, as restored in papers/README.md)::

    F_conv = f1x1(f3x3(F)) + f1x1(F)
    A_i    = sigmoid(f2(h_swish(BN(f1(pool(F_conv)))))) * f1x1(maxpool(A_{i-1}))
    out    = F_conv * A_i        (broadcast along the pooled lines)

with reduction width ``max(8, C // 32)``. "Continuous" chaining multiplies by the
previous module's attention (brought to this size by max pooling and a 1x1 conv);
``continuous=False`` is the papers' "independent attention" ablation.

SOA pooling is a soft binning: each pixel's projection onto ``d`` is rescaled so the
lines span ``L = H`` bins for every angle, and the pixel is split linearly between its
two nearest bins. The weights are piecewise linear in ``t``, so the gradient reaches
the angle without a straight-through estimator, and at 0 / 90 degrees the binning is
one-hot, i.e. identical to plain row/column means.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

MODES = ("y", "x", "xy", "soa")
THETA_MODES = ("shared", "independent", "frozen")


def reduction_width(channels: int) -> int:
    """Bottleneck width of the attention: ``max(8, C // 32)`` (papers' reduction)."""
    return max(8, channels // 32)


def line_weights(theta: torch.Tensor, height: int, width: int, lines: int) -> torch.Tensor:
    """Soft assignment of each pixel to the lines orthogonal to ``(cos t, sin t)``.

    Parameters
    ----------
    theta : tensor
        Scalar angle in radians (0 = horizontal direction, pi/2 = vertical).
    height, width : int
        Feature-map size.
    lines : int
        Number of lines (bins) along the direction.

    Returns
    -------
    tensor
        ``(height * width, lines)`` weights; each row (pixel) sums to 1. At ``t = pi/2``
        with ``lines == height`` it is the one-hot row assignment; at ``t = 0`` with
        ``lines == width`` the column assignment.
    """
    if height < 1 or width < 1 or lines < 1:
        raise ValueError(f"line_weights: sizes must be positive, got {height}x{width}, {lines} lines")
    dev, dt = theta.device, theta.dtype
    if lines == 1:
        return torch.ones(height * width, 1, device=dev, dtype=dt)
    ys = torch.arange(height, device=dev, dtype=dt) - (height - 1) / 2
    xs = torch.arange(width, device=dev, dtype=dt) - (width - 1) / 2
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    c, s = torch.cos(theta), torch.sin(theta)
    proj = xx * c + yy * s
    # Largest |projection| on the grid; rescaling by it makes L bins cover every angle.
    reach = c.abs() * (width - 1) / 2 + s.abs() * (height - 1) / 2
    half = (lines - 1) / 2
    q = (proj * (half / reach.clamp_min(1e-12)) + half).clamp(0, lines - 1).reshape(-1)
    lo = torch.floor(q).detach().clamp(0, lines - 1)
    frac = q - lo  # carries the gradient w.r.t. theta
    hi = (lo + 1).clamp(max=lines - 1)
    weights = torch.zeros(height * width, lines, device=dev, dtype=dt)
    weights = weights.scatter_add(1, lo.long()[:, None], (1 - frac)[:, None])
    weights = weights.scatter_add(1, hi.long()[:, None], frac[:, None])
    return weights


def oriented_pool(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """OAP: mean of ``x`` (B, C, H, W) along each line -> (B, C, L, 1)."""
    b, c, h, w = x.shape
    total = weights.sum(0).clamp_min(1e-6)
    pooled = x.reshape(b, c, h * w) @ weights.to(x.dtype) / total.to(x.dtype)
    return pooled[..., None]


def oriented_unpool(a: torch.Tensor, weights: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Map per-line values (B, C, L, 1) back onto the grid (B, C, H, W) along the lines."""
    b, c = a.shape[:2]
    return (a[..., 0] @ weights.t().to(a.dtype)).reshape(b, c, height, width)


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False), nn.BatchNorm2d(cout)
    )


class DirectionalAttentionModule(nn.Module):
    """One CVA/SOA module: residual conv pair, directional attention, re-weighting.

    Parameters
    ----------
    in_channels, out_channels : int
        Feature channels in and out.
    stride : int
        Stride of the 3x3 conv and the 1x1 shortcut (1 or 2).
    mode : str
        ``"y"`` (CVA), ``"x"``, ``"xy"`` or ``"soa"``.
    prev_channels : int or None
        Channels of the previous module's attention; ``None`` = no chaining (first
        module, or the "independent" ablation).

    Notes
    -----
    Parameter names do not depend on ``mode`` for ``y``/``x``/``soa``, so a CVA
    state_dict loads into a SOA module (the angle lives in the enclosing block).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        mode: str = "y",
        prev_channels: int | None = None,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.mode = mode
        self.conv3 = _conv_bn(in_channels, out_channels, 3, stride)
        self.conv1 = _conv_bn(out_channels, out_channels, 1)
        self.shortcut = _conv_bn(in_channels, out_channels, 1, stride)
        mid = reduction_width(out_channels)
        self.f1 = nn.Conv2d(out_channels, mid, 1)
        self.bn = nn.BatchNorm2d(mid)
        self.act = nn.Hardswish()
        self.f2 = nn.Conv2d(mid, out_channels, 1)
        self.f2_w = nn.Conv2d(mid, out_channels, 1) if mode == "xy" else None
        self.prev = nn.Conv2d(prev_channels, out_channels, 1) if prev_channels else None
        self.prev_w = nn.Conv2d(prev_channels, out_channels, 1) if prev_channels and mode == "xy" else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``F_conv = f1x1(f3x3(F)) + f1x1(F)`` (with BN; ReLU inside and after)."""
        return F.relu(self.conv1(F.relu(self.conv3(x))) + self.shortcut(x))

    def _chain(self, a: torch.Tensor, prev: torch.Tensor | None, conv: nn.Conv2d | None) -> torch.Tensor:
        if prev is None or conv is None:
            return a
        # Max pooling (stride 2 between consecutive modules) brings the previous map to
        # this module's number of lines; adaptive pooling also covers odd sizes.
        return a * conv(F.adaptive_max_pool2d(prev, (a.shape[2], 1)))

    def forward(
        self, x: torch.Tensor, prev: torch.Tensor | tuple | None = None, theta: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | tuple]:
        """Return ``(reweighted features, attention)``; attention is (B, C, L, 1).

        ``xy`` returns the attention as a ``(rows, columns)`` pair, both (B, C, L, 1).
        """
        feat = self.features(x)
        b, c, h, w = feat.shape
        if self.mode == "xy":
            rows = feat.mean(3, keepdim=True)  # (B, C, H, 1)
            cols = feat.mean(2, keepdim=True).transpose(2, 3)  # (B, C, W, 1)
            z = self.act(self.bn(self.f1(torch.cat([rows, cols], dim=2))))
            a_h = torch.sigmoid(self.f2(z[:, :, :h]))
            a_w = torch.sigmoid(self.f2_w(z[:, :, h:]))
            p_h, p_w = prev if prev is not None else (None, None)
            a_h = self._chain(a_h, p_h, self.prev)
            a_w = self._chain(a_w, p_w, self.prev_w)
            return feat * a_h * a_w.transpose(2, 3), (a_h, a_w)
        if self.mode == "y":
            pooled = feat.mean(3, keepdim=True)
        elif self.mode == "x":
            pooled = feat.mean(2, keepdim=True).transpose(2, 3)
        else:
            if theta is None:
                raise ValueError("soa mode needs theta")
            # Bin positions in float32 even under autocast: bf16 cannot hold q to a pixel.
            weights = line_weights(theta.float(), h, w, h)
            pooled = oriented_pool(feat, weights)
        a = torch.sigmoid(self.f2(self.act(self.bn(self.f1(pooled)))))
        a = self._chain(a, prev, self.prev)
        if self.mode == "y":
            return feat * a, a
        if self.mode == "x":
            return feat * a.transpose(2, 3), a
        return feat * oriented_unpool(a, weights, h, w), a


class DirectionalAttentionBlock(nn.Module):
    """Stacked attention modules (the CVA block, or SOA layers in its place).

    Parameters
    ----------
    in_channels : int
        Channels entering the first module.
    channels : sequence of int
        Output channels per module (four in the papers).
    strides : sequence of int
        Stride per module (the attention maps halve between modules, matching the
        stride-2 max pooling of the chaining).
    mode : str
        ``"y"``, ``"x"``, ``"xy"`` or ``"soa"``.
    continuous : bool
        Chain each module's attention with the previous one (CVA); False = independent.
    theta_mode : str
        SOA only: ``"shared"`` (one angle for all modules), ``"independent"`` (one per
        module) or ``"frozen"`` (fixed at ``theta_init``, not trained).
    theta_init : float
        SOA initial angle in degrees (90 = vertical = CVA).
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        strides: Sequence[int],
        mode: str = "y",
        continuous: bool = True,
        theta_mode: str = "shared",
        theta_init: float = 72.0,
    ) -> None:
        super().__init__()
        if len(channels) != len(strides) or not channels:
            raise ValueError("channels and strides must be non-empty and of equal length")
        if theta_mode not in THETA_MODES:
            raise ValueError(f"theta_mode must be one of {THETA_MODES}, got {theta_mode!r}")
        self.mode = mode
        self.theta_mode = theta_mode
        mods = []
        prev_c, cin = None, in_channels
        for cout, stride in zip(channels, strides):
            mods.append(DirectionalAttentionModule(cin, cout, stride, mode, prev_c if continuous else None))
            prev_c, cin = cout, cout
        self.layers = nn.ModuleList(mods)
        self.thetas = nn.ParameterList()
        if mode == "soa":
            n = len(mods) if theta_mode == "independent" else 1
            init = math.radians(theta_init)
            for _ in range(n):
                self.thetas.append(nn.Parameter(torch.tensor(init), requires_grad=theta_mode != "frozen"))

    def theta_of(self, i: int) -> torch.Tensor | None:
        if self.mode != "soa":
            return None
        return self.thetas[i if self.theta_mode == "independent" else 0]

    def angles_deg(self) -> list[float]:
        """Current angle of each module in degrees, folded into [0, 180)."""
        if self.mode != "soa":
            return []
        return [math.degrees(float(self.theta_of(i).detach())) % 180.0 for i in range(len(self.layers))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prev = None
        for i, mod in enumerate(self.layers):
            x, prev = mod(x, prev, self.theta_of(i))
        return x
