"""`mertool pairs`: aligned onset/apex frames stacked for frame-pair models (the pure
functions in mertool/preprocess/pairs.py, the stage in mertool/stages/pairs.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from mertool.stages.stagefile import StageWriter, open_stage
from mertool.cli.main import cli
from mertool.preprocess.pairs import select_pair
from mertool.stages.pairs import PairsConfig, run_pairs

S = 32


def face(seed: int, size: int = S) -> np.ndarray:
    from skimage import data

    img = cv2.resize(data.astronaut()[20:260, 100:340], (size, size), interpolation=cv2.INTER_AREA)
    shift = np.float64([[1, 0, seed % 3], [0, 1, -(seed % 2)]])
    return cv2.warpAffine(img, shift, (size, size), borderMode=cv2.BORDER_REFLECT)


def write_aligned(path: Path, clips: list[dict], size: int = S) -> Path:
    """An aligned.h5 like `mertool align` writes (per-sample layout)."""
    w = StageWriter(path, "aligned", {"size": size, "frames": "all"})
    for c in clips:
        numbers = np.arange(c["onset"], c["offset"] + 1)
        rng = np.random.default_rng(len(c["sid"]))
        frames = np.stack([np.clip(face(i, size).astype(int) + rng.integers(-3, 4, (size, size, 3)), 0, 255)
                           for i in range(len(numbers))]).astype(np.uint8)
        w.add(
            c["sid"],
            {"frames": frames, "frame_numbers": numbers.astype(np.int64),
             "landmarks": np.zeros((68, 2), np.float32), "transform": np.eye(2, 3)},
            {"subject": c["subject"], "label": c["label"], "dataset": "manifest", "clip": c["sid"],
             "onset": c["onset"], "apex": c["apex"], "offset": c["offset"], "aus": c.get("aus", ""),
             "apex_source": "sheet"},
        )
    w.finish([c["sid"] for c in clips], stacked=False)
    return path


CLIPS = [
    {"sid": "s1_a", "subject": "s1", "label": "happy", "onset": 10, "apex": 13, "offset": 15, "aus": "12"},
    {"sid": "s2_b", "subject": "s2", "label": "sad", "onset": 1, "apex": 2, "offset": 4, "aus": "1+L4"},
    {"sid": "s3_c", "subject": "s3", "label": "happy", "onset": 5, "apex": -1, "offset": 9, "aus": ""},
]


def test_pairs_selects_frames_and_copies_meta(tmp_path, capsys):
    aligned = write_aligned(tmp_path / "aligned.h5", CLIPS)
    out = tmp_path / "pairs.h5"
    rc = cli(["pairs", str(aligned), "-o", str(out), "--size", str(S)])
    assert rc == 0
    assert f"{out}: 2 of 3 samples, onset/apex pairs" in capsys.readouterr().out
    sf = open_stage(out, expect="pairs")
    assert sf.layout == "stacked" and sf.sample_ids == ["s1_a", "s2_b"]
    onset, apex = sf.array("onset"), sf.array("apex")
    assert onset.shape == apex.shape == (2, 3, S, S) and onset.dtype == np.uint8
    src = open_stage(aligned)
    frames = src.sample("s1_a")["frames"]
    np.testing.assert_array_equal(onset[0], frames[0].transpose(2, 0, 1))  # frame 10 = index 0
    np.testing.assert_array_equal(apex[0], frames[3].transpose(2, 0, 1))  # frame 13 = index 3
    assert sf.meta["aus"] == ["12", "1+L4"] and sf.meta["label"] == ["happy", "sad"]
    assert sf.meta["subject"] == ["s1", "s2"] and sf.meta["apex"] == [13, 2]
    assert "apex unknown" in sf.failed["s3_c"]


def test_missing_apex_middle_and_samples_csv(tmp_path):
    aligned = write_aligned(tmp_path / "aligned.h5", CLIPS)
    result = run_pairs(aligned, tmp_path / "mid.h5", PairsConfig(size=S, missing_apex="middle"), progress=False)
    sf = open_stage(result.path)
    assert not result.failed and result.done == 3 and sf.meta["apex"][2] == 7 and sf.meta["apex_source"][2] == "middle"  # frames 5..9
    np.testing.assert_array_equal(sf.array("apex")[2], open_stage(aligned).sample("s3_c")["frames"][2].transpose(2, 0, 1))

    csv_path = tmp_path / "samples.csv"
    with open(csv_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sample_id", "subject", "onset", "apex", "offset", "label", "apex_source"])
        w.writerow(["s3_c", "s3", 5, 8, 9, "happy", "estimated:flow"])
        w.writerow(["s1_a", "s1", 10, -1, 15, "happy", "sheet"])  # unknown here: keep the aligned file's 13
        w.writerow(["s2_b", "s2", 1, 2, 4, "sad", "sheet"])
    result = run_pairs(aligned, tmp_path / "kf.h5", PairsConfig(size=S), samples_csv=csv_path, progress=False)
    sf = open_stage(result.path)
    assert not result.failed
    assert sf.meta["apex"] == [13, 2, 8] and sf.meta["apex_source"][2] == "estimated:flow"


def _samples_csv(path: Path, rows: dict[str, tuple[int, str]]) -> Path:
    """A samples.csv with the given (apex, apex_source) per sample; other columns from CLIPS."""
    clips = {c["sid"]: c for c in CLIPS}
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sample_id", "subject", "onset", "apex", "offset", "label", "apex_source"])
        for sid, (apex, source) in rows.items():
            c = clips[sid]
            w.writerow([sid, c["subject"], c["onset"], apex, c["offset"], c["label"], source])
    return path


def test_samples_csv_policy(tmp_path, capsys):
    """--samples: a row per sample is required; a known apex replaces the aligned file's
    apex and apex_source; a row with apex -1 keeps the aligned file's."""
    aligned = write_aligned(tmp_path / "aligned.h5", CLIPS)
    rows = {"s1_a": (14, "estimated:flow"), "s2_b": (-1, "unknown"), "s3_c": (8, "estimated:flow")}
    out = tmp_path / "pairs.h5"
    rc = cli(["pairs", str(aligned), "-o", str(out), "--size", str(S), "--samples", str(_samples_csv(tmp_path / "s.csv", rows))])
    assert rc == 0, capsys.readouterr().err
    sf = open_stage(out)
    assert sf.sample_ids == ["s1_a", "s2_b", "s3_c"] and not sf.failed
    assert sf.meta["apex"] == [14, 2, 8]
    assert sf.meta["apex_source"] == ["estimated:flow", "sheet", "estimated:flow"]
    frames = open_stage(aligned).sample("s1_a")["frames"]
    np.testing.assert_array_equal(sf.array("apex")[0], frames[4].transpose(2, 0, 1))  # frame 14
    del rows["s2_b"]
    capsys.readouterr()
    missing = tmp_path / "m.h5"
    assert cli(["pairs", str(aligned), "-o", str(missing), "--samples", str(_samples_csv(tmp_path / "m.csv", rows))]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("error:") == 1 and "s2_b" in err and "s1_a" not in err
    assert not missing.exists() and not Path(str(missing) + ".parts").exists()


def test_parallel_jobs_equal_serial_and_preview(tmp_path, capsys):
    aligned = write_aligned(tmp_path / "aligned.h5", CLIPS)
    one = run_pairs(aligned, tmp_path / "j1.h5", PairsConfig(size=S), progress=False)
    assert cli(["pairs", str(aligned), "-o", str(tmp_path / "j2.h5"), "--size", str(S), "--jobs", "2",
                "--preview", str(tmp_path / "prev")]) == 0
    a, b = open_stage(one.path), open_stage(tmp_path / "j2.h5")
    assert (one.done, one.failed.keys()) == (2, {"s3_c"}) and a.failed == b.failed
    np.testing.assert_array_equal(a.array("onset"), b.array("onset"))
    np.testing.assert_array_equal(a.array("apex"), b.array("apex"))
    assert a.meta == b.meta
    pngs = sorted((tmp_path / "prev").glob("*.png"))
    assert [p.stem for p in pngs] == ["s1_a", "s2_b"]  # the failed clip has none
    img = cv2.imread(str(pngs[0]))
    assert img.shape == (S + 22, 2 * S + 4, 3)


def test_resize_matches_opencv_area(tmp_path):
    aligned = write_aligned(tmp_path / "aligned.h5", CLIPS[:2])
    result = run_pairs(aligned, tmp_path / "p16.h5", PairsConfig(size=16), progress=False)
    frame = open_stage(aligned).sample("s2_b")["frames"][0]
    ref = cv2.resize(frame, (16, 16), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
    np.testing.assert_array_equal(open_stage(result.path).array("onset")[1], ref)


def test_resume_and_changed_params(tmp_path, capsys):
    aligned = write_aligned(tmp_path / "aligned.h5", CLIPS[:2])
    out = tmp_path / "pairs.h5"
    assert cli(["pairs", str(aligned), "-o", str(out), "--size", str(S)]) == 0
    key = open_stage(out).key
    assert cli(["pairs", str(aligned), "-o", str(out), "--size", str(S)]) == 0
    assert "up to date" in capsys.readouterr().err and open_stage(out).key == key
    assert cli(["pairs", str(aligned), "-o", str(out), "--size", "16"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert cli(["pairs", str(aligned), "-o", str(out), "--size", "16", "--overwrite"]) == 0
    assert open_stage(out).array("onset").shape == (2, 3, 16, 16)


def test_select_pair_errors():
    frames = np.zeros((3, 4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="onset frame 7"):
        select_pair(frames, np.array([1, 2, 3]), 7, 2)
    with pytest.raises(ValueError, match="apex frame 9"):
        select_pair(frames, np.array([1, 2, 3]), 1, 9)
    with pytest.raises(ValueError, match="frame numbers"):
        select_pair(frames, np.array([1, 2]), 1, 2)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--size", "8"], "size must be"),
        (["--missing-apex", "first"], "missing_apex"),
    ],
)
def test_bad_options(tmp_path, capsys, args, message):
    aligned = write_aligned(tmp_path / "aligned.h5", CLIPS[:1])
    assert cli(["pairs", str(aligned), "-o", str(tmp_path / "p.h5"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err


def test_bad_inputs(tmp_path, capsys):
    assert cli(["pairs", str(tmp_path / "none.h5"), "-o", str(tmp_path / "p.h5")]) == 1
    assert "file not found" in capsys.readouterr().err
    aligned = write_aligned(tmp_path / "aligned.h5", CLIPS[:2])
    pairs = tmp_path / "pairs.h5"
    assert cli(["pairs", str(aligned), "-o", str(pairs), "--size", str(S)]) == 0
    assert cli(["pairs", str(pairs), "-o", str(tmp_path / "again.h5")]) == 1  # a pairs file is not aligned
    assert "expected 'aligned'" in capsys.readouterr().err
    only_unknown = write_aligned(tmp_path / "unknown.h5", CLIPS[2:])
    assert cli(["pairs", str(only_unknown), "-o", str(tmp_path / "u.h5")]) == 1
    err = capsys.readouterr().err  # the driver's one error when every sample fails
    assert "no sample could be processed" in err and "s3_c: apex unknown" in err
    assert not (tmp_path / "u.h5").exists()
    csv_bad = tmp_path / "bad.csv"
    csv_bad.write_text("a,b\n1,2\n")
    assert cli(["pairs", str(aligned), "-o", str(tmp_path / "c.h5"), "--samples", str(csv_bad)]) == 1
    assert "not a samples.csv" in capsys.readouterr().err


def test_no_aus_warns(tmp_path, capsys):
    clips = [dict(c, aus="") for c in CLIPS[:2]]
    aligned = write_aligned(tmp_path / "aligned.h5", clips)
    assert cli(["pairs", str(aligned), "-o", str(tmp_path / "p.h5"), "--size", str(S)]) == 0
    assert "all-zero AU vectors" in capsys.readouterr().err


def test_help_has_example(capsys):
    assert cli(["pairs", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Example:" in out and "--missing-apex" in out


def test_pixels_outside_the_validity_mask_are_zeroed_or_kept(tmp_path):
    """A face cut by the frame's edge: the similarity crop reaches past the image, align records which
    pixels came from it; pairs zeroes the others in both frames (default) or keeps align's fill."""
    from crop_fixtures import tight_face, write_clips

    from mertool.stages.align import AlignConfig, run_align

    face = np.ascontiguousarray(tight_face()[:, 50:])
    samples = write_clips(tmp_path, {"cut": [np.roll(face, k, axis=0) for k in range(4)]}, dataset="my-lab")
    aligned = run_align(samples, tmp_path / "a.h5", AlignConfig(size=64, margin=0.3), progress=False).path
    valid = open_stage(aligned).sample("cut", ["valid"])["valid"]
    inside = cv2.resize(valid.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA) > 0.999
    assert 0.2 < inside.mean() < 0.9
    base = ["pairs", str(aligned), "--size", "32", "--missing-apex", "middle"]
    assert cli([*base, "-o", str(tmp_path / "z.h5")]) == 0
    assert cli([*base, "-o", str(tmp_path / "k.h5"), "--invalid", "keep"]) == 0
    zero, keep = open_stage(tmp_path / "z.h5"), open_stage(tmp_path / "k.h5")
    assert zero.params["invalid"] == "zero" and keep.params["invalid"] == "keep" and zero.key != keep.key
    for name in ("onset", "apex"):
        z, k = zero.array(name)[0], keep.array(name)[0]
        assert (z[:, ~inside] == 0).all() and k[:, ~inside].max() > 0
        np.testing.assert_array_equal(z[:, inside], k[:, inside])
    assert cli([*base, "-o", str(tmp_path / "bad.h5"), "--invalid", "blank"]) == 2
