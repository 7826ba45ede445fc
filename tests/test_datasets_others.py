"""MMEW, CASME, CAS(ME)^2, CAS(ME)^3 part A and SMIC-HS in their own layouts."""

import pytest

from ds_fixtures import CASME_HEADER, casme_sq_tree, touch_frames, write_xlsx
from mertool.cli.main import cli
from mertool.datasets.casme import index_casme
from mertool.datasets.casme3 import index_casme3
from mertool.datasets.casme_sq import index_casme_sq
from mertool.datasets.mmew import index_mmew
from mertool.datasets.smic import index_smic
from mertool.errors import MertoolError


def test_mmew(tmp_path):
    root = tmp_path / "MMEW"
    header = ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units", "Estimated Emotion", "remarks"]
    rows = [
        ["S01", "S01_anger01", 1, 8, 20, "4+7", "anger", ""],
        ["S01", "S01_happy02", 1, 5, 20, "6+12", "happiness", ""],
        ["S02", "S02_others01", 1, "/", 20, "?", "others", "x"],
        ["S02", "S02_fear01", 1, 3, 20, "1+2+4", "Fear", ""],  # folder under 'fear', sheet says Fear
    ]
    for emotion, name in [("anger", "S01_anger01"), ("happiness", "S01_happy02"), ("others", "S02_others01"), ("fear", "S02_fear01")]:
        touch_frames(root / "Micro_Expression" / emotion / name, range(1, 21), "{}.jpg")
    write_xlsx(root / "MMEW_Micro_Exp.xlsx", header, rows)
    samples, report = index_mmew(root, None)
    assert [(s.sample_id, s.subject, s.label, s.apex) for s in samples] == [
        ("S01_anger01", "S01", "anger", 8), ("S01_happy02", "S01", "happiness", 5),
        ("S02_others01", "S02", "others", -1), ("S02_fear01", "S02", "fear", 3)]
    assert not report.skipped


def test_casme_two_sections_apex2_fallback(tmp_path):
    root = tmp_path / "CASME"
    a = [[1, "EP01_5", 1, 4, "", 9, 9, "1+2", "surprise"], [1, "EP01_6", 1, "", 6, 9, 9, "4", "disgust"]]
    b = [[13, "EP07_1", 3, 5, "", 8, 6, "12", "Tense"], [13, "EP07_2", 3, 5, "", 8, 6, "12", "happiness"]]
    for sub, name, *_ in a + b:
        touch_frames(root / "CASME_raw_selected" / f"sub{sub:02d}" / name, range(1, 10), name + "-{}.jpg")
    write_xlsx(root / "CASME_A_Section_coding.xlsx", CASME_HEADER, a)
    write_xlsx(root / "CASME_B_Section_coding.xlsx", CASME_HEADER, b)
    samples, _ = index_casme(root, None)
    assert [(s.sample_id, s.apex, s.label) for s in samples] == [
        ("sub01_EP01_5", 4, "surprise"), ("sub01_EP01_6", 6, "disgust"), ("sub13_EP07_1", 5, "tense"),
        ("sub13_EP07_2", 5, "happiness")]
    off, report = index_casme(root, None, "offtanet-3")
    assert [(s.sample_id, s.label) for s in off] == [
        ("sub01_EP01_5", "surprise"), ("sub01_EP01_6", "negative"), ("sub13_EP07_2", "positive")]
    assert report.labels.excluded == {"tense": 1}


def test_casme_sq_headerless_with_naming_rules(tmp_path):
    root = casme_sq_tree(tmp_path / "CAS(ME)^2", {"negative": 2, "positive": 1, "surprise": 1}, n_subjects=2, macro=1)
    samples, report = index_casme_sq(root, None)
    assert len(samples) == 4
    assert {s.subject for s in samples} == {"s15", "s16"}
    s = samples[0]
    assert s.frames.endswith("rawpic/s15/15_0101disgustingteeth") and (s.onset, s.apex, s.offset) == (1, 3, 5)
    assert s.sample_id == "s15_disgust1_0" and s.label == "negative"
    assert samples[1].frames.endswith("rawpic/s16/16_0401girlcrashing")
    assert report.labels.excluded["macro-expression"] == 1


def test_casme3_part_a(tmp_path):
    root = tmp_path / "CASME3"
    header = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"]
    rows = [["spNO.1", "a", 10, 14, 20, "L1+L2", 1, "happy"], ["spNO.1", "a", 30, 33, 38, "4", 2, "disgust"],
            ["spNO.2", "b", 5, 5, 9, "12", 3, "sad"]]
    touch_frames(root / "part_A" / "spNO.1" / "a" / "color", range(1, 41), "{}.jpg")
    touch_frames(root / "part_A" / "spNO.2" / "b" / "color", range(1, 41), "{}.jpg")
    write_xlsx(root / "CAS(ME)3_part_A_ME_label_JpgIndex_v2.xlsx", header, rows)
    samples, _ = index_casme3(root, None)
    assert [(s.sample_id, s.label, s.onset, s.apex) for s in samples] == [
        ("spNO.1_a_10", "happiness", 10, 14), ("spNO.1_a_30", "disgust", 30, 33), ("spNO.2_b_5", "sadness", 5, 5)]
    assert samples[0].frames.endswith("spNO.1/a/color")


def test_smic_no_apex_and_empty_clip(tmp_path, capsys):
    root = tmp_path / "SMIC"
    hs = root / "SMIC_all_raw" / "HS"
    touch_frames(hs / "s1" / "micro" / "positive" / "s1_po_01", range(106271, 106290), "image{}.bmp")
    touch_frames(hs / "s2" / "micro" / "surprise" / "s2_sur_01", range(5, 12), "image{:06d}.bmp")
    (hs / "s2" / "micro" / "negative" / "s2_ne_01").mkdir(parents=True)  # no frames
    touch_frames(hs / "s3" / "micro" / "joy" / "s3_ha_01", range(5, 12), "image{}.bmp")  # unknown label
    samples, report = index_smic(root)
    assert [(s.sample_id, s.subject, s.onset, s.apex, s.offset, s.label, s.apex_source) for s in samples] == [
        ("s1_po_01", "s1", 106271, -1, 106289, "positive", "missing"),
        ("s2_sur_01", "s2", 5, -1, 11, "surprise", "missing")]
    assert len(report.skipped) == 1 and "s2_ne_01" in report.skipped[0]
    assert report.labels.unknown == {"joy": ["s3_ha_01"]}
    with pytest.raises(MertoolError, match="no SMIC subject folders"):
        index_smic(tmp_path / "SMIC" / "SMIC_all_raw" / "HS" / "s1" / "micro")
    rc = cli(["index", "--dataset", "smic", "--root", str(root), "-o", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err
    assert rc == 0 and "1 row(s) skipped" in err and "'joy'" in err
