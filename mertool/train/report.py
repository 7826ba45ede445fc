"""Plots of a run and a table comparing runs (``mertool report``).

A run over several seeds (``mertool train --seeds``) shows each score as mean ± sd over seeds.

A run scored on several source datasets (a composite benchmark) adds ``UF1_<dataset>``
and ``UAR_<dataset>`` columns after the pooled ``UF1`` and ``UAR``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .. import table  # noqa: E402
from ..errors import MertoolError  # noqa: E402
from .rundir import ORACLE, RunDir  # noqa: E402

#: ``mertool report --format`` values (``md`` is short for ``markdown``).
FORMATS = ("text", "json", "csv", "markdown", "md")
_TEXT = {"run", "model", "scheme", "selection"}  # columns that stay strings in JSON, whatever they read
COLUMNS = ["run", "model", "scheme", "folds", "samples", "UF1", "UAR", "acc", "acc_fold_mean",
           "macro_f1_fold_mean", "params", "epochs", "selection", "time_s"]


def plot_confusion(cm: np.ndarray, classes: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Confusion matrix (rows true, columns predicted): counts, shaded by row share."""
    cm = np.asarray(cm)
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = 1.2 + 0.9 * len(classes)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if share[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of true class")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def _mean_curve(histories: list[list[dict]], key: str) -> tuple[np.ndarray, np.ndarray] | None:
    # Folds may stop at different epochs (early stopping): average over folds still running.
    length = max((len(h) for h in histories), default=0)
    sums, counts = np.zeros(length), np.zeros(length)
    for h in histories:
        for i, row in enumerate(h):
            if key in row:
                sums[i] += row[key]
                counts[i] += 1
    if not counts.any():
        return None
    ok = counts > 0
    return np.arange(1, length + 1)[ok], sums[ok] / counts[ok]


def _epoch_axis(ax) -> None:
    """Whole-number epoch ticks and a light grid."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)


CURVE_NAMES = {"train": "train", "val": "validation", "ORACLE_test": "ORACLE test fold"}


def plot_curves(histories: list[list[dict]], path: str | Path, title: str = "", oracle: bool = False) -> Path:
    """Learning curves averaged over folds: loss and accuracy per epoch, under one title.

    Test-fold curves (``ORACLE_*`` keys) are drawn only when ``oracle`` is true.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, kind in zip(axes, ("loss", "acc")):
        for part, style in (("train", "-"), ("val", "--"), ("ORACLE_test", ":")):
            if part == "ORACLE_test" and not oracle:
                continue
            curve = _mean_curve(histories, f"{part}_{kind}")
            if curve is not None:
                ax.plot(*curve, style, marker="o" if len(curve[0]) <= 20 else None, ms=3, label=CURVE_NAMES[part])
        _epoch_axis(ax)
        ax.set_ylabel("accuracy" if kind == "acc" else "loss")
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.suptitle(f"{title}: mean over folds" if title else "mean over folds", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


STANDARD_LOG_KEYS = {"epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "ORACLE_test_acc"}


def plot_model_log(histories: list[list[dict]], path: str | Path, title: str = "") -> Path | None:
    """Per-epoch scalars a model logs itself (``epoch_log()``, e.g. SOA angles), mean over folds.

    Returns None (and writes nothing) when the histories hold no such keys.
    """
    keys: list[str] = []
    for h in histories:
        for row in h:
            keys.extend(k for k in row if k not in STANDARD_LOG_KEYS and k not in keys)
    if not keys:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in keys:
        curve = _mean_curve(histories, key)
        if curve is not None:
            ax.plot(*curve, label=key)
    _epoch_axis(ax)
    ax.set_ylabel("degrees" if all(k.startswith("theta_deg") for k in keys) else "value")
    ax.legend()
    fig.suptitle(f"{title}: mean over folds" if title else "mean over folds", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def _dataset_cells(m: dict) -> dict[str, str]:
    """``UF1_<dataset>``, ``UAR_<dataset>`` cells of a run with several source datasets (else none)."""
    per = m.get("per_dataset", {})
    if len(per) < 2:
        return {}
    return {f"{kind}_{name}": f"{d[kind.lower()]:.4f}" for name, d in per.items() for kind in ("UF1", "UAR")}


def _score(m: dict, key: str) -> str:
    """A metric cell: ``0.6123``, or ``0.6123 ± 0.0150`` (mean ± sd) for a run over several seeds."""
    sd = m.get(f"{key}_sd")
    return f"{m[key]:.4f}" if sd is None else f"{m[key]:.4f} ± {sd:.4f}"


def _row(m: dict, label: str) -> dict:
    fm = m.get("fold_mean", {})
    return {
        "run": label,
        "model": m.get("model", ""),
        "scheme": m.get("scheme", ""),
        "folds": m.get("n_folds", 0),
        "samples": m.get("n_samples", ""),
        "UF1": _score(m, "uf1"),
        "UAR": _score(m, "uar"),
        "acc": _score(m, "accuracy"),
        "acc_fold_mean": f"{fm['accuracy']:.4f}" if "accuracy" in fm else "",  # none over seeds
        "macro_f1_fold_mean": f"{fm['macro_f1']:.4f}" if "macro_f1" in fm else "",
        "params": m.get("params", ""),
        "epochs": m.get("epochs", ""),
        "selection": m.get("selection", ""),
        "time_s": f"{m.get('wall_seconds', m.get('train_seconds', 0.0)):.1f}",
        **_dataset_cells(m),
    }


def summarize_runs(runs: Sequence[str | Path]) -> list[dict]:
    """One table row per finished run (plus one per ORACLE result, labelled so).

    Raises
    ------
    MertoolError
        A folder that is not a finished run.
    """
    rows = []
    for run in map(RunDir, runs):
        m = run.metrics()
        if m is None:
            hint = " (unfinished: re-run `mertool train` with the same options to resume)" if run.is_run else ""
            raise MertoolError(f"{run.path}: no metrics.json; not a finished mertool run{hint}")
        rows.append(_row(m, str(run.path)))
        o = run.metrics(oracle=True)
        if o is not None:
            o.setdefault("wall_seconds", m.get("wall_seconds", 0.0))
            rows.append(_row(o, f"{run.path} [{ORACLE}]"))
    return rows


def _columns(rows: list[dict]) -> list[str]:
    """:data:`COLUMNS`, with the rows' per-dataset columns after ``UAR`` (datasets by name)."""
    names = sorted({k[len("UF1_"):] for row in rows for k in row if k.startswith("UF1_")})
    at = COLUMNS.index("UAR") + 1
    return COLUMNS[:at] + [f"{kind}_{n}" for n in names for kind in ("UF1", "UAR")] + COLUMNS[at:]


def _typed(cell: object) -> object:
    """A table cell as a JSON value: numbers as numbers, anything else (``0.61 ± 0.02``, empty) as written."""
    if isinstance(cell, str):
        for kind in (int, float):
            try:
                return kind(cell)
            except ValueError:
                pass
    return cell


def format_table(rows: list[dict], fmt: str = "text", columns: Sequence[str] | None = None) -> str:
    """Render rows as an aligned text table, Markdown (``md``), CSV or JSON (text leaves out ``selection``).

    Every format holds the same rows and cells; JSON is a list of objects, one per row,
    keyed by column, with numeric cells as numbers. ``columns`` defaults to
    :data:`COLUMNS` plus the rows' per-dataset columns.
    """
    if fmt not in FORMATS:
        raise MertoolError(f"unknown table format {fmt!r}; use {', '.join(FORMATS)}")
    columns = _columns(rows) if columns is None else list(columns)
    if fmt == "json":
        return json.dumps([{c: row.get(c, "") if c in _TEXT else _typed(row.get(c, "")) for c in columns}
                           for row in rows], indent=2) + "\n"
    cols = [c for c in columns if c != "selection"] if fmt == "text" else columns
    return table.format_table(rows, cols, "markdown" if fmt == "md" else fmt) + "\n"
