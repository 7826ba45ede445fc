"""Metrics vs hand-worked examples and scikit-learn; pooled vs per-fold conventions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score

from mertool.train.metrics import compute_metrics, uar, uf1

# Six samples, three classes, two folds (A = first three, B = last three).
Y_TRUE = [0, 0, 1, 1, 2, 2]
Y_PRED = [0, 1, 1, 1, 2, 0]
FOLDS = ["A", "A", "A", "B", "B", "B"]
CLASSES = ["neg", "pos", "sur"]


def test_pooled_by_hand():
    # Per class 2TP/(2TP+FP+FN): neg 2/4, pos 4/5, sur 2/3; recall: 1/2, 2/2, 1/2.
    m = compute_metrics(Y_TRUE, Y_PRED, FOLDS, CLASSES)
    assert m["uf1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["uar"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class_recall"] == pytest.approx({"neg": 0.5, "pos": 1.0, "sur": 0.5})
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["support"] == {"neg": 2, "pos": 2, "sur": 2}
    # weighted F1 with equal supports equals macro F1 here
    assert m["weighted_f1"] == pytest.approx(m["uf1"])


def test_per_fold_by_hand():
    # Fold A: y=[0,0,1] p=[0,1,1]: F1 neg 2/3, pos 2/3; recall .5, 1; weighted (2*2/3+2/3)/3.
    # Fold B: y=[1,2,2] p=[1,2,0] over true classes {pos, sur}: F1 1, 2/3; recall 1, .5;
    #         weighted (1 + 2*2/3)/3. The wrong "neg" prediction is a miss of "sur" only.
    m = compute_metrics(Y_TRUE, Y_PRED, FOLDS, CLASSES)
    a, b = m["per_fold"]["A"], m["per_fold"]["B"]
    assert a["macro_f1"] == pytest.approx(2 / 3) and b["macro_f1"] == pytest.approx(5 / 6)
    assert a["uar"] == pytest.approx(0.75) and b["uar"] == pytest.approx(0.75)
    assert b["weighted_f1"] == pytest.approx((1 + 4 / 3) / 3)
    fm = m["fold_mean"]
    assert fm["accuracy"] == pytest.approx(2 / 3)
    assert fm["macro_f1"] == pytest.approx(0.75)
    assert fm["uar"] == pytest.approx(0.75)
    assert fm["weighted_f1"] == pytest.approx((2 / 3 + 7 / 9) / 2)
    assert (a["n"], b["n"]) == (3, 3)
    # pooled and per-fold differ on this example: the conventions are not interchangeable
    assert m["uf1"] != pytest.approx(fm["macro_f1"])


def test_against_sklearn_random():
    rng = np.random.default_rng(3)
    k = 5
    y = rng.integers(0, k, 400)
    p = np.where(rng.random(400) < 0.6, y, rng.integers(0, k, 400))
    folds = [f"s{i}" for i in rng.integers(0, 20, 400)]
    m = compute_metrics(y, p, folds, [f"c{i}" for i in range(k)])
    assert m["uf1"] == pytest.approx(f1_score(y, p, average="macro"))
    assert m["uar"] == pytest.approx(balanced_accuracy_score(y, p))
    assert m["weighted_f1"] == pytest.approx(f1_score(y, p, average="weighted"))
    assert np.array_equal(m["confusion"], confusion_matrix(y, p))
    fa = np.array(folds)
    accs = [np.mean(y[fa == f] == p[fa == f]) for f in dict.fromkeys(folds)]
    assert m["fold_mean"]["accuracy"] == pytest.approx(np.mean(accs))
    bal = [balanced_accuracy_score(y[fa == f], p[fa == f]) for f in dict.fromkeys(folds)]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert m["fold_mean"]["uar"] == pytest.approx(np.mean(bal))
    assert m["n_folds"] == len(set(folds))


def test_pooled_counts_classes_never_predicted():
    # A class never predicted still counts (F1 0) in the pooled UF1 over all classes.
    y, p = [0, 1, 2, 2], [0, 1, 1, 1]
    # class 1: TP 1, FP 2, FN 0 -> 2/4; class 2: TP 0 -> 0
    assert uf1(y, p, 3) == pytest.approx((1 + 0.5 + 0) / 3)
    assert uar(y, p, 3) == pytest.approx((1 + 1 + 0) / 3)


def test_bad_metric_input():
    with pytest.raises(ValueError):
        compute_metrics([0, 1], [0], ["a", "a"], CLASSES)
    with pytest.raises(ValueError):
        compute_metrics([0, 3], [0, 1], ["a", "a"], CLASSES)


def test_pooled_scores_only_tested_classes():
    # class 2 never occurs in the test labels (a fixed split): it is not scored as F1 0
    y, p = [0, 0, 1, 1], [0, 1, 1, 1]
    m = compute_metrics(y, p, ["f"] * 4, CLASSES)
    assert m["uf1"] == pytest.approx(f1_score(y, p, labels=[0, 1], average="macro"))
    assert m["classes_scored"] == ["neg", "pos"] and m["support"]["sur"] == 0
