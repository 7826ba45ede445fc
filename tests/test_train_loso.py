"""Subject-independent splits; validation carved from training subjects only."""

from __future__ import annotations

import numpy as np
import pytest

from mertool.errors import MertoolError
from mertool.train.loso import make_folds

SUBJECTS = [f"s{i}" for i in (1, 1, 2, 2, 2, 3, 10, 10, 4, 5, 5, 6)]


def _subjects(idx):
    return {SUBJECTS[i] for i in idx}


def test_loso_one_fold_per_subject_natural_order():
    folds = make_folds(SUBJECTS, "loso")
    assert [f.name for f in folds] == ["s1", "s2", "s3", "s4", "s5", "s6", "s10"]
    for f in folds:
        assert _subjects(f.test) == {f.name}
        assert f.name not in _subjects(f.train)
        assert len(f.train) + len(f.test) == len(SUBJECTS)
    assert sorted(np.concatenate([f.test for f in folds]).tolist()) == list(range(len(SUBJECTS)))


def test_validation_only_from_training_subjects():
    folds = make_folds(SUBJECTS, "loso", val_fraction=0.3, seed=1)
    for f in folds:
        val, train, test = _subjects(f.val), _subjects(f.train), _subjects(f.test)
        assert val and not val & test and not val & train  # whole subjects, never the test subject
        assert len(f.train) + len(f.val) + len(f.test) == len(SUBJECTS)
    again = make_folds(SUBJECTS, "loso", val_fraction=0.3, seed=1)
    assert all(np.array_equal(a.val, b.val) for a, b in zip(folds, again))


def test_kfold_groups_subjects():
    folds = make_folds(SUBJECTS, "kfold", k=3, seed=0)
    assert len(folds) == 3
    tests = [_subjects(f.test) for f in folds]
    assert set().union(*tests) == set(SUBJECTS)
    assert sum(len(t) for t in tests) == len(set(SUBJECTS))  # disjoint
    for f in folds:
        assert not _subjects(f.train) & _subjects(f.test)


def test_fixed_split():
    (f,) = make_folds(SUBJECTS, "fixed", test_subjects=["s2", "s10"])
    assert _subjects(f.test) == {"s2", "s10"} and f.name == "fixed"
    with pytest.raises(MertoolError, match="unknown"):
        make_folds(SUBJECTS, "fixed", test_subjects=["s99"])


def test_bad_split_options():
    with pytest.raises(MertoolError, match="scheme"):
        make_folds(SUBJECTS, "holdout")
    with pytest.raises(MertoolError, match="k="):
        make_folds(SUBJECTS, "kfold", k=50)
    with pytest.raises(MertoolError, match="at least 2 subjects"):
        make_folds(["a", "a"], "loso")
