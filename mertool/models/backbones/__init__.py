"""Image backbones in plain torch (no timm/torchvision), built by name.

=================  ==================================  ====================================
name               network                              checkpoint layouts accepted
=================  ==================================  ====================================
efficientnetv2_s   EfficientNetV2-S (default of DIANet)  torchvision ``efficientnet_v2_s``,
                                                        timm ``tf_efficientnetv2_s``
resnet18           ResNet-18                            torchvision / timm ``resnet18``
convnext_tiny      ConvNeXt-T                           torchvision / timm ``convnext_tiny``
mobilevit_s        MobileViT-S                          timm ``mobilevit_s``
mobilevit_xs       MobileViT-XS                         timm ``mobilevit_xs``
=================  ==================================  ====================================

Aliases: ``efficientnetv2``, ``convnext``, ``mobilevit`` (= ``_s``). Every backbone
returns an N x C x h x w feature map (stride 32) and has ``out_channels``;
:class:`TokenEncoder` projects it to D-dimensional tokens (D = 512 in DIANet) whose mean
is the stream's embedding. ``width``/``depth`` multipliers give small CPU variants.

Pretrained weights are never downloaded. :func:`load_backbone_weights` reads a state_dict
the user already has (a ``.pth`` file saved by torchvision or timm) and renames its keys
(documented in each backbone module: torchvision names are kept as-is where possible,
timm names are mapped); classifier keys are dropped; a missing or misshapen key is an
error, never silently skipped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...errors import MertoolError
from .._factory import read_state_dict
from . import convnext, efficientnetv2, mobilevit, resnet

KeyMap = Callable[[str, nn.Module], "str | None"]


def _drop(prefixes: tuple[str, ...]) -> KeyMap:
    return lambda key, model: None if key.startswith(prefixes) else key


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    name: str
    build: Callable[..., nn.Module]
    layouts: dict[str, KeyMap]  # checkpoint layout -> key mapping onto our names
    drop_path: float  # default final stochastic-depth rate
    published_params: int  # with the 1000-class ImageNet classifier
    classifier_params: int  # that classifier's share


BACKBONES: dict[str, BackboneSpec] = {
    "efficientnetv2_s": BackboneSpec(
        "efficientnetv2_s", efficientnetv2.EfficientNetV2,
        {"torchvision": _drop(efficientnetv2.TORCHVISION_DROP), "timm": efficientnetv2.timm_to_mertool},
        0.2, 21_458_488, 1280 * 1000 + 1000),
    "resnet18": BackboneSpec(
        "resnet18", resnet.ResNet18, {"torchvision": _drop(resnet.TORCHVISION_DROP)},
        0.0, 11_689_512, 512 * 1000 + 1000),
    "convnext_tiny": BackboneSpec(
        "convnext_tiny", convnext.ConvNeXtTiny,
        {"torchvision": convnext.torchvision_to_mertool, "timm": convnext.timm_to_mertool},
        0.1, 28_589_128, 768 * 1000 + 1000),
    "mobilevit_s": BackboneSpec(
        "mobilevit_s", lambda **kw: mobilevit.MobileViT("s", **kw), {"timm": _drop(mobilevit.TIMM_DROP)},
        0.0, 5_578_632, 640 * 1000 + 1000),
    "mobilevit_xs": BackboneSpec(
        "mobilevit_xs", lambda **kw: mobilevit.MobileViT("xs", **kw), {"timm": _drop(mobilevit.TIMM_DROP)},
        0.0, 2_317_848, 384 * 1000 + 1000),
}
ALIASES = {"efficientnetv2": "efficientnetv2_s", "convnext": "convnext_tiny", "mobilevit": "mobilevit_s"}


def backbone_names() -> list[str]:
    """Canonical backbone names (aliases excluded)."""
    return sorted(BACKBONES)


def resolve_name(name: str) -> str:
    """Canonical name for ``name`` or an alias; :class:`MertoolError` if unknown."""
    key = ALIASES.get(name, name)
    if key not in BACKBONES:
        raise MertoolError(f"unknown backbone {name!r}; known: {', '.join(backbone_names() + sorted(ALIASES))}")
    return key


def build_backbone(name: str, width: float = 1.0, depth: float = 1.0, drop_path: float | None = None) -> nn.Module:
    """Build a backbone feature extractor by name.

    Parameters
    ----------
    name : str
        One of :func:`backbone_names` or an alias.
    width, depth : float
        Channel and depth multipliers in (0, 1]; 1, 1 = the published network.
    drop_path : float, optional
        Final stochastic-depth rate; the backbone's published default if None.

    Returns
    -------
    nn.Module
        Maps N x 3 x H x W to N x ``out_channels`` x H/32 x W/32.
    """
    spec = BACKBONES[resolve_name(name)]
    for label, value in (("width", width), ("depth", depth)):
        if not 0.0 < value <= 4.0:
            raise ValueError(f"{label} multiplier must be in (0, 4], got {value}")
    return spec.build(width=width, depth=depth, drop_path=spec.drop_path if drop_path is None else drop_path)


class TokenEncoder(nn.Module):
    """Backbone + linear projection of every feature-map position to a D-d token.

    ``forward`` returns tokens N x (h w) x D; their mean over positions is the
    embedding (equal to projecting the globally pooled feature, as the map is linear).
    """

    def __init__(self, backbone: nn.Module, embed_dim: int = 512) -> None:
        super().__init__()
        self.backbone = backbone
        self.proj = nn.Linear(backbone.out_channels, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fmap = self.backbone(x)
        return self.proj(fmap.flatten(2).transpose(1, 2))


def _strip(state: dict[str, Any]) -> dict[str, Any]:
    for wrapper in ("state_dict", "model", "model_state"):
        if wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def map_checkpoint(backbone: nn.Module, name: str, state: dict[str, Any], layout: str = "auto") -> dict[str, torch.Tensor]:
    """Rename a torchvision/timm state_dict onto ``backbone``'s keys.

    Parameters
    ----------
    backbone : nn.Module
        Built by :func:`build_backbone` with the same ``name`` (width = depth = 1 for
        published checkpoints).
    name : str
        Backbone name.
    state : dict
        Checkpoint tensors (a ``state_dict``/``model`` wrapper and ``module.`` prefixes
        are removed).
    layout : str
        ``"auto"`` (the layout that covers the most of the model's keys), or one of the
        backbone's layouts (``"torchvision"``, ``"timm"``), or ``"mertool"`` (identity).

    Returns
    -------
    dict
        A complete state_dict for ``backbone``.

    Raises
    ------
    MertoolError
        When keys are missing or shapes disagree (e.g. a checkpoint of another variant).
    """
    spec = BACKBONES[resolve_name(name)]
    state = _strip(state)
    own = backbone.state_dict()
    layouts: dict[str, KeyMap] = {"mertool": lambda k, m: k, **spec.layouts}
    if layout != "auto" and layout not in layouts:
        raise MertoolError(f"backbone {spec.name}: unknown checkpoint layout {layout!r}; known: {', '.join(layouts)}")

    def apply(fn: KeyMap) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            try:
                new = fn(key, backbone)
            except (IndexError, TypeError, AttributeError):
                new = None
            if new is not None and new in own:
                out[new] = value
        return out

    if layout == "auto":
        candidates = {lay: apply(fn) for lay, fn in layouts.items()}
        layout = max(candidates, key=lambda lay: len(candidates[lay]))
        mapped = candidates[layout]
    else:
        mapped = apply(layouts[layout])
    missing = [k for k in own if k not in mapped]
    if missing:
        raise MertoolError(
            f"checkpoint does not fit backbone {spec.name} (layout {layout}): {len(missing)} of {len(own)} "
            f"tensors missing, e.g. {', '.join(missing[:3])}")
    result: dict[str, torch.Tensor] = {}
    for key, value in mapped.items():
        want = own[key].shape
        if value.shape != want:
            if value.numel() != own[key].numel():
                raise MertoolError(f"checkpoint does not fit backbone {spec.name}: {key} has shape "
                                   f"{tuple(value.shape)}, expected {tuple(want)}")
            value = value.reshape(want)  # e.g. timm ConvNeXt gamma (C,) -> layer_scale (C, 1, 1)
        result[key] = value
    return result


def load_backbone_weights(backbone: nn.Module, name: str, source: str | Path | dict, layout: str = "auto") -> None:
    """Load a local torchvision/timm checkpoint file (or dict) into ``backbone`` in place.

    Nothing is downloaded: ``source`` must be a file the user has. See
    :func:`map_checkpoint` for the key mapping and errors.
    """
    state = source if isinstance(source, dict) else read_state_dict(source, "backbone weights file")
    backbone.load_state_dict(map_checkpoint(backbone, name, state, layout))
