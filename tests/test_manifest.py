"""The generic CSV manifest adapter and `mertool index`: validation, one clear line per mistake."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import write_clip
from mertool.cli.main import cli
from mertool.samples import read_samples


@pytest.fixture
def clip_root(tmp_path):
    frame = np.full((8, 8, 3), 100, np.uint8)
    write_clip(tmp_path / "a", [frame] * 5, first=1, pattern="reg_img{}.jpg")
    write_clip(tmp_path / "b", [frame] * 5, first=10, pattern="frame{}.png")
    return tmp_path


def _index(root, text, capsys):
    sheet = root / "m.csv"
    sheet.write_text(text)
    rc = cli(["index", "--dataset", "manifest", "--sheet", str(sheet), "-o", str(root / "samples.csv")])
    return rc, capsys.readouterr().err


HEADER = "sample_id,subject,frames,onset,apex,offset,label\n"


def test_valid_manifest_roundtrip(clip_root, capsys):
    rc, err = _index(clip_root, HEADER + "a1,s1,a,1,3,5,happy\nb1,s2,b,10,/,14,sad\n", capsys)
    assert rc == 0, err
    samples = read_samples(clip_root / "samples.csv")
    assert [s.sample_id for s in samples] == ["a1", "b1"]
    assert samples[1].apex == -1 and samples[1].apex_source == "missing"
    assert [n for n, _ in samples[0].frame_table()] == [1, 2, 3, 4, 5]
    assert samples[0].frames.endswith("/a")  # relative to the manifest's folder


def test_natural_sort_of_frames(tmp_path):
    frame = np.zeros((4, 4), np.uint8)
    write_clip(tmp_path / "n", [frame] * 12, first=1, pattern="img{}.png")
    from mertool.samples import Sample

    table = Sample("x", "s", 1, 2, 12, "l", frames=str(tmp_path / "n")).frame_table()
    assert [n for n, _ in table] == list(range(1, 13))


@pytest.mark.parametrize(
    "rows, message",
    [
        ("a1,s1,a,1,3,5,happy\na1,s1,a,1,3,5,happy\n", "duplicate sample_id 'a1'"),
        ("a1,s1,a,1,7,5,happy\n", "apex 7 outside onset..offset"),
        ("a1,s1,a,4,4,2,happy\n", "offset 2 is before onset 4"),
        ("a1,s1,a,1,3,9,happy\n", "offset 9 outside the clip's frames 1..5"),
        ("a1,s1,a,x,3,5,happy\n", "onset 'x' is not a whole frame number"),
        ("a1,s1,a,nan,3,5,happy\n", "onset 'nan' is not a whole frame number"),
        ("a1,s1,a,1,3,inf,happy\n", "offset 'inf' is not a whole frame number"),
        ("a1,s1,a,1,-inf,5,happy\n", "apex '-inf' is not a whole frame number"),
        ("a1,s1,a,1,2.5,5,happy\n", "apex '2.5' is not a whole frame number"),
        ("a1,s1,a,1,3,5,\n", "empty label"),
    ],
)
def test_bad_rows(clip_root, capsys, rows, message):
    rc, err = _index(clip_root, HEADER + rows, capsys)
    assert rc == 1 and message in err and "m.csv:" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_every_bad_row_is_reported_in_one_line(clip_root, capsys):
    rows = "a1,s1,a,1,3,5,happy\nb1,s1,b,x,12,14,sad\nb2,s1,b,10,12,99,sad\na1,s2,a,1,2,3,sad\nb3,s2,b,10,nan,14,sad\n"
    rc, err = _index(clip_root, HEADER + rows, capsys)
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert "m.csv: 3 bad rows: " in err
    assert "m.csv:3: onset 'x' is not a whole frame number" in err
    assert "m.csv:4: sample b2 offset 99 outside the clip's frames 10..14" in err
    assert "m.csv:5: duplicate sample_id 'a1' (first on line 2)" in err
    assert "b3" not in err  # apex 'nan' is an unknown apex, as documented
    assert not (clip_root / "samples.csv").exists()


def test_bad_rows_beyond_the_limit_are_counted(clip_root, capsys):
    from mertool.datasets.manifest import LISTED

    rows = "".join(f"x{i},s1,a,x,3,5,happy\n" for i in range(LISTED + 4))
    rc, err = _index(clip_root, HEADER + rows, capsys)
    assert rc == 1 and f"{LISTED + 4} bad rows" in err and err.count("is not a whole frame number") == LISTED
    assert err.rstrip().endswith("and 4 more")


def test_semicolon_and_tab_separated_sheets_get_a_delimiter_hint(clip_root, capsys):
    rc, err = _index(clip_root, HEADER.replace(",", ";") + "a1;s1;a;1;3;5;happy\n", capsys)
    assert rc == 1 and "missing column(s)" in err and "semicolon-separated" in err and "commas" in err
    rc, err = _index(clip_root, HEADER.replace(",", "\t") + "a1\ts1\ta\t1\t3\t5\thappy\n", capsys)
    assert rc == 1 and "tab-separated" in err


def test_a_video_in_the_frames_column_says_so(clip_root, capsys):
    (clip_root / "clip.mp4").write_bytes(b"not really a video")
    (clip_root / "notes.txt").write_text("x")
    rc, err = _index(clip_root, HEADER + "v1,s1,clip.mp4,1,3,5,happy\n", capsys)
    assert rc == 1 and "m.csv:2: sample v1 frames 'clip.mp4' is a video file: put it in the 'video' column" in err
    rc, err = _index(clip_root, HEADER + "v1,s1,notes.txt,1,3,5,happy\n", capsys)
    assert rc == 1 and "is a file, not a folder of images" in err


def test_unknown_and_missing_columns(clip_root, capsys):
    rc, err = _index(clip_root, "sample_id,subject,frames,onset,apex,offset,label,mood\na1,s1,a,1,3,5,h,x\n", capsys)
    assert rc == 1 and "unknown column(s) mood" in err
    rc, err = _index(clip_root, "sample_id,frames,onset,apex,offset\na1,a,1,3,5\n", capsys)
    assert rc == 1 and "missing column(s) subject, label" in err


def test_missing_frames_folder_skipped_and_reported(clip_root, capsys):
    rc, err = _index(clip_root, HEADER + "a1,s1,a,1,3,5,happy\nz9,s1,nothere,1,3,5,happy\n", capsys)
    assert rc == 0
    assert "1 row(s) skipped" in err and "z9" in err and "nothere" in err
    assert [s.sample_id for s in read_samples(clip_root / "samples.csv")] == ["a1"]


def test_missing_sheet(tmp_path, capsys):
    assert cli(["index", "--dataset", "manifest", "--sheet", str(tmp_path / "no.csv"), "-o", str(tmp_path / "s.csv")]) == 1
    assert "no.csv: manifest not found" in capsys.readouterr().err


def test_mixed_case_headers(clip_root, capsys):
    rc, err = _index(clip_root, "Sample_ID, Subject ,Frames,Onset,Apex,Offset,Label\na1,s1,a,1,3,5,happy\n", capsys)
    assert rc == 0, err


def test_datasets_verb_lists_adapters(capsys):
    assert cli(["datasets"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert {"manifest", "casme2", "samm", "megc2019"} <= set(names)


def test_importing_the_package_registers_every_adapter():
    """Explicit imports, no lazy string list: the registry is complete once the package is imported."""
    import subprocess
    import sys

    code = "import mertool.datasets as d; print(' '.join(d.list_datasets()))"
    names = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert set(names) == {"casme", "casme-sq", "casme2", "casme3", "manifest", "megc2019", "mmew", "offtanet3", "samm", "smic",
                          "casme-sq-long", "samm-long", "casme3-long"}
