"""Preview pictures (issue 18, item 6): sample choice, common scale, sizes, border band."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from flow_fixtures import astronaut_face, face_clip, write_aligned
from mertool.preprocess.render import (
    CAPTION,
    GREY,
    class_flow_sheet,
    display_scale,
    edge_band,
    fit_text,
    flow_preview,
    flow_to_rgb,
    grey_edge,
    labelled,
    spread_samples,
    strain_to_rgb,
    wheel_key,
)
from mertool.preprocess.strain import flow_features
from mertool.preprocess.tvl1 import prepare_frame, tvl1_many
from mertool.stages.align import write_preview
from mertool.stages.flow import FlowConfig, run_flow


def test_spread_samples_hand_worked():
    subjects = ["a", "a", "a", "b", "b", "c"]
    labels = ["x", "y", "z", "x", "x", "x"]
    # 0 shows a and x; 1, 2 add the classes y, z; 3 and 5 add the subjects b, c; 4 adds nothing
    assert spread_samples(subjects, labels) == [0, 1, 2, 3, 5]
    assert spread_samples(subjects, labels, count=2) == [0, 1]  # classes before subjects
    assert spread_samples(subjects, labels, count=6) == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="2 subjects but 1 labels"):
        spread_samples(["a", "b"], ["x"])


def test_spread_samples_covers_every_class_and_subject_not_the_first_clips():
    rng = np.random.default_rng(3)
    subjects = [f"sub{i // 12:02d}" for i in range(12 * 12)]  # 12 clips per subject, in file order
    labels = list(rng.choice(["negative", "positive", "surprise"], len(subjects)))
    picked = spread_samples(subjects, labels)
    assert {subjects[i] for i in picked} == set(subjects)
    assert {labels[i] for i in picked} == set(labels)
    assert len(picked) == 12  # one per subject is enough here
    shown = [labels[i] for i in picked]
    assert max(shown.count(c) for c in set(shown)) - min(shown.count(c) for c in set(shown)) <= 1  # even


def test_common_scale_is_the_max_over_the_chosen_samples():
    rng = np.random.default_rng(0)
    maps = [rng.normal(0, s, (3, 32, 32)).astype(np.float32) for s in (0.5, 2.0, 1.0)]
    for m in maps:
        m[2] = np.abs(m[2])
        m[:, 0, :] = 100.0  # a border artefact: must not set the scale
    band = edge_band(32)
    assert band == 2
    flow_max, strain_max = display_scale(maps, band)
    expect_flow = max(np.percentile(np.hypot(m[0], m[1])[2:30, 2:30], 99) for m in maps)
    expect_strain = max(np.percentile(m[2][2:30, 2:30], 99) for m in maps)
    assert flow_max == pytest.approx(expect_flow) and strain_max == pytest.approx(expect_strain)
    assert display_scale([np.zeros((3, 8, 8))], 1) == (1.0, 1.0)


def test_wheel_key_matches_the_flow_colours():
    key = wheel_key(101)
    assert (key[50, 100] == flow_to_rgb(np.ones((1, 1)), np.zeros((1, 1)))[0, 0]).all()  # right = red
    assert (key[100, 50] == flow_to_rgb(np.zeros((1, 1)), np.ones((1, 1)))[0, 0]).all()  # down
    assert key[50, 50].max() == 0 and (key[0, 0] == 255).all()  # still centre, white outside


def test_pictures_have_the_expected_size():
    face = astronaut_face(64)
    flow = np.zeros((3, 32, 32), np.float32)
    flow[0] = 1.0
    img = flow_preview(face, face, flow, title="s1 | label x", frames=("onset", "apex"), flow_max=1.0,
                       strain_max=1.0, tile=1.5)
    assert img.shape == (225, 760, 3) and img.dtype == np.uint8
    sheet = class_flow_sheet({"a": flow, "b": flow}, {"a": 2, "b": 1}, flow_max=1.0, strain_max=1.0, tile=1.0)
    assert sheet.shape == (290, 440, 3)


def test_flow_stage_previews_spread_over_classes_and_subjects(tmp_path: Path):
    clips = [
        {"id": f"{s}_{k}", "subject": s, "label": lab, "frames": face_clip(64, 3, (0.4 * (k + 1), 0.0)), "apex": 3}
        for s in ("p1", "p2") for k, lab in enumerate(("x", "y"))
    ]
    aligned = write_aligned(tmp_path / "aligned.h5", clips)
    cfg = FlowConfig.resolve(flow_size=0, size=32)
    run_flow(aligned, tmp_path / "flow.h5", cfg, progress=False, preview=tmp_path / "pv", preview_count=None)
    names = sorted(p.stem for p in (tmp_path / "pv").glob("*.png"))
    assert names == ["p1_0", "p2_1"]  # p2_1 adds class y and subject p2 at once
    shape = cv2.imread(str(tmp_path / "pv" / "p1_0.png")).shape
    assert shape == (265, 920, 3)  # tile 1.9 in at 100 dpi: (tile + 0.75, 4 tile + 1.6) inches


def _shifted_texture_flow(side: int = 112) -> np.ndarray:
    """Offtanet-preset maps (TV-L1, raw Sobel strain) of a stationary texture translated by a
    constant (0.7, 0.4) px: the true strain is 0 everywhere, and only the border differs."""
    rng = np.random.default_rng(0)
    big = cv2.GaussianBlur(rng.uniform(0, 255, (side + side // 4,) * 2).astype(np.float32), (0, 0), 2.0)
    big = np.dstack([cv2.normalize(big, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)] * 3)
    moved = cv2.warpAffine(big, np.float32([[1, 0, 0.7], [0, 1, 0.4]]), big.shape[1::-1], borderMode=cv2.BORDER_REFLECT)
    o = side // 8
    a, b = (prepare_frame(x[o : o + side, o : o + side]) for x in (big, moved))
    return flow_features(tvl1_many([a], [b]), size=side, strain="sobel-raw", normalise="none", rescale_flow=True)[0]


def test_strain_border_artefact_is_not_drawn():
    maps = _shifted_texture_flow()
    band = edge_band(112)
    _, strain_max = display_scale([maps], band)
    raw = strain_to_rgb(maps[2], strain_max).max(axis=2).astype(float)
    drawn = grey_edge(strain_to_rgb(maps[2], strain_max), band)

    def ring(img: np.ndarray, k: int) -> float:
        return float(np.concatenate([img[k, k:-k or None], img[-1 - k, k:-k or None], img[k:-k or None, k], img[k:-k or None, -1 - k]]).mean())

    strain = maps[2].astype(float)
    value_centre, centre = float(strain[28:84, 28:84].mean()), float(raw[28:84, 28:84].mean())
    # the artefact: TV-L1 at the frame border, amplified by the derivatives
    assert ring(strain, 1) > 5 * value_centre and ring(raw, 1) > 1.6 * centre
    assert ring(strain, band) < 2 * value_centre  # the band covers the worst of it
    assert (drawn[:band] == GREY).all() and (drawn[:, -band:] == GREY).all()
    shown = drawn.max(axis=2).astype(float)
    assert ring(shown, band) < 1.4 * centre  # the first drawn ring looks like the interior


def test_captions_fit_small_tiles():
    text = "DI-onset (12f)"
    fitted, scale = fit_text(text, 60)
    assert cv2.getTextSize(fitted, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] <= 60
    assert fit_text(text, 200) == (text, 0.45)  # room enough: unchanged
    assert labelled(np.zeros((10, 40, 3), np.uint8), text).shape == (10 + CAPTION, 40, 3)


def test_align_contact_sheet_covers_every_subject_with_labelled_columns(tmp_path: Path):
    face = astronaut_face(48)
    clips = [{"id": f"s{i}_c{k}", "subject": f"s{i}", "label": "xy"[k], "frames": np.stack([face, face])}
             for i in range(5) for k in range(2)]
    aligned = write_aligned(tmp_path / "aligned.h5", clips)
    png = write_preview(aligned, tmp_path / "pv")
    sheet = cv2.imread(str(png))
    # 5 subjects + the second class: 6 clips (2 frames of 48 px each) in 2 columns, 3 rows;
    # a header strip, a caption per clip, 4 legend lines
    assert sheet.shape == (CAPTION + 3 * (CAPTION + 48) + 4 * CAPTION, 2 * 2 * 48, 3)
    header = sheet[:CAPTION]
    assert header.min() < 100  # "onset", "apex" written


def test_curves_have_whole_epoch_ticks(tmp_path: Path):
    import matplotlib.pyplot as plt

    from mertool.train.report import _epoch_axis, plot_curves

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [0.5, 0.4, 0.3])
    _epoch_axis(ax)
    fig.canvas.draw()
    ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)
    plt.close(fig)
    history = [[{"epoch": e, "train_loss": 1.0 / e, "train_acc": 0.3 * e} for e in (1, 2, 3)]]
    assert cv2.imread(str(plot_curves(history, tmp_path / "c.png", "m (1 folds)"))).shape == (400, 1000, 3)
