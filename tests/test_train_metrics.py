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


def test_per_dataset_by_hand_and_against_sklearn():
    # casme2: y=[0,0,1,1] p=[0,1,1,1]: F1 neg 2/3, pos 4/5; recall 1/2, 1 -> UF1 11/15, UAR 3/4.
    # samm:   y=[1,2]     p=[1,0]: scored over its true classes {pos, sur}: F1 1, 0; recall 1, 0.
    y = [0, 0, 1, 1, 1, 2]
    p = [0, 1, 1, 1, 1, 0]
    datasets = ["casme2"] * 4 + ["samm"] * 2
    m = compute_metrics(y, p, ["a", "a", "b", "b", "c", "c"], CLASSES, datasets=datasets)
    casme2, samm = m["per_dataset"]["casme2"], m["per_dataset"]["samm"]
    assert list(m["per_dataset"]) == ["casme2", "samm"]
    assert casme2["uf1"] == pytest.approx((2 / 3 + 4 / 5) / 2) and casme2["uar"] == pytest.approx(0.75)
    assert casme2["accuracy"] == pytest.approx(3 / 4) and casme2["n"] == 4
    assert samm["uf1"] == pytest.approx(0.5) and samm["uar"] == pytest.approx(0.5) and samm["n"] == 2
    # pooled figures do not change when datasets are given
    plain = compute_metrics(y, p, ["a", "a", "b", "b", "c", "c"], CLASSES)
    assert {k: m[k] for k in ("uf1", "uar", "accuracy")} == {k: plain[k] for k in ("uf1", "uar", "accuracy")}
    assert "per_dataset" not in plain

    rng = np.random.default_rng(7)
    yr = rng.integers(0, 3, 300)
    pr = np.where(rng.random(300) < 0.5, yr, rng.integers(0, 3, 300))
    dr = np.array(["smic", "casme2", "samm"])[rng.integers(0, 3, 300)]
    got = compute_metrics(yr, pr, ["f"] * 300, CLASSES, datasets=dr.tolist())["per_dataset"]
    for name in ("casme2", "samm", "smic"):
        ys, ps = yr[dr == name], pr[dr == name]
        assert got[name]["uf1"] == pytest.approx(f1_score(ys, ps, average="macro"))
        assert got[name]["uar"] == pytest.approx(balanced_accuracy_score(ys, ps))
        assert got[name]["n"] == int((dr == name).sum())
    with pytest.raises(ValueError, match="one entry per sample"):
        compute_metrics(y, p, ["a"] * 6, CLASSES, datasets=["x"])


def test_dataset_column_through_predictions_summary_and_report(tmp_path):
    import csv
    import json

    from mertool.train.config import TrainConfig
    from mertool.train.report import format_table, summarize_runs
    from mertool.train.run import train_run
    from train_fixtures import TINY, ensure_tiny, synthetic_flow, write_flow_h5

    ensure_tiny()
    x, labels, subjects = synthetic_flow(n_subjects=4, per_subject=6)
    datasets = ["casme2" if s in ("s1", "s2") else "samm" for s in subjects]
    path = write_flow_h5(tmp_path / "flow.h5", x, labels, subjects, extra_meta={"dataset": datasets})
    result = train_run(path, tmp_path / "run", TrainConfig(model=TINY, epochs=2, device="cpu"), progress=False)
    with open(tmp_path / "run" / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:4] == ["sample_id", "subject", "dataset", "fold"]
    assert all(r["dataset"] == ("casme2" if r["subject"] in ("s1", "s2") else "samm") for r in rows)
    per = json.loads((tmp_path / "run" / "metrics.json").read_text())["per_dataset"]
    index = {c: i for i, c in enumerate(sorted(set(labels)))}
    for name in ("casme2", "samm"):
        ys = [index[r["label"]] for r in rows if r["dataset"] == name]
        ps = [index[r["prediction"]] for r in rows if r["dataset"] == name]
        assert per[name]["uf1"] == pytest.approx(f1_score(ys, ps, labels=sorted(set(ys)), average="macro"))
        assert per[name]["n"] == 12
        assert f"  {name}: UF1 {per[name]['uf1']:.4f}  UAR {per[name]['uar']:.4f}  (12 samples)" in result.summary()
    table = format_table(summarize_runs([tmp_path / "run"]), "csv").splitlines()
    header = table[0].split(",")
    assert header[5:11] == ["UF1", "UAR", "UF1_casme2", "UAR_casme2", "UF1_samm", "UAR_samm"]
    cells = dict(zip(header, table[1].split(",")))
    assert cells["UAR_samm"] == f"{per['samm']['uar']:.4f}"
    assert "UF1_casme2" in format_table(summarize_runs([tmp_path / "run"]), "markdown")
