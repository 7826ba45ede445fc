"""What ``mertool models`` shows: per model its input, size, cost and recipe (source, encoding)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from ._factory import count_parameters, create_model
from ._registry import get_entry, list_models
from .flops import count_flops, example_inputs


@dataclasses.dataclass(frozen=True)
class ModelSummary:
    """One registered model, built with random weights: its input, size, cost and recipe provenance."""

    name: str
    stage: str
    arrays: dict[str, tuple[int, ...]]
    meta: tuple[str, ...]
    num_classes: int
    params: int
    flops: int | None  # per sample, in ``convention``; None when not computed
    convention: str
    description: str
    source: str  # where the recipe comes from (ModelEntry.source)
    encoding: str | None  # input encoding the recipe was made for (ModelEntry.encoding)

    @property
    def input_text(self) -> str:
        arrays = ", ".join(f"{k} {'x'.join(map(str, s))}" for k, s in self.arrays.items())
        meta = f" + {', '.join(self.meta)}" if self.meta else ""
        return f"{arrays}{meta} [{self.stage}]"


def summarize_model(name: str, num_classes: int = 3, flops: bool = True, convention: str = "macs") -> ModelSummary:
    """Build ``name`` (random weights) and count its trainable parameters and FLOPs.

    Parameters
    ----------
    name : str
        A registered model.
    num_classes : int
        Size of the classifier head (parameter counts depend on it).
    flops : bool
        Also run one forward pass to count FLOPs (slow for big models on CPU).
    convention : str
        FLOP convention (see :func:`~mertool.models.flops.count_flops`).

    Returns
    -------
    ModelSummary
    """
    entry = get_entry(name)
    try:
        # Shapes are all the counters need: build and run on the meta device (no
        # arithmetic, no weight init), which makes listing 8 M-parameter models instant.
        with torch.device("meta"):
            model = create_model(name, num_classes=num_classes)
            n_flops = count_flops(model, example_inputs(entry.input, device="meta"), convention).total if flops else None
    except Exception:  # noqa: BLE001 - a model with data-dependent ops: count on the CPU
        model = create_model(name, num_classes=num_classes)
        n_flops = count_flops(model, example_inputs(entry.input), convention).total if flops else None
    return ModelSummary(
        name, entry.input.stage, dict(entry.input.arrays), tuple(entry.input.meta), num_classes,
        count_parameters(model), n_flops, convention, entry.description, entry.source, entry.encoding,
    )


def _human(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def describe_models(
    names: Sequence[str] | None = None,
    *,
    num_classes: int = 3,
    flops: bool = True,
    convention: str = "macs",
    raw: bool = False,
) -> tuple[list[str], list[list[Any]]]:
    """The model table: columns and one row per model, for :func:`mertool.table.format_table`.

    Besides input, parameters and FLOPs, each row says where the model's default recipe
    comes from (paper, authors' code or mertool) and which input encoding it was made for.

    Parameters
    ----------
    names : sequence of str, optional
        Models to describe (default: every registered one).
    num_classes, flops, convention
        As for :func:`summarize_model`.
    raw : bool
        Machine-readable columns (stage, num_classes, exact counts) for CSV, instead of
        the human ones (``59,403`` parameters, ``29.30M`` FLOPs).

    Returns
    -------
    columns : list of str
    rows : list of list
    """
    summaries = [summarize_model(n, num_classes, flops, convention) for n in (names or list_models())]
    if raw:
        columns = ["model", "stage", "input", "num_classes", "params", f"flops_{convention}", "encoding", "source",
                   "description"]
        rows = [[s.name, s.stage, s.input_text, s.num_classes, s.params, s.flops, s.encoding or "", s.source,
                 s.description] for s in summaries]
        return columns, rows
    columns = ["model", "input", "params", f"FLOPs ({convention})", "encoding", "recipe source", "description"]
    return columns, [[s.name, s.input_text, f"{s.params:,}", _human(s.flops), s.encoding or "-", s.source,
                      s.description] for s in summaries]
