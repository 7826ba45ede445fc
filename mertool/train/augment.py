"""Training-time augmentations, found by name (a model's ``defaults["augment"]``).

An augmentation maps a batch ``{name: tensor}`` to a new batch; it runs on training
batches only and draws its randomness from the fold's generator, so runs stay
reproducible. The model families' own augmentations (DIANet's ``dynimg_fliprot``,
FaceSleuth's ``facesleuth_pair``) are plain functions in their model files, listed here by
explicit import; other code (a notebook's own model) adds one with :func:`register_augment`.

``flow_hflip`` must know how the flow is encoded (:mod:`mertool.stages.contents`):
:func:`augment_for` gives it the encoding recorded with the training data, and refuses
an encoding it cannot mirror.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from ..errors import MertoolError, unknown_name

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


def augment_for(name: str, encoding: str | None) -> Augment:
    """The augmentation ``name``, bound to the flow ``encoding`` of the data it will see.

    Parameters
    ----------
    name : str
        A registered augmentation.
    encoding : str or None
        The training data's flow encoding (:attr:`TrainData.encoding`; None: no flow).

    Raises
    ------
    MertoolError
        Unknown name, or ``flow_hflip`` for an encoding it cannot mirror (not recorded,
        or not flow).
    """
    fn = get_augment(name)
    if fn is not flow_hflip:
        return fn
    if encoding not in MIRROR_U:
        raise MertoolError(
            f"augmentation 'flow_hflip' cannot mirror flow of encoding {encoding or 'none (not a flow file)'}: "
            f"it knows {', '.join(MIRROR_U)}; re-make the features with this mertool to record it, or choose "
            "another --augment (hflip, none)"
        )
    return functools.partial(flow_hflip, encoding=encoding)


def list_augments() -> list[str]:
    """Names of every known augmentation."""
    return sorted(_known())


@register_augment("none")
def no_augment(batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    return batch


def _flip_mask(batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
    """Which samples to flip: drawn on the host from the fold's generator, then on the batch's device
    (a GPU gets it through pinned memory, so the host does not wait for the GPU's queue)."""
    x = next(iter(batch.values()))
    mask = torch.rand(x.shape[0], generator=generator) < 0.5
    return mask.pin_memory().to(x.device, non_blocking=True) if x.device.type == "cuda" else mask


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


#: Flow encoding -> ``c`` with mirrored u = ``c - u``: negation for displacement, and for
#: per-sample min-max scaling to [0, c] (min-max of -u is c minus min-max of u, exactly).
MIRROR_U = {"signed": 0.0, "minmax-unit": 1.0, "minmax-byte": 255.0}


@register_augment("flow_hflip")
def flow_hflip(
    batch: dict[str, torch.Tensor], generator: torch.Generator, *, encoding: str
) -> dict[str, torch.Tensor]:
    """Mirror half the flow fields left-right: flip the width axis and mirror u (channel 0).

    A mirrored face moves with the horizontal component reversed: u becomes
    ``MIRROR_U[encoding] - u`` (``-u`` for signed displacement, ``255 - u`` for 0..255
    images); v and optical strain (a magnitude) are only flipped. Training binds
    ``encoding`` to the data's (:func:`augment_for`).
    """
    mask = _flip_mask(batch, generator)
    out = {}
    for name, x in batch.items():
        if x.ndim == 4:
            m = mask.to(x.device).view(-1, 1, 1, 1)
            flipped = x.flip(-1)
            if "flow" in name:
                flipped = torch.cat([MIRROR_U[encoding] - flipped[:, :1], flipped[:, 1:]], dim=1)
            x = torch.where(m, flipped, x)
        out[name] = x
    return out
