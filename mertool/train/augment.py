"""Training-time augmentations, found by name (a model's ``defaults["augment"]``).

An augmentation maps a batch ``{name: tensor}`` to a new batch; it runs on training
batches only and draws its randomness from the fold's generator, so runs stay
reproducible. The model families' own augmentations (DIANet's ``dynimg_fliprot``,
FaceSleuth's ``facesleuth_pair``) are plain functions in their model files, listed here by
explicit import; other code (a notebook's own model) adds one with :func:`register_augment`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import unknown_name

Augment = Callable[[dict[str, torch.Tensor], torch.Generator], dict[str, torch.Tensor]]
_AUGMENTS: dict[str, Augment] = {}


def register_augment(name: str) -> Callable[[Augment], Augment]:
    """Decorator registering ``fn(batch, generator) -> batch`` under ``name``."""

    def wrap(fn: Augment) -> Augment:
        _AUGMENTS[name] = fn
        return fn

    return wrap


def _known() -> dict[str, Augment]:
    """Every augmentation by name: the generic ones here, the families', the registered ones."""
    # Imported on first lookup, not with this module: they load the model families' code.
    from ..models.dianet import dynimg_fliprot
    from ..models.facesleuth import augment_pair

    return {"dynimg_fliprot": dynimg_fliprot, "facesleuth_pair": augment_pair, **_AUGMENTS}


def get_augment(name: str) -> Augment:
    """The augmentation called ``name``.

    Raises
    ------
    MertoolError
        Unknown name (with the closest known ones).
    """
    known = _known()
    if name not in known:
        raise unknown_name("augmentation", name, known)
    return known[name]


def list_augments() -> list[str]:
    """Names of every known augmentation."""
    return sorted(_known())


@register_augment("none")
def no_augment(batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    return batch


def _flip_mask(batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
    n = next(iter(batch.values())).shape[0]
    return torch.rand(n, generator=generator) < 0.5


@register_augment("hflip")
def hflip(batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Mirror half the samples left-right (every array with a spatial width axis)."""
    mask = _flip_mask(batch, generator)
    out = {}
    for name, x in batch.items():
        if x.ndim >= 4:  # N x C x H x W (or N x P x C x H x W)
            m = mask.to(x.device).view(-1, *([1] * (x.ndim - 1)))
            x = torch.where(m, x.flip(-1), x)
        out[name] = x
    return out


@register_augment("flow_hflip")
def flow_hflip(batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Mirror half the flow fields left-right: flip the width axis and negate u (channel 0).

    A mirrored face moves with the horizontal component reversed; v and optical strain
    (a magnitude) are unchanged.
    """
    mask = _flip_mask(batch, generator)
    out = {}
    for name, x in batch.items():
        if x.ndim == 4:
            m = mask.to(x.device).view(-1, 1, 1, 1)
            flipped = x.flip(-1)
            if "flow" in name:
                sign = torch.ones(x.shape[1], dtype=x.dtype, device=x.device)
                sign[0] = -1
                flipped = flipped * sign.view(1, -1, 1, 1)
            x = torch.where(m, flipped, x)
        out[name] = x
    return out
