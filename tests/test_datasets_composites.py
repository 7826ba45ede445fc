"""Composite sets on fixtures whose per-dataset emotion counts mirror the real corpora."""

from collections import Counter

import pytest

from ds_fixtures import casme2_tree, casme_sq_tree, casme_tree, samm_tree, smic_tree
from mertool.cli.main import cli
from mertool.datasets import load_dataset
from mertool.datasets.composites import index_composite
from mertool.samples import read_samples

CASME2 = {"happiness": 32, "disgust": 63, "repression": 25, "surprise": 25, "others": 99, "fear": 2, "sadness": 7}
SAMM = {"Happiness": 26, "Anger": 57, "Contempt": 12, "Disgust": 9, "Fear": 8, "Sadness": 6, "Surprise": 15, "Other": 26}
SMIC = {"positive": 51, "negative": 70, "surprise": 43}
CASME = {"happiness": 10, "disgust": 50, "repression": 30, "sadness": 5, "surprise": 19, "tense": 20, "contempt": 3}
CASME_SQ = {"positive": 6, "negative": 21, "surprise": 8}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """One folder holding all six datasets (names that must not be confused: CASME, CASME2, CAS(ME)^2)."""
    root = tmp_path_factory.mktemp("corpora")
    smic_tree(root / "SMIC", SMIC, n_subjects=16)
    casme2_tree(root / "CASME2", CASME2, n_subjects=26, n_included=24)
    samm_tree(root / "SAMM", SAMM, n_subjects=32, n_included=28)
    casme_tree(root / "CASME", CASME, n_subjects=19, n_included=17,
               included={"happiness", "disgust", "repression", "sadness", "surprise"})
    casme_sq_tree(root / "CAS(ME)^2", CASME_SQ, n_subjects=8, macro=3)
    return root


def test_megc2019_counts(corpora):
    samples, reports = index_composite("megc2019", corpora)
    assert len(samples) == 442
    assert len({s.subject for s in samples}) == 68
    per = Counter(s.dataset for s in samples)
    assert per == {"smic": 164, "casme2": 145, "samm": 133}
    subjects = {d: len({s.subject for s in samples if s.dataset == d}) for d in per}
    assert subjects == {"smic": 16, "casme2": 24, "samm": 28}
    labels = Counter((s.dataset, s.label) for s in samples)
    assert labels[("samm", "negative")] == 57 + 12 + 9 + 8 + 6
    assert labels[("casme2", "negative")] == 63 + 25
    assert Counter(s.label for s in samples) == {"positive": 51 + 32 + 26, "negative": 70 + 88 + 92, "surprise": 43 + 25 + 15}
    assert all(s.subject.startswith(s.dataset + "_") and s.sample_id.startswith(s.dataset + "_") for s in samples)
    assert reports["samm"].labels.excluded == {"others": 26}
    assert reports["casme2"].labels.excluded == {"others": 99, "fear": 2, "sadness": 7}


def test_offtanet3_counts(corpora):
    samples = load_dataset("offtanet3", root=corpora)
    assert len(samples) == 294
    assert len({s.subject for s in samples}) == 49
    table = Counter((s.dataset, s.label) for s in samples)
    # Off-TANet Table 1: positive 10/32/6, negative 85/88/21, surprise 19/25/8
    assert table == {("casme", "positive"): 10, ("casme2", "positive"): 32, ("casme-sq", "positive"): 6,
                     ("casme", "negative"): 85, ("casme2", "negative"): 88, ("casme-sq", "negative"): 21,
                     ("casme", "surprise"): 19, ("casme2", "surprise"): 25, ("casme-sq", "surprise"): 8}
    assert {s.subject.split("_")[0] for s in samples} == {"casme", "casme2", "casmesq"}


def test_cli_megc_min_class_and_missing_component(corpora, tmp_path, capsys):
    out = tmp_path / "s.csv"
    rc = cli(["index", "--dataset", "megc2019", "--root", str(corpora), "-o", str(out), "--min-class-count", "90"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "dropped surprise (83 samples)" in err
    assert Counter(s.label for s in read_samples(out)) == {"positive": 109, "negative": 250}
    part = tmp_path / "only_smic"
    smic_tree(part / "SMIC", {"positive": 2, "negative": 2, "surprise": 1}, n_subjects=2)
    rc = cli(["index", "--dataset", "megc2019", "--root", str(part), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 0 and "not found under" in err and "casme2, samm" in err
    rc = cli(["index", "--dataset", "offtanet3", "--root", str(part), "-o", str(out)])
    assert rc == 1 and "none of casme, casme2, casme-sq found" in capsys.readouterr().err
