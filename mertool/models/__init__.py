"""Model registry: models are found by name (``mertool train --model offtanet``).

Each family lives in its own module and registers its variants with
:func:`register_model`, declaring the input it consumes (:class:`InputSpec`): which
stage file, which arrays, and the per-sample shape. The families are imported
explicitly below, so importing this package fills the registry; a new family is one
module plus one name in that import. The training engine feeds a batch as keyword
arguments named after ``InputSpec.arrays`` (``model(**inputs)``); a model returns
logits, or ``(logits, auxiliary_loss)`` when it adds a loss term in training.

Layout: ``_registry.py`` (the registry), ``_factory.py`` (building, weight files),
``layers.py`` (shared modules), ``flops.py`` (FLOP counting),
``describe.py`` (the ``mertool models`` table), one file per family.
"""

from ._registry import ENCODINGS, SOURCE_KINDS, InputSpec, ModelEntry, get_entry, list_models, register_model
from ._factory import count_parameters, create_model, read_state_dict

# The families: importing them registers their variants.
from . import baselines, dianet, facesleuth, offtanet  # noqa: F401

__all__ = [
    "ENCODINGS", "SOURCE_KINDS", "InputSpec", "ModelEntry", "count_parameters", "create_model", "get_entry",
    "list_models", "read_state_dict", "register_model",
]
