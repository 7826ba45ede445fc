"""The MEGC spotting metric and the curve arithmetic of mertool.preprocess.spotting, on hand-worked cases."""

import numpy as np
import pytest

from mertool.preprocess import spotting as sp


# --------------------------------------------------------------------------- IoU and matching


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ((1, 10), (1, 10), 1.0),
        ((1, 10), (6, 15), 5 / 15),  # frames 6..10 shared, 1..15 covered
        ((1, 5), (6, 10), 0.0),  # adjacent: no shared frame
        ((5, 5), (5, 5), 1.0),  # one frame, inclusive
        ((1, 10), (1, 5), 0.5),
        ((12, 21), (10, 20), 9 / 12),
    ],
)
def test_iou_counts_frames_inclusively(a, b, expected):
    assert sp.iou(a, b) == pytest.approx(expected)
    assert sp.iou(b, a) == pytest.approx(expected)


def test_iou_of_exactly_one_half_is_a_true_positive_and_below_is_not():
    assert sp.count_video([(1, 5, "micro")], [(1, 10, "micro")])["micro"] == sp.Counts(1, 0, 0)
    assert sp.count_video([(1, 4, "micro")], [(1, 10, "micro")])["micro"] == sp.Counts(0, 1, 1)  # IoU 0.4


def test_a_true_interval_is_matched_at_most_once():
    counts = sp.count_video([(10, 30, "micro"), (11, 30, "micro")], [(10, 30, "micro")])["micro"]
    assert counts == sp.Counts(tp=1, fp=1, fn=0)


def test_matching_takes_the_highest_iou_first():
    # spot A = (3, 12): IoU 7/13 with T1 = (0, 9), 9/11 with T2 = (4, 13); spot B = (0, 8): 9/10 with T1, 5/14 with T2.
    # Taking spots in order and the first truth over 0.5 would give A -> T1 and leave B unmatched (TP 1);
    # highest IoU first pairs B -> T1 and A -> T2.
    pairs = sp.match([(3, 12), (0, 8)], [(0, 9), (4, 13)])
    assert pairs == [(0, 1), (1, 0)]


def test_types_are_matched_separately():
    # a micro-length spot on a macro interval: IoU 0.6, but a spot of the wrong type is an FP and the macro an FN
    counts = sp.count_video([(1, 60, "micro")], [(1, 100, "macro")])
    assert counts["micro"] == sp.Counts(0, 1, 0) and counts["macro"] == sp.Counts(0, 0, 1)


def test_scores_from_counts():
    c = sp.Counts(tp=3, fp=2, fn=1)
    p, r = 3 / 5, 3 / 4
    assert (c.precision, c.recall) == (pytest.approx(p), pytest.approx(r))
    assert c.f1 == pytest.approx(2 * p * r / (p + r))
    assert sp.Counts().f1 == 0.0 and sp.Counts(0, 0, 4).recall == 0.0


def test_evaluate_per_video_subject_type_and_overall():
    videos = {
        # micro (12,21) on (10,20): IoU 0.75 TP; micro (60,70): FP; macro (50,95) on (50,99): IoU 0.92 TP
        "A": ("S1", [(12, 21, "micro"), (60, 70, "micro"), (50, 95, "macro")], [(10, 20, "micro"), (50, 99, "macro")]),
        # micro (8,17) on (5,14): IoU 7/13 TP; (30,39) missed; macro (100,200): FP
        "B": ("S2", [(8, 17, "micro"), (100, 200, "macro")], [(5, 14, "micro"), (30, 39, "micro")]),
    }
    rows = {(r["scope"], r["name"], r["type"]): r for r in sp.evaluate(videos)}
    assert {k: rows[("overall", "all", k)]["tp"] for k in ("micro", "macro", "all")} == {"micro": 2, "macro": 1, "all": 3}
    micro = rows[("overall", "all", "micro")]
    assert (micro["fp"], micro["fn"], micro["f1"]) == (1, 1, pytest.approx(2 / 3, abs=1e-4))
    macro = rows[("overall", "all", "macro")]
    assert (macro["fp"], macro["fn"], macro["precision"], macro["recall"]) == (1, 0, 0.5, 1.0)
    overall = rows[("overall", "all", "all")]
    assert (overall["fp"], overall["fn"], overall["f1"]) == (2, 1, pytest.approx(6 / 9, abs=1e-4))
    s2 = rows[("subject", "S2", "all")]
    assert (s2["tp"], s2["fp"], s2["fn"], s2["f1"]) == (1, 1, 1, 0.5)
    assert rows[("video", "A", "micro")]["precision"] == 0.5
    assert [r["scope"] for r in sp.evaluate(videos)][:3] == ["overall"] * 3


# --------------------------------------------------------------------------- curves


def test_flow_difference_of_a_hand_worked_step():
    # block 0 moves +1 px at frame 8 and back at frame 13: its path is 1 on frames 8..12
    feats = np.zeros((21, 3, 2))
    feats[8, 0, 0], feats[13, 0, 0] = 1.0, -1.0
    f = sp.difference_curve(feats, 3, "flow")  # top third of 3 blocks = block 0
    # F(t) = |P(t) - (P(t-3) + P(t+3)) / 2|
    assert f[10] == pytest.approx(1.0)  # 1 - (0 + 0) / 2
    assert f[8] == pytest.approx(0.5)  # 1 - (0 + 1) / 2
    assert f[6] == pytest.approx(0.5)  # 0 - (0 + 1) / 2
    assert f[4] == pytest.approx(0.0)
    expected = [abs(p - (q + r) / 2) for p, q, r in zip(*_path_and_shifts(np.cumsum(feats[:, 0, 0]), 3))]
    assert np.allclose(f, expected)


def _path_and_shifts(path, k):
    n = len(path)
    return path, path[np.clip(np.arange(n) - k, 0, n - 1)], path[np.clip(np.arange(n) + k, 0, n - 1)]


def test_flow_difference_ignores_head_motion_and_steady_ramps():
    feats = np.zeros((40, 6, 2))
    feats[:, :, 0] = 0.3  # every block drifts: head motion (the median block) is removed
    feats[:, 0, 1] += 0.05  # one block moves at a steady speed: cancels inside the video
    f = sp.difference_curve(feats, 5, "flow")
    assert np.allclose(f[5:-5], 0.0)


def test_lbp_chi_square_difference_by_hand():
    hist = np.tile([1.0, 0.0], (9, 1, 1))  # T x B x bins, one block
    hist[5, 0] = [0.0, 1.0]
    f = sp.difference_curve(hist, 2, "lbp")
    assert f[5] == pytest.approx(2.0)  # (0-1)^2/1 + (1-0)^2/1 against the average [1, 0]
    assert f[3] == pytest.approx(0.25 / 1.5 + 0.25 / 0.5)  # against the average [0.5, 0.5]
    assert f[4] == pytest.approx(0.0)


def test_contrast_threshold_and_peaks_by_hand():
    assert list(sp.contrast(np.array([0, 1, 2, 1, 0.0]), 1)) == [0.0, 0.0, 1.0, 0.0, 0.0]
    # median 3, absolute deviations 2 1 0 1 97: MAD 1
    assert sp.threshold(np.array([1, 2, 3, 4, 100.0]), 2.0) == pytest.approx(2 * 1.4826)
    # 5 at 1 wins; 4 at 3 is within 3 frames of it; 3 at 6 is kept
    assert list(sp.find_peaks(np.array([0, 5, 0, 4, 0, 0, 3, 0.0]), 1.0, 3)) == [1, 6]
    assert sp.half_width(np.array([0, 1, 3, 4, 3, 2, 0.0]), 3) == 4  # 3, 4, 3, 2 are >= 2


def test_difference_curve_refuses_videos_shorter_than_the_window():
    with pytest.raises(ValueError, match="needs at least 11 frames, got 10"):
        sp.difference_curve(np.zeros((10, 3, 2)), 5, "flow")
    with pytest.raises(ValueError, match="unknown spotting method"):
        sp.difference_curve(np.zeros((20, 3, 2)), 5, "mdmd")


def _bump(n, onset, offset, amplitude):
    t = np.arange(n, dtype=float)
    s = np.zeros(n)
    inside = (t >= onset) & (t <= offset)
    s[inside] = 0.5 - 0.5 * np.cos(2 * np.pi * (t[inside] - onset) / (offset - onset))
    return amplitude * s


def test_spot_finds_a_micro_and_a_macro_expression_of_known_timing():
    rng = np.random.default_rng(0)
    n, fps = 500, 50.0
    path = np.zeros((n, 6, 2))
    path[:, 0, 1] = _bump(n, 93, 107, 1.0)  # micro: 15 frames = 0.3 s, block 0
    path[:, 1, 1] = _bump(n, 265, 334, 1.5)  # macro: 70 frames = 1.4 s, block 1
    path += rng.normal(0, 0.01, path.shape)
    feats = np.diff(path, axis=0, prepend=0.0)  # per-frame increments, as flow_features gives
    found, curves = sp.spot(feats, fps=fps, method="flow", micro_window=0.15, macro_window=0.6, z=3.0)
    kinds = [(iv.kind, iv.onset, iv.offset) for iv in found]
    assert [k for k, _, _ in kinds] == ["micro", "macro"], kinds
    (_, a, b), (_, c, d) = kinds
    assert sp.iou((a, b), (93, 107)) >= 0.5 and sp.iou((c, d), (265, 334)) >= 0.5
    assert set(curves) == {"micro", "micro_contrast", "micro_level", "macro", "macro_contrast", "macro_level"}
