"""Building registered models and reading local weight files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import MertoolError
from ._registry import get_entry


def create_model(name: str, num_classes: int, weights: str | Path | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model, optionally loading a local state_dict file.

    Parameters
    ----------
    name : str
        A registered model (:func:`~mertool.models.list_models`).
    num_classes : int
        Size of the classifier head.
    weights : path, optional
        A state_dict file (see :func:`read_state_dict`); nothing is downloaded.
    **kwargs
        Passed to the family's builder.

    Returns
    -------
    nn.Module

    Notes
    -----
    Optional model hook ``load_weights(state_dict)``: a family that defines it maps
    published key names onto its own; otherwise the keys must match exactly
    (``load_state_dict``). It is one of the optional hooks (with ``param_groups`` and
    ``epoch_log``, used by the trainer) declared by
    :class:`mertool.train.fold.ModelHooks`; found here with ``getattr``, since models/
    does not import train/.

    Raises
    ------
    MertoolError
        Unknown model, unreadable weights file, or weights that do not fit the model.
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
