"""Model registry: models are found by name (``mertool train --model offtanet``).

Each family lives in its own module (listed in ``_MODULES``) and registers its variants
with :func:`register_model`, declaring the input it consumes (:class:`InputSpec`): which
stage file, which arrays, and the per-sample shape. The training engine feeds a batch
as keyword arguments named after ``InputSpec.arrays`` (``model(**inputs)``); a model
returns logits, or ``(logits, auxiliary_loss)`` when it adds a loss term in training.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import MertoolError

_MODULES = ["offtanet", "baselines", "dianet", "facesleuth"]


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
    name: str
    builder: Callable[..., nn.Module]
    input: InputSpec
    description: str
    defaults: dict[str, Any]  # default training recipe (engine config overrides)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str, input: InputSpec, description: str = "", defaults: dict[str, Any] | None = None
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering ``builder(num_classes, **kwargs) -> nn.Module`` under ``name``."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(name, builder, input, description, dict(defaults or {}))
        return builder

    return wrap


def _load_modules() -> None:
    for mod in _MODULES:
        importlib.import_module(f"{__name__}.{mod}")


def list_models() -> list[str]:
    _load_modules()
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    _load_modules()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise MertoolError(f"unknown model {name!r}{hint}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_model(name: str, num_classes: int, weights: str | Path | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model; ``weights`` loads a local state_dict file.

    A family may define ``load_weights(model, state_dict)`` on the model to map
    published key names onto its own; otherwise keys must match exactly.
    """
    model = get_entry(name).builder(num_classes=num_classes, **kwargs)
    if weights is not None:
        path = Path(weights)
        state = read_state_dict(path, "weights file")
        loader = getattr(model, "load_weights", None)
        try:
            loader(state) if loader else model.load_state_dict(state)
        except RuntimeError as exc:
            raise MertoolError(f"{path}: weights do not fit model {name!r}: {str(exc).splitlines()[0]}") from None
    return model


def read_state_dict(path: str | Path, what: str = "weights file") -> dict:
    """Load a local state_dict file safely (``weights_only``); nothing is ever downloaded.

    A ``{"state_dict": ...}`` wrapper, as some training scripts save, is unwrapped.

    Raises
    ------
    MertoolError
        Missing file, a file torch cannot load, or one that holds no dict.
    """
    path = Path(path)
    if not path.is_file():
        raise MertoolError(f"{path}: {what} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise MertoolError(f"{path}: not a loadable state_dict ({exc.__class__.__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise MertoolError(f"{path}: not a state_dict")
    return state


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
