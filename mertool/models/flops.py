"""FLOP counting for registered models (``mertool models``, :mod:`mertool.models.describe`).

FLOPs are counted per sample with forward hooks. Three conventions, because papers
mix them:

``"macs"`` (default)
    Multiply-accumulates of the layers that matter: Conv (``k_h k_w c_in/groups`` per
    output element), Linear (``in_features`` per output element), the attention matrix
    products (:class:`~mertool.models.layers.MatMul` modules, ``nn.MultiheadAttention``). No bias adds,
    normalisation, activations or pooling. This is what "FLOPs" means in most
    CNN/transformer papers (thop, fvcore).
``"flops"``
    ``2 x macs`` (one multiply plus one add), the convention of
    ``torch.utils.flop_counter``.
``"torchstat"``
    The "Flops" column of the ``torchstat`` package, which Off-TANet's Table 2 used:
    Conv MACs plus one add per output element for the bias, Linear ``in x out`` per row
    (bias not counted), BatchNorm 2 per input element (1 without affine), ReLU-family
    activations and Max/AvgPool2d 1 per input element; anything torchstat has no rule
    for (matrix products, sigmoid, softmax, element-wise products) counts 0.

Plain ``torch.matmul`` calls are invisible to forward hooks; a model that wants its
attention products counted computes them through a :class:`~mertool.models.layers.MatMul`
module.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .layers import MatMul

CONVENTIONS = ("macs", "flops", "torchstat")

# Shapes of per-sample meta fields a model may declare in InputSpec.meta.
META_SHAPES: dict[str, tuple[int, ...]] = {"aus": (21,)}

_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.PReLU, nn.ELU, nn.LeakyReLU)


@dataclasses.dataclass(frozen=True)
class FlopCount:
    """Per-sample count: ``total`` and the share of each counted module (qualified name)."""

    total: int
    by_module: dict[str, int]
    convention: str

    def by_part(self, depth: int = 1) -> dict[str, int]:
        """Sum ``by_module`` over the first ``depth`` components of the module names."""
        out: dict[str, int] = {}
        for name, n in self.by_module.items():
            key = ".".join(name.split(".")[:depth]) or "(root)"
            out[key] = out.get(key, 0) + n
        return out


def _conv_macs(m: nn.modules.conv._ConvNd, out: torch.Tensor) -> int:
    per_out = math.prod(m.kernel_size) * (m.in_channels // m.groups)
    return per_out * out.numel()


def _mha_macs(m: nn.MultiheadAttention, args: tuple, kwargs: dict) -> int:
    names = ("query", "key", "value")
    q, k, v = (args[i] if i < len(args) else kwargs[n] for i, n in enumerate(names))
    if q.dim() == 2:  # unbatched (L, E)
        q, k, v = q[None], k[None], v[None]
    elif not m.batch_first:
        q, k, v = (t.transpose(0, 1) for t in (q, k, v))
    n, tgt, e = q.shape
    src = k.shape[1]
    proj = n * tgt * e * e + n * src * e * k.shape[2] + n * src * e * v.shape[2]
    attn = 2 * n * tgt * src * e  # q kᵀ and attention @ v, summed over heads
    return proj + attn + n * tgt * e * e  # + output projection


def _macs(m: nn.Module, args: tuple, kwargs: dict, out: Any) -> int:
    if isinstance(m, nn.modules.conv._ConvNd):
        return _conv_macs(m, out)
    if isinstance(m, nn.Linear):
        return out.numel() * m.in_features
    if isinstance(m, MatMul):
        return out.numel() * args[0].shape[-1]
    if isinstance(m, nn.MultiheadAttention):
        return _mha_macs(m, args, kwargs)
    return 0


def _torchstat(m: nn.Module, args: tuple, kwargs: dict, out: Any) -> int:
    if isinstance(m, nn.Conv2d):
        bias = out.numel() if m.bias is not None else 0
        return _conv_macs(m, out) + bias
    if isinstance(m, nn.Linear):
        return out.numel() * m.in_features
    if isinstance(m, nn.BatchNorm2d):
        return args[0].numel() * (2 if m.affine else 1)
    if isinstance(m, _ACTIVATIONS) or isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        return args[0].numel()
    return 0


def count_flops(model: nn.Module, inputs: Mapping[str, torch.Tensor], convention: str = "macs") -> FlopCount:
    """Count FLOPs of one forward pass, divided by the batch size (per sample).

    Parameters
    ----------
    model : nn.Module
        The model; it runs once in eval mode under ``torch.no_grad`` (mode restored).
    inputs : mapping
        Keyword inputs of ``model.forward``; the first dimension is the batch.
    convention : {"macs", "flops", "torchstat"}
        See the module docstring.

    Returns
    -------
    FlopCount
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; choose from {', '.join(CONVENTIONS)}")
    if not inputs:
        raise ValueError("inputs is empty")
    batch = next(iter(inputs.values())).shape[0]
    rule = _torchstat if convention == "torchstat" else _macs
    counts: dict[str, int] = {}
    handles = []

    def make_hook(name: str):
        def hook(m: nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
            n = rule(m, args, kwargs, out)
            if n:
                counts[name] = counts.get(name, 0) + n

        return hook

    for name, m in model.named_modules():
        handles.append(m.register_forward_hook(make_hook(name), with_kwargs=True))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(**inputs)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    scale = 2 if convention == "flops" else 1
    per_sample = {k: v * scale // batch for k, v in counts.items()}
    return FlopCount(sum(per_sample.values()), per_sample, convention)


def example_inputs(spec: Any, batch: int = 1, device: str | torch.device = "cpu", seed: int = 0) -> dict[str, torch.Tensor]:
    """Random inputs of an :class:`~mertool.models.InputSpec`: arrays ~ N(0, 1), meta 0/1.

    Raises ``KeyError`` for a meta field without a known shape (add it to ``META_SHAPES``).
    """
    if batch < 1:
        raise ValueError("batch must be >= 1")
    g = torch.Generator().manual_seed(seed)
    out = {k: torch.randn((batch, *shape), generator=g) for k, shape in spec.arrays.items()}
    for field in spec.meta:
        if field not in META_SHAPES:
            raise KeyError(f"meta field {field!r} has no known shape; add it to mertool.models.flops.META_SHAPES")
        out[field] = torch.randint(0, 2, (batch, *META_SHAPES[field]), generator=g).float()
    return {k: v.to(device) for k, v in out.items()}
