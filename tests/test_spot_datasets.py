"""Long-video adapters (CAS(ME)^2, SAMM, CAS(ME)^3 part A) on small sheets in the sets' own formats."""

import pytest

from ds_fixtures import casme_sq_tree, touch_frames, write_xlsx
from mertool.datasets import list_datasets, load_dataset
from mertool.datasets.longvideo import check_intervals, kind_of
from mertool.stages.spot import videos_of

SAMM_LV_HEADER = ["Subject", "Filename", "Inducement Code", "Onset", "Apex", "Offset", "Duration", "Type", "Action Units", "Notes"]
CASME3_HEADER = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"]


def test_the_long_video_adapters_are_registered():
    names = list_datasets()
    assert {"casme-sq-long", "samm-long", "casme3-long"} <= set(names)


def test_casme_sq_long_keeps_macro_expressions_typed_by_the_sheet(tmp_path):
    root = casme_sq_tree(tmp_path / "CAS(ME)^2", {"negative": 2, "positive": 1, "surprise": 1}, n_subjects=2, macro=1)
    samples = load_dataset("casme-sq-long", root=root)
    assert [(s.sample_id, s.label, s.onset, s.offset) for s in samples] == [
        ("s15_disgust1_0", "micro", 1, 5), ("s16_anger1_1", "micro", 1, 5), ("s15_disgust1_2", "micro", 7, 11),
        ("s16_anger1_3", "micro", 7, 11), ("s15_disgust1_4", "macro", 13, 17)]
    assert samples[0].clip == "15_0101disgustingteeth" and samples[0].frames.endswith("rawpic/s15/15_0101disgustingteeth")
    assert {v.fps for v in videos_of(samples, None).values()} == {30.0}  # the set's frame rate


def _samm_lv(root):
    touch_frames(root / "SAMM_longvideos" / "006_1", range(1, 301), "006_1_{:04d}.jpg")
    touch_frames(root / "SAMM_longvideos" / "007_2", range(1, 101), "007_2_{:04d}.jpg")
    rows = [
        ["006", "006_1_1", "I1", 10, 20, 40, 31, "Micro - 1/2", "4", ""],
        ["006", "006_1_2", "I1", 100, 150, 260, 161, "Macro", "12", ""],
        ["006", "006_1_3", "I1", 250, 280, 400, 151, "Micro - 1/2", "4", "runs past the video"],
        ["7", "007_2_1", "I3", 10, 30, 60, 51, "Macro", "1+2", ""],
        ["7", "007_2_2", "I3", 50, 55, 70, 21, "Micro - 1/2", "12", "overlaps 007_2_1"],
    ]
    write_xlsx(root / "SAMM_LongVideos_V3_Release.xlsx", SAMM_LV_HEADER, rows, header_row=10)
    return root


def test_samm_long_reads_the_release_sheet_and_names_bad_rows_one_line_each(tmp_path, caplog):
    root = _samm_lv(tmp_path / "SAMM_LV")
    with caplog.at_level("WARNING", logger="mertool"):
        samples = load_dataset("samm-long", root=root)
    assert [(s.sample_id, s.subject, s.clip, s.label, s.apex) for s in samples] == [
        ("006_1_1", "006", "006_1", "micro", 20), ("006_1_2", "006", "006_1", "macro", 150),
        ("007_2_1", "007", "007_2", "macro", 30), ("007_2_2", "007", "007_2", "micro", 55)]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("SAMM_LongVideos_V3_Release.xlsx:13:") and "250..400 lies outside video 006_1 (frames 1..300)" in lines[0]
    assert lines[1].startswith("SAMM_LongVideos_V3_Release.xlsx:15:") and "overlaps 10..60" in lines[1] and "kept" in lines[1]
    assert {v.fps for v in videos_of(samples, None).values()} == {200.0}


def test_casme3_long_reads_the_me_and_mae_sheets(tmp_path):
    root = tmp_path / "CASME3"
    touch_frames(root / "part_A" / "spNO.1" / "a" / "color", range(0, 200), "{}.jpg")
    write_xlsx(root / "CAS(ME)3_part_A_ME_label_JpgIndex_v2.xlsx", CASME3_HEADER, [["spNO.1", "a", 10, 14, 20, "L1+L2", 1, "happy"]])
    write_xlsx(root / "cas(me)3_part_A_MaE_label_JpgIndex_v2.xlsx", CASME3_HEADER, [["spNO.1", "a", 50, 70, 110, "12", 1, "happy"]])
    samples = load_dataset("casme3-long", root=root)
    assert [(s.sample_id, s.label, s.clip, s.onset, s.apex, s.offset) for s in samples] == [
        ("spNO.1_a_me10", "micro", "spNO.1_a", 10, 14, 20), ("spNO.1_a_mae50", "macro", "spNO.1_a", 50, 70, 110)]
    assert samples[0].frames.endswith("spNO.1/a/color")


def test_interval_checks_by_hand():
    rows = [("r1", "v", 1, 10), ("r2", "v", 8, 20), ("r3", "v", 30, 120), ("r4", "w", 5, 4), ("r5", "v", 21, 25)]
    outside, lines = check_intervals(rows, {"v": (1, 100), "w": (1, 50)})
    assert outside == {2, 3}
    assert [line.split(":")[0] for line in lines] == ["r2", "r3", "r4"]
    assert "overlaps 1..10 (r1)" in lines[0] and "outside video v (frames 1..100)" in lines[1]


def test_type_from_the_sheet():
    assert [kind_of(t) for t in ("micro-expression", "Micro - 1/2", "Macro", "macro-expression", "", "?")] == [
        "micro", "micro", "macro", "macro", "", ""]


def test_an_unknown_root_is_one_clear_error(tmp_path):
    from mertool.errors import MertoolError

    with pytest.raises(MertoolError, match="no samm-long annotation sheet"):
        load_dataset("samm-long", root=tmp_path)
