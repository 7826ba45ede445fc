"""The model registry: :class:`InputSpec`, :func:`register_model`, lookup by name.

Family modules register their variants at import; :mod:`mertool.models` imports every
family explicitly, so the registry is complete once the package is imported.

Each entry also says where its training recipe comes from (``source``: a paper, its
authors' released code, or mertool's own) and which input encoding that recipe was made
for (``InputSpec.encoding``, one of :data:`ENCODINGS`), so a run can tell a published
setup from an improved one and refuse inputs at a scale the recipe never saw.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from torch import nn

from ..encodings import ENCODINGS
from ..errors import unknown_name


#: Flow encodings a model's recipe may be made for (:attr:`InputSpec.encoding`). The same
#: names as the stage files' (:mod:`mertool.stages.contents`, which models/ does not import;
#: a test keeps the two lists equal).


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
    encoding : str or None
        For ``flow`` inputs, the encoding the model's recipe was made for (:data:`ENCODINGS`):
        ``"signed"`` (displacement, zero = no motion), ``"minmax-byte"`` (each map min-max
        stretched to 0..255, as the widely shared composite images) or ``"minmax-unit"``
        (the same to 0..1); None when any will do or the input is no flow. ``mertool train`` checks
        it against the encoding recorded in the flow file (:mod:`mertool.stages.contents`),
        and the recipe that makes the input (:mod:`mertool.recipes`) can follow it.
    """

    stage: str
    arrays: dict[str, tuple[int, ...]]
    meta: tuple[str, ...] = ()
    encoding: str | None = None

    def __post_init__(self) -> None:
        if self.encoding is not None and self.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be None or one of {', '.join(ENCODINGS)}, got {self.encoding!r}")


#: What a recipe's ``source`` starts with: the paper's text, its authors' released
#: training code, or mertool's own recipe (then the reason is in the model's docs).
SOURCE_KINDS = ("paper", "authors' code", "mertool")


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
    source : str
        Where the recipe (architecture settings and ``defaults``) comes from: one of
        :data:`SOURCE_KINDS`, optionally followed by ``": "`` and the reference, e.g.
        ``"authors' code: STSTNet release (Liong et al., FG 2019)"``.
    cpu_channels_last : bool
        Whether the model trains faster on CPU with channels-last (NHWC) tensors than with
        contiguous NCHW ones: what training config ``channels_last: auto`` uses on CPU (GPUs
        always get channels-last). Measured per model by ``benchmarks/train.py --layouts``
        (benchmarks/README.md, "Memory layout"): channels-last (the default) trained most
        registered CNNs faster there; a model sets False where NCHW measured faster.
    """

    name: str
    builder: Callable[..., nn.Module]
    input: InputSpec
    description: str
    defaults: dict[str, Any]
    source: str = "mertool"
    cpu_channels_last: bool = True

    @property
    def encoding(self) -> str | None:
        """The input encoding the recipe was made for (:attr:`InputSpec.encoding`)."""
        return self.input.encoding


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    input: InputSpec,
    description: str = "",
    defaults: dict[str, Any] | None = None,
    *,
    source: str = "mertool",
    cpu_channels_last: bool = True,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering ``builder(num_classes, **kwargs) -> nn.Module`` under ``name``.

    ``source`` and ``cpu_channels_last`` are as in :class:`ModelEntry`; a recipe that names
    no source is mertool's own.

    Raises
    ------
    ValueError
        ``name`` is already registered, or ``source`` is not of a known kind.
    """
    if source.split(":", 1)[0] not in SOURCE_KINDS:
        raise ValueError(f"model {name!r}: source must start with one of {SOURCE_KINDS}, got {source!r}")

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(name, builder, input, description, dict(defaults or {}), source,
                                     cpu_channels_last)
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
