"""Subject-independent splits: LOSO, k-fold by subject, a fixed split.

Every split keeps each subject's samples together. A validation set, when asked for, is
carved from the *training* subjects of each fold only (whole subjects, chosen by a seeded
generator that never sees labels), so model selection cannot look at the test fold.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import numpy as np

from ..errors import MertoolError

SCHEMES = ("loso", "kfold", "fixed")


@dataclasses.dataclass(frozen=True)
class Fold:
    """One train/validation/test split (indices into the data set, sorted)."""

    name: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    test_subjects: tuple[str, ...]

    def __post_init__(self) -> None:
        sets = [set(self.train.tolist()), set(self.val.tolist()), set(self.test.tolist())]
        if sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2]:
            raise AssertionError(f"fold {self.name}: train/val/test overlap")


def _subject_order(subjects: Sequence[str]) -> list[str]:
    # Natural order so "sub2" < "sub10" and fold names read well.
    def key(s: str) -> list:
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]

    return sorted(set(subjects), key=key)


def _carve_val(
    train_subjects: list[str], subj: np.ndarray, val_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split training subjects into train and validation (whole subjects)."""
    if val_fraction <= 0:
        return np.flatnonzero(np.isin(subj, train_subjects)), np.array([], dtype=np.int64)
    if len(train_subjects) < 2:
        raise MertoolError("a validation split needs at least 2 training subjects per fold")
    n_val = min(len(train_subjects) - 1, max(1, int(round(val_fraction * len(train_subjects)))))
    val_subjects = list(rng.choice(np.array(train_subjects, dtype=object), size=n_val, replace=False))
    rest = [s for s in train_subjects if s not in set(val_subjects)]
    return np.flatnonzero(np.isin(subj, rest)), np.flatnonzero(np.isin(subj, val_subjects))


def make_folds(
    subjects: Sequence[str],
    scheme: str = "loso",
    k: int = 5,
    test_subjects: Sequence[str] = (),
    val_fraction: float = 0.0,
    seed: int = 0,
) -> list[Fold]:
    """Build subject-independent folds.

    Parameters
    ----------
    subjects : sequence of str
        Subject of each sample.
    scheme : {"loso", "kfold", "fixed"}
        ``loso``: one fold per subject. ``kfold``: subjects dealt into ``k`` groups
        (shuffled by ``seed``). ``fixed``: one fold whose test set is ``test_subjects``.
    k : int
        Number of groups for ``kfold``.
    test_subjects : sequence of str
        Test subjects for ``fixed``.
    val_fraction : float
        Fraction of each fold's training subjects held out for validation (0 = none).
    seed : int
        Seeds the k-fold deal and the validation draw (labels are never consulted).

    Returns
    -------
    list of Fold
    """
    subj = np.asarray([str(s) for s in subjects], dtype=object)
    if len(subj) == 0:
        raise MertoolError("no samples to split")
    if not 0 <= val_fraction < 1:
        raise MertoolError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = _subject_order(subj.tolist())
    rng = np.random.default_rng(seed)
    if scheme == "loso":
        groups = [[s] for s in order]
        names = [str(s) for s in order]
    elif scheme == "kfold":
        if not 2 <= k <= len(order):
            raise MertoolError(f"kfold needs 2 <= k <= number of subjects ({len(order)}), got k={k}")
        shuffled = list(rng.permutation(np.array(order, dtype=object)))
        groups = [sorted(shuffled[i::k], key=order.index) for i in range(k)]
        names = [f"fold{i + 1:02d}" for i in range(k)]
    elif scheme == "fixed":
        missing = sorted(set(map(str, test_subjects)) - set(order))
        if not test_subjects or missing:
            raise MertoolError(
                f"fixed split needs test_subjects from the data's subjects; unknown: {missing or 'none given'}"
            )
        groups = [sorted(set(map(str, test_subjects)), key=order.index)]
        names = ["fixed"]
    else:
        raise MertoolError(f"unknown split scheme {scheme!r}; choose from {', '.join(SCHEMES)}")
    if len(groups) < 2 and scheme != "fixed":
        raise MertoolError(f"{scheme} needs at least 2 subjects, got {len(order)}")
    folds = []
    for name, group in zip(names, groups):
        train_subjects = [s for s in order if s not in set(group)]
        if not train_subjects:
            raise MertoolError(f"fold {name}: no training subjects left")
        fold_rng = np.random.default_rng([seed, len(folds)])
        train, val = _carve_val(train_subjects, subj, val_fraction, fold_rng)
        test = np.flatnonzero(np.isin(subj, group))
        folds.append(Fold(name, train, val, test, tuple(group)))
    return folds
