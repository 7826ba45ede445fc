"""Classification metrics for cross-validated micro-expression recognition.

Two conventions coexist in the MER literature, and mertool reports both:

* **pooled** (MEGC / composite convention): concatenate the test predictions of every
  fold, then compute one UF1 (macro F1) and one UAR (macro recall, "balanced accuracy")
  over all classes (over the classes with test samples, should a split leave one out);
* **per-fold mean**: compute the metric on each fold's test samples and average over
  folds with equal weight (Off-TANet's tables use this for UF1/UAR). On a fold, macro
  averages run over the classes that occur in that fold's true labels (a
  LOSO fold rarely holds every class); a wrong prediction of an absent class still
  counts as a miss of the true class.

Composite benchmarks (MEGC 2019: SMIC, CASME II and SAMM pooled) also report UF1 and UAR
per source dataset, each computed like the pooled figure on that dataset's predictions
alone (``per_dataset``).

All numbers come from scikit-learn with ``zero_division=0``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

from ..errors import MertoolError


def _check(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> None:
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must be equal-length 1-d arrays")
    if len(y_true) == 0:
        raise MertoolError("no predictions to score")
    if num_classes < 1:
        raise ValueError("num_classes must be positive")
    for name, y in (("label", y_true), ("prediction", y_pred)):
        if y.min() < 0 or y.max() >= num_classes:
            raise ValueError(f"{name} indices must lie in [0, {num_classes})")


def uf1(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int, labels: Sequence[int] | None = None) -> float:
    """Unweighted F1: mean over classes (all ``num_classes``, or ``labels``) of 2TP / (2TP + FP + FN)."""
    labels = list(range(num_classes)) if labels is None else list(labels)
    return float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))


def uar(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int, labels: Sequence[int] | None = None) -> float:
    """Unweighted average recall: mean over classes (all ``num_classes``, or ``labels``) of TP / n_c."""
    labels = list(range(num_classes)) if labels is None else list(labels)
    return float(recall_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))


def _fold_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    # Macro averages over the classes in this fold's true labels: a class the subject never
    # shows has no recall, and counting it as 0 would punish every LOSO fold.
    labels = np.unique(y_true).tolist()
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "uar": float(recall_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
    }


def _pooled(yt: np.ndarray, yp: np.ndarray, k: int) -> dict[str, float]:
    """Pooled UF1 and UAR over the classes with test samples, and accuracy."""
    scored = sorted(set(yt.tolist()))
    return {"uf1": uf1(yt, yp, k, scored), "uar": uar(yt, yp, k, scored), "accuracy": float(accuracy_score(yt, yp))}


def compute_metrics(
    y_true: Sequence[int],
    y_pred: Sequence[int],
    folds: Sequence[str],
    classes: Sequence[str],
    datasets: Sequence[str] | None = None,
) -> dict:
    """All reported metrics of a cross-validated run.

    Parameters
    ----------
    y_true, y_pred : sequence of int
        Class indices (into ``classes``) of every test sample, pooled over folds.
    folds : sequence of str
        Fold name of each sample (the fold in which it was a test sample).
    classes : sequence of str
        Class names; index ``i`` names class ``i``.
    datasets : sequence of str, optional
        Source dataset of each sample (composite benchmarks).

    Returns
    -------
    dict
        ``uf1``, ``uar``, ``accuracy``, ``macro_f1``, ``weighted_f1`` (pooled);
        ``fold_mean`` with ``accuracy``, ``macro_f1``, ``weighted_f1``, ``uf1``, ``uar``
        (per-fold means; ``uf1`` there is the per-fold macro F1); ``per_class_recall``
        and ``support`` (class name -> value); ``confusion`` (rows = true class, columns
        = predicted, in ``classes`` order); ``per_fold`` (fold -> scores and size);
        ``n_samples``, ``n_folds``, ``classes``; with ``datasets``, ``per_dataset``
        (dataset -> ``uf1``, ``uar``, ``accuracy`` pooled over its samples, macro over
        the classes it has test samples of, and ``n``; datasets sorted by name).
    """
    yt = np.asarray(y_true, dtype=np.int64)
    yp = np.asarray(y_pred, dtype=np.int64)
    fa = np.asarray(folds, dtype=object)
    k = len(classes)
    _check(yt, yp, k)
    if len(fa) != len(yt) or (datasets is not None and len(datasets) != len(yt)):
        raise ValueError("folds (and datasets) must have one entry per sample")
    labels = list(range(k))
    # Pooled macro scores run over the classes with test samples: all of them under LOSO,
    # where every sample is tested once; a fixed split may leave a class untested.
    scored = sorted(set(yt.tolist()))
    recall = recall_score(yt, yp, labels=labels, average=None, zero_division=0)
    per_fold: dict[str, dict] = {}
    for name in dict.fromkeys(fa.tolist()):  # first-seen order
        mask = fa == name
        per_fold[str(name)] = {**_fold_scores(yt[mask], yp[mask]), "n": int(mask.sum())}
    mean = {m: float(np.mean([f[m] for f in per_fold.values()])) for m in ("accuracy", "macro_f1", "weighted_f1", "uar")}
    mean["uf1"] = mean["macro_f1"]
    pooled = _pooled(yt, yp, k)
    out = {
        **pooled,
        "macro_f1": pooled["uf1"],
        "weighted_f1": float(f1_score(yt, yp, labels=labels, average="weighted", zero_division=0)),
        "fold_mean": mean,
        "per_class_recall": {c: float(r) for c, r in zip(classes, recall)},
        "support": {c: int((yt == i).sum()) for i, c in enumerate(classes)},
        "confusion": confusion_matrix(yt, yp, labels=labels).tolist(),
        "per_fold": per_fold,
        "n_samples": int(len(yt)),
        "n_folds": len(per_fold),
        "classes": list(classes),
        "classes_scored": [classes[i] for i in scored],
    }
    if datasets is not None:
        da = np.asarray(datasets, dtype=object)
        out["per_dataset"] = {
            str(name): {**_pooled(yt[da == name], yp[da == name], k), "n": int((da == name).sum())}
            for name in sorted(set(da.tolist()))
        }
    return out
