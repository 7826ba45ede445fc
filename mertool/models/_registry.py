"""The model registry: :class:`InputSpec`, :func:`register_model`, lookup by name.

Family modules register their variants at import; :mod:`mertool.models` imports every
family explicitly, so the registry is complete once the package is imported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from torch import nn

from ..errors import unknown_name


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What a model consumes.

    Attributes
    ----------
    stage : str
        Stage-file kind that holds the inputs (``"flow"``, ``"dynimg"``, ``"pairs"``...).
    arrays : dict
        Keyword name -> per-sample shape, e.g. ``{"flow": (3, 112, 112)}``. A leading
        ``None`` size is not allowed: shapes are exact.
    meta : tuple of str
        Per-sample meta fields also passed (e.g. ``("aus",)`` as a 21-d float vector).
    """

    stage: str
    arrays: dict[str, tuple[int, ...]]
    meta: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """A registered model.

    Attributes
    ----------
    name : str
    builder : callable
        ``builder(num_classes, **kwargs) -> nn.Module``.
    input : InputSpec
    description : str
    defaults : dict
        Default training recipe (train config fields; user options override them).
        ``defaults["augment"]`` names the model's training augmentation.
    """

    name: str
    builder: Callable[..., nn.Module]
    input: InputSpec
    description: str
    defaults: dict[str, Any]


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str, input: InputSpec, description: str = "", defaults: dict[str, Any] | None = None
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering ``builder(num_classes, **kwargs) -> nn.Module`` under ``name``.

    Raises
    ------
    ValueError
        ``name`` is already registered.
    """

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(name, builder, input, description, dict(defaults or {}))
        return builder

    return wrap


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``.

    Raises
    ------
    MertoolError
        Unknown name (close names are suggested).
    """
    if name not in _REGISTRY:
        raise unknown_name("model", name, _REGISTRY, cutoff=0.5)
    return _REGISTRY[name]
