import numpy as np

from ds_fixtures import SAMM_HEADER, touch_frames, write_xlsx
from mertool.datasets.aus import au_vector
from mertool.datasets.samm import index_samm


def test_samm_header_row_13_and_frame_names(tmp_path):
    root = tmp_path / "SAMM"
    rows = [
        [6, "006_1_2", "1_1", 5562, 5588, 5632, 71, "Micro - 1/2", "R12+R15", "Happiness", "1", ""],
        [6, "006_1_3", "1_1", 123, 130, 140, 18, "Micro - 1/2", "4+7", "Other", "7", ""],
        [7, "007_3_1", "3_1", 900, -1, 950, 51, "Micro - 1/2", "A1+2", "Disgust", "3", "note"],
        [7, "007_3_2", "3_1", 900, 910, 950, 51, "Micro - 1/2", "14", "Contempt", "4", ""],
        [8, "008_1_1", "1_1", 10, 12, 20, 11, "Micro - 1/2", "12", "Joy", "1", ""],   # unknown label
        [9, "009_1_1", "1_1", 10, 12, 20, 11, "Micro - 1/2", "12", "Anger", "1", ""],  # folder missing
    ]
    touch_frames(root / "006" / "006_1_2", range(5562, 5633), "006_{:05d}.jpg")  # 4-digit numbers, zero-padded
    touch_frames(root / "006" / "006_1_3", range(123, 141), "006_{:03d}.jpg")     # 3-digit
    touch_frames(root / "007" / "007_3_1", range(900, 951), "007_{:05d}.jpg")
    touch_frames(root / "007" / "007_3_2", range(900, 951), "007_{:05d}.jpg")
    touch_frames(root / "008" / "008_1_1", range(10, 21), "008_{:05d}.jpg")
    header = [h.upper() if i % 2 else h + "  " for i, h in enumerate(SAMM_HEADER)]  # mixed case, trailing spaces
    write_xlsx(root / "SAMM_Micro_FACS_Codes_v2.xlsx", header, rows, header_row=13)

    samples, report = index_samm(root, None)
    got = {s.sample_id: s for s in samples}
    assert sorted(got) == ["006_1_2", "006_1_3", "007_3_2"]
    s = got["006_1_2"]
    assert (s.subject, s.onset, s.apex, s.offset, s.label, s.aus) == ("006", 5562, 5588, 5632, "happiness", "R12+R15")
    assert s.frame_table()[0] == (5562, str(root / "006" / "006_1_2" / "006_05562.jpg"))
    assert got["006_1_3"].label == "other" and got["006_1_3"].onset == 123
    assert got["007_3_2"].label == "contempt"
    assert report.labels.excluded == {"disgust": 1}
    assert report.labels.unknown == {"joy": ["008_1_1"]}
    assert len(report.skipped) == 1 and "009_1_1" in report.skipped[0]
    expected = np.zeros(21, np.float32)
    expected[[8, 10]] = 1  # AU12, AU15
    np.testing.assert_array_equal(au_vector(s.aus), expected)

    mega, _ = index_samm(root, None, "megc2019-3")
    assert sorted((s.sample_id, s.label) for s in mega) == [("006_1_2", "positive"), ("007_3_1", "negative"), ("007_3_2", "negative")]
    assert [s.apex_source for s in mega if s.sample_id == "007_3_1"] == ["missing"]
