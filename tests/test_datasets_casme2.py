import csv

import numpy as np
import pytest

from ds_fixtures import touch_frames, write_xlsx
from mertool.cli.main import cli
from mertool.datasets import load_dataset
from mertool.datasets.aus import au_vector
from mertool.datasets.casme2 import index_casme2
from mertool.errors import MertoolError

# Real CASME II headers, in mixed case and with trailing spaces as some copies have them.
HEADER = ["subject", "Filename ", "OnsetFrame", "apexframe", "OffsetFrame ", "Action Units", "Estimated Emotion "]


@pytest.fixture
def casme2(tmp_path):
    root = tmp_path / "CASME2"
    frames = root / "CASME2_RAW_selected"
    rows = [
        [1, "EP02_01f", 46, 59, 86, "1+R2", "happiness"],    # normal
        [1, "EP03_02", 10, "/", 20, "4+L10", "disgust"],      # apex "/"
        [2, "EP04_03", 10, -1, 20, "R12", "repression"],      # apex -1
        [2, "EP05_04", 10, 10, 20, "AU12", "surprise"],       # onset == apex
        [3, "EP06_05", 10, 15, 0, "12B", "Others"],           # offset 0
        [3, "EP07_06", 10, 30, 20, "?", "disgust"],           # apex outside onset..offset
        [4, "EP08_07", 10, 12, 20, "4", "fear"],              # excluded by the 5-class protocol
        [4, "EP09_08", 10, 12, 20, "4", "happy?"],            # unknown label
        [5, "EP10_09", 10, 12, 20, "4", "happiness"],         # missing folder
        [5, "EP11_10", 10, 12, 20, "4", "happiness"],         # empty folder
    ]
    for sub, name, onset, *_ in rows:
        if name == "EP10_09":
            continue
        if name == "EP11_10":
            (frames / f"sub{sub:02d}" / name).mkdir(parents=True)
            continue
        last = 86 if name == "EP02_01f" else 25
        touch_frames(frames / f"sub{sub:02d}" / name, range(onset, last + 1), "reg_img{}.jpg")
    write_xlsx(root / "CASME2-coding-20140508.xlsx", HEADER, rows)
    return root


def test_records_labels_and_quirks(casme2):
    samples, report = index_casme2(casme2, None)
    got = {s.sample_id: s for s in samples}
    assert list(got) == ["sub01_EP02_01f", "sub01_EP03_02", "sub02_EP04_03", "sub02_EP05_04", "sub03_EP06_05", "sub03_EP07_06"]
    s = got["sub01_EP02_01f"]
    assert (s.subject, s.onset, s.apex, s.offset, s.label, s.aus, s.apex_source, s.dataset, s.clip) == (
        "sub01", 46, 59, 86, "happiness", "1+R2", "sheet", "casme2", "EP02_01f")
    assert s.frames.endswith("sub01/EP02_01f")
    assert (got["sub01_EP03_02"].apex, got["sub01_EP03_02"].apex_source) == (-1, "missing")
    assert (got["sub02_EP04_03"].apex, got["sub02_EP04_03"].apex_source) == (-1, "missing")
    assert (got["sub02_EP05_04"].apex, got["sub02_EP05_04"].apex_source) == (10, "sheet")
    assert got["sub03_EP06_05"].offset == 25 and got["sub03_EP06_05"].label == "others"
    assert (got["sub03_EP07_06"].apex, got["sub03_EP07_06"].apex_source) == (-1, "invalid")
    assert len(report.skipped) == 2
    assert any("EP10_09" in m and "not found" in m for m in report.skipped)
    assert any("EP11_10" in m and "no images" in m for m in report.skipped)
    assert report.labels.excluded == {"fear": 1}
    assert report.labels.unknown == {"happy?": ["sub04_EP09_08"]}
    assert any("apex == onset" in m for m in report.repaired)
    assert any("offset 0" in m for m in report.repaired)
    np.testing.assert_array_equal(au_vector(got["sub01_EP03_02"].aus)[[2, 7]], [1, 1])


def test_protocol_megc_relabels(casme2):
    samples, _ = index_casme2(casme2, None, "megc2019-3")
    assert sorted((s.sample_id, s.label) for s in samples) == [
        ("sub01_EP02_01f", "positive"), ("sub01_EP03_02", "negative"), ("sub02_EP04_03", "negative"),
        ("sub02_EP05_04", "surprise"), ("sub03_EP07_06", "negative")]


def test_cli_index_reports(casme2, tmp_path, capsys):
    out = tmp_path / "samples.csv"
    rc = cli(["index", "--dataset", "casme2", "--root", str(casme2), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 6 and rows[0]["label"] == "happiness"
    assert "2 row(s) skipped" in err and "happy?" in err and "fear=1" in err
    assert "class(es) with no samples" not in err  # all five classes present


def test_min_class_count_cli_error(casme2, tmp_path, capsys):
    # counts: disgust 2, happiness/others/repression/surprise 1 -> min 2 leaves one class
    samples = load_dataset("casme2", root=casme2, min_class_count=1)
    assert len(samples) == 6
    rc = cli(["index", "--dataset", "casme2", "--root", str(casme2), "-o", str(tmp_path / "s.csv"), "--min-class-count", "2"])
    err = capsys.readouterr().err
    assert rc == 1 and "only 1 class(es) remain (disgust)" in err


def test_filter_rare_reports_dropped_and_empty():
    from mertool.datasets.protocols import filter_rare
    from mertool.samples import Sample

    labels = ["a"] * 12 + ["b"] * 10 + ["c"] * 9
    samples = [Sample(f"x{i}", "s1", 1, 2, 3, lab) for i, lab in enumerate(labels)]
    kept, dropped = filter_rare(samples, 10, classes=("a", "b", "c", "d"))
    assert dropped == {"c": 9, "d": 0}
    assert [s.label for s in kept] == ["a"] * 12 + ["b"] * 10
    kept, dropped = filter_rare(samples, 0, classes=("a", "b", "c", "d"))
    assert len(kept) == 31 and dropped == {"d": 0}
    with pytest.raises(MertoolError, match="must be >= 0"):
        filter_rare(samples, -1)


def test_bad_sheets(tmp_path, casme2, capsys):
    write_xlsx(tmp_path / "bad.xlsx", ["Subject", "Filename", "Onset", "Apex", "Offset"], [[1, "EP02_01f", 1, 2, 3]])
    with pytest.raises(MertoolError, match="missing column.*Estimated Emotion.*expected columns Subject, Filename"):
        index_casme2(casme2, tmp_path / "bad.xlsx")
    with pytest.raises(MertoolError, match="annotation sheet not found"):
        index_casme2(casme2, tmp_path / "nope.xlsx")
    empty = tmp_path / "empty_root"
    empty.mkdir()
    rc = cli(["index", "--dataset", "casme2", "--root", str(empty), "-o", str(tmp_path / "x.csv")])
    assert rc == 1 and "no casme2 annotation sheet found" in capsys.readouterr().err
    rc = cli(["index", "--dataset", "casme2", "--root", str(casme2), "--protocol", "samm-5", "-o", str(tmp_path / "x.csv")])
    assert rc == 2 and "no class map for dataset 'casme2'" in capsys.readouterr().err


def test_csv_sheet_same_result(casme2, tmp_path):
    import pandas as pd

    csv_sheet = tmp_path / "coding.csv"
    pd.read_excel(casme2 / "CASME2-coding-20140508.xlsx").to_csv(csv_sheet, index=False)
    a, _ = index_casme2(casme2, None)
    b, _ = index_casme2(casme2, csv_sheet)
    assert a == b
