"""Tests of dynamic images: the pure functions (mertool/preprocess/dynimg.py) and the stage
(mertool/stages/dynimg.py, `mertool dynimg`).

References are independent of the code under test: closed forms worked by hand (or with
exact fractions), pixel-wise sums written out in plain loops, and OpenCV resizes.
"""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
import tracemalloc
from fractions import Fraction
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from mertool.stages.stagefile import StageWriter, open_stage
from mertool.cli.main import cli
from mertool.errors import MertoolError
from mertool.preprocess import dynimg as D
from mertool.preprocess.dynimg import (
    arp_weights,
    clip_dynamic_images,
    dynamic_image,
    normalize_image,
    phase_dynamic_images,
    phase_frame_counts,
    phase_weights,
    subtract_frame_mean,
    to_model_input,
)
from mertool.stages import dynimg as stage
from mertool.stages.dynimg import DynimgConfig, run_dynimg

S = 64  # aligned side in the fixtures
MOUTH = [(37, 27), (37, 41)]  # (y, x) of the mouth corners in the 64 px astronaut crop


# --------------------------------------------------------------------------- weights


def _exact_reference(T: int) -> list[float]:
    """Bilen et al.'s weights with exact fractions (no numpy, no shared code)."""
    H = [Fraction(0)]
    for k in range(1, T + 1):
        H.append(H[-1] + Fraction(1, k))
    return [float(2 * (T - t + 1) - (T + 1) * (H[T] - H[t - 1])) for t in range(1, T + 1)]


def test_exact_weights_match_closed_form_and_t5_values():
    assert np.round(arp_weights(5, "exact"), 2).tolist() == [-3.7, 0.3, 1.3, 1.3, 0.8]
    for T in range(1, 30):
        np.testing.assert_allclose(arp_weights(T, "exact"), _exact_reference(T), atol=1e-12)
        assert abs(arp_weights(T, "exact").sum()) < 1e-9


def test_linear_and_reverse_weights():
    assert arp_weights(4, "linear").tolist() == [-3, -1, 1, 3]  # 2t - T - 1
    assert arp_weights(5, "reverse").tolist() == [4, 2, 0, -2, -4]  # T + 1 - 2t
    for T in range(1, 25):
        lin = arp_weights(T, "linear")
        np.testing.assert_array_equal(lin[::-1], -lin)  # antisymmetric
        np.testing.assert_array_equal(arp_weights(T, "reverse"), -lin)
        assert lin.sum() == 0
    assert arp_weights(1, "linear").tolist() == [0.0]
    assert arp_weights(2, "exact").tolist() == [-0.5, 0.5]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_weights_reject_bad_length(bad):
    with pytest.raises(ValueError):
        arp_weights(bad, "linear")


def test_weights_reject_bad_kind():
    with pytest.raises(ValueError, match="kind"):
        arp_weights(3, "bilen")


def test_phase_weights_split_at_apex_and_share_it():
    w = phase_weights(range(10, 17), 10, 13, 16, kind="linear")
    assert w[0].tolist() == [-3, -1, 1, 3, 0, 0, 0]  # onset..apex, forward
    assert w[1].tolist() == [0, 0, 0, 3, 1, -1, -3]  # apex..offset, T + 1 - 2t
    we = phase_weights(range(10, 17), 10, 13, 16, kind="exact")
    np.testing.assert_allclose(we[1, 3:], _exact_reference(4)[::-1])
    # frames missing from a folder: phases select by frame number, not position
    w = phase_weights([1, 2, 4, 5, 7], 1, 4, 7)
    assert w[0].tolist() == [-2, 0, 2, 0, 0] and w[1].tolist() == [0, 0, 2, 0, -2]


# --------------------------------------------------------------------------- images


def _ramp_clip(T=7, slope=5.0, seed=0):
    """Static textured background; a 4 x 5 region whose intensity grows by `slope` per frame."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 150, size=(12, 14, 3)).astype(np.float64)
    clip = np.repeat(base[None], T, axis=0)
    for t in range(T):
        clip[t, 3:7, 5:10] += slope * t
    mask = np.zeros((12, 14, 3), bool)
    mask[3:7, 5:10] = True
    return clip, mask


@pytest.mark.parametrize("kind", ["linear", "exact"])
def test_linear_growth_gives_positive_region_zero_elsewhere(kind):
    T, slope = 7, 5.0
    clip, mask = _ramp_clip(T, slope)
    di = dynamic_image(clip, arp_weights(T, kind))
    assert np.all(di[mask] > 0)
    np.testing.assert_allclose(di[~mask], 0, atol=1e-9)
    if kind == "linear":  # slope * sum_t (2t - T - 1) t = slope * T (T + 1) (T - 1) / 6, by hand
        np.testing.assert_allclose(di[mask], slope * T * (T + 1) * (T - 1) / 6)


def test_dynamic_image_equals_plain_weighted_sum():
    rng = np.random.default_rng(1)
    clip = rng.integers(0, 256, size=(70, 5, 6, 3), dtype=np.uint8)  # > one CHUNK
    w = rng.normal(size=70)
    ref = np.zeros((5, 6, 3))
    for t in range(70):
        ref += w[t] * clip[t].astype(np.float64)
    np.testing.assert_allclose(dynamic_image(clip, w), ref, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(dynamic_image(iter(list(clip)), w), ref, rtol=1e-12, atol=1e-9)


def test_rise_then_fall_phase_signs():
    """DIANet ranks the offset phase backwards (alpha'_t = T + 1 - 2t): both phase images
    weight the apex most, so a region that brightens then darkens is positive in BOTH.
    Ranked forwards (reverse_offset=False) the two phases have opposite signs."""
    rng = np.random.default_rng(2)
    base = rng.integers(0, 100, size=(10, 10, 3)).astype(np.float64)
    level = [0, 3, 6, 9, 12, 8, 4, 0]  # rise over frames 1..5 (apex 5), fall over 5..8
    clip = np.stack([base + np.pad(np.full((4, 4, 3), v, float), ((3, 3), (3, 3), (0, 0))) for v in level])
    moving = np.zeros((10, 10, 3), bool)
    moving[3:7, 3:7] = True
    on, off = phase_dynamic_images(clip, onset=1, apex=5, offset=8)
    assert np.all(on[moving] > 0) and np.all(off[moving] > 0)
    np.testing.assert_allclose(on[~moving], 0, atol=1e-9)
    np.testing.assert_allclose(off[~moving], 0, atol=1e-9)
    # by hand: onset 3 * sum (2t-6) t, t=1..5 = 3 * 20 = 60; offset 4 * sum (2t-5) t, t=1..4 = 40
    np.testing.assert_allclose(on[moving], 60)
    np.testing.assert_allclose(off[moving], 40)
    on_f, off_f = phase_dynamic_images(clip, 1, 5, 8, reverse_offset=False)
    np.testing.assert_array_equal(on_f, on)
    assert np.all(np.sign(on_f[moving]) == -np.sign(off_f[moving]))
    np.testing.assert_allclose(off_f[moving], -40)


def test_reversing_the_clip_negates_the_linear_dynamic_image():
    clip = np.random.default_rng(3).integers(0, 256, size=(9, 8, 8, 3), dtype=np.uint8)
    w = arp_weights(9, "linear")
    np.testing.assert_allclose(dynamic_image(clip[::-1], w), -dynamic_image(clip, w), atol=1e-9)


def test_fixed_image_has_no_effect_but_frame_mean_removes_flicker():
    clip, _ = _ramp_clip()
    w = arp_weights(len(clip), "exact")
    np.testing.assert_allclose(dynamic_image(clip - clip[0], w), dynamic_image(clip, w), atol=1e-9)
    static = np.random.default_rng(4).integers(0, 200, size=(10, 10, 3)).astype(float)
    flicker = np.stack([static + b for b in (0, 7, -3, 12, 5, -6)])  # no motion, brightness varies
    w = arp_weights(6, "linear")
    assert np.abs(dynamic_image(flicker, w)).max() > 10
    np.testing.assert_allclose(dynamic_image(flicker, w, preprocess=subtract_frame_mean), 0, atol=1e-9)


def test_one_and_two_frame_clips_and_one_frame_phases():
    rng = np.random.default_rng(5)
    f1, f2, f3 = (rng.integers(0, 256, size=(6, 6, 3)).astype(float) for _ in range(3))
    for kind in ("linear", "exact"):
        np.testing.assert_array_equal(dynamic_image(f1[None], arp_weights(1, kind)), 0)
    np.testing.assert_allclose(dynamic_image(np.stack([f1, f2]), arp_weights(2, "linear")), f2 - f1)
    np.testing.assert_allclose(dynamic_image(np.stack([f1, f2]), arp_weights(2, "exact")), (f2 - f1) / 2)
    on, off = phase_dynamic_images(np.stack([f1, f2, f3]), 1, 1, 3)  # apex == onset
    np.testing.assert_array_equal(on, 0)
    np.testing.assert_allclose(off, 2 * f1 - 2 * f3)
    on, off = phase_dynamic_images(np.stack([f1, f2, f3]), 1, 3, 3)  # apex == offset
    np.testing.assert_allclose(on, 2 * f3 - 2 * f1)
    np.testing.assert_array_equal(off, 0)
    on, off = phase_dynamic_images(f1[None], 4, 4, 4)  # T = 1
    assert not on.any() and not off.any()


def test_long_clip_is_streamed_not_stacked():
    T, shape = 600, (32, 32, 3)
    frame_bytes = int(np.prod(shape)) * 8

    def frames():
        for t in range(T):
            yield np.full(shape, t % 256, dtype=np.uint8)

    w = arp_weights(T, "linear")
    tracemalloc.start()
    di = dynamic_image(frames(), w)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 * frame_bytes  # stacking would need T * frame_bytes (30x more)
    np.testing.assert_allclose(di, float(np.dot(w, np.arange(T) % 256)))


def test_normalisations():
    img = np.random.default_rng(6).normal(size=(5, 5, 3)) * 40 + 3
    mm = normalize_image(img, "minmax")
    assert mm.min() == 0 and np.isclose(mm.max(), 255)
    np.testing.assert_allclose(mm, (img - img.min()) / (img.max() - img.min()) * 255)
    st = normalize_image(img, "standardize")
    assert abs(st.mean()) < 1e-12 and np.isclose(st.std(), 1)
    np.testing.assert_array_equal(normalize_image(img, "none"), img)
    for method in ("minmax", "standardize"):
        np.testing.assert_array_equal(normalize_image(np.zeros((4, 4, 3)), method), 0)
        np.testing.assert_array_equal(normalize_image(np.full((4, 4, 3), 9.0), method), 0)
    with pytest.raises(ValueError):
        normalize_image(img, "l2")


def test_resize_and_gray_are_applied_to_the_image_equivalently():
    rng = np.random.default_rng(7)
    clip = rng.integers(0, 256, size=(5, 32, 32, 3)).astype(np.float64)
    w = arp_weights(5, "linear")
    got = to_model_input(dynamic_image(clip, w), 16, 3, "none")
    small = np.stack([cv2.resize(f, (16, 16), interpolation=cv2.INTER_AREA) for f in clip])
    np.testing.assert_allclose(got, dynamic_image(small, w).transpose(2, 0, 1), atol=1e-4)
    gray = np.repeat(clip[..., :1], 3, axis=3)  # SAMM-like: three identical channels
    di = dynamic_image(gray, w)
    np.testing.assert_array_equal(di[..., 0], di[..., 1])
    one = to_model_input(di, 32, 1, "none")
    assert one.shape == (1, 32, 32)
    np.testing.assert_allclose(one[0], di[..., 0], atol=1e-4)
    three = to_model_input(dynamic_image(clip[..., 0], w), 32, 3, "none")  # T x H x W input
    assert three.shape == (3, 32, 32)


def test_phase_frame_counts_select_by_frame_number():
    assert phase_frame_counts([1, 2, 4, 5, 7], 1, 4, 7, ["onset", "offset", "whole"]).tolist() == [3, 3, 5]
    assert phase_frame_counts(range(10, 17), 10, 10, 16, ["onset", "offset"]).tolist() == [1, 7]
    assert phase_frame_counts([3, 4], 5, 6, 9, ["onset"]).tolist() == [0]  # no frame in the phase
    with pytest.raises(ValueError, match="unknown phase"):
        phase_frame_counts([1, 2], 1, 1, 2, ["apex"])


def test_clip_images_from_streamed_blocks_equal_the_in_memory_ones():
    rng = np.random.default_rng(9)
    clip = rng.integers(0, 256, size=(11, 20, 20, 3), dtype=np.uint8)
    numbers = np.arange(5, 16)
    blocks = (clip[i : i + 4] for i in range(0, 11, 4))  # 4 + 4 + 3 frames
    images, lengths = clip_dynamic_images(blocks, numbers, 5, 9, 15, kind="exact", size=12, channels=1,
                                          normalize="standardize")
    on, off = phase_dynamic_images(clip, 5, 9, 15, kind="exact")
    assert images.shape == (2, 1, 12, 12) and images.dtype == np.float32 and lengths.tolist() == [5, 7]
    np.testing.assert_allclose(images[0], to_model_input(on, 12, 1, "standardize"), atol=1e-5)
    np.testing.assert_allclose(images[1], to_model_input(off, 12, 1, "standardize"), atol=1e-5)
    # only "whole": the apex plays no part, so an unknown one (-1) is fine
    whole, n = clip_dynamic_images([clip], numbers, 5, -1, 15, phases=["whole"], frame_norm="mean", normalize="none",
                                   size=20)
    ref = dynamic_image(clip, arp_weights(11, "linear"), preprocess=subtract_frame_mean)
    assert n.tolist() == [11]
    np.testing.assert_allclose(whole[0], ref.transpose(2, 0, 1), rtol=1e-5, atol=1e-3)
    with pytest.raises(ValueError, match="frame_norm"):
        clip_dynamic_images([clip], numbers, 5, 9, 15, frame_norm="median")
    with pytest.raises(ValueError, match="more frames than weights"):
        clip_dynamic_images([clip, clip], numbers, 5, 9, 15)


# --------------------------------------------------------------------------- stage fixtures


def _face() -> np.ndarray:
    from skimage import data

    return cv2.resize(data.astronaut()[40:220, 130:310], (S, S), interpolation=cv2.INTER_AREA)


def _smile(face: np.ndarray, amount: float) -> np.ndarray:
    """Pull the mouth corners up by `amount` px (a small local deformation)."""
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    dy = np.zeros_like(yy)
    for cy, cx in MOUTH:
        dy += amount * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0**2))
    return cv2.remap(face, xx, yy + dy, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def _face_clip(onset: int, apex: int, offset: int, peak: float = 2.0, gray: bool = False):
    face = _face()
    if gray:
        face = np.repeat(cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    numbers = np.arange(onset, offset + 1)
    amount = [peak * (n - onset) / max(apex - onset, 1) if n <= apex else peak * (offset - n) / max(offset - apex, 1)
              for n in numbers]
    return np.stack([_smile(face, a) for a in amount]), numbers


CLIPS = {  # sample_id: (onset, apex, offset, gray)
    "s1_a": (1, 6, 11, False),
    "s1_b": (20, 20, 26, False),  # apex == onset
    "s2_c": (5, 9, 9, False),  # apex == offset
    "s3_samm": (100, 104, 110, True),
    "s3_one": (7, 7, 7, False),  # T = 1
}


def write_aligned(path: Path, clips=CLIPS, apex_unknown=(), params=None) -> Path:
    w = StageWriter(path, "aligned", params or {"frames": "all", "size": S})
    for i, (sid, (on, ap, off, gray)) in enumerate(clips.items()):
        frames, numbers = _face_clip(on, ap, off, gray=gray)
        if (params or {}).get("frames") == "keyframes":
            frames, numbers = frames[[0, ap - on]], numbers[[0, ap - on]]
        w.add(
            sid,
            {"frames": frames, "frame_numbers": numbers.astype(np.int64),
             "landmarks": np.zeros((68, 2), np.float32), "transform": np.eye(2, 3)},
            {"subject": sid.split("_")[0], "label": "happiness" if i % 2 == 0 else "surprise",
             "dataset": "samm" if gray else "casme2", "clip": sid, "onset": on,
             "apex": -1 if sid in apex_unknown else ap, "offset": off, "aus": "12", "apex_source": "sheet"},
        )
    w.finish(list(clips), stacked=False)
    return path


@pytest.fixture
def aligned(tmp_path: Path) -> Path:
    return write_aligned(tmp_path / "aligned.h5")


def _reference_di(sid: str, size: int, kind: str = "linear") -> np.ndarray:
    """Phase DIs computed from the generated clip with plain loops and OpenCV resizes."""
    on, ap, off, gray = CLIPS[sid]
    frames, numbers = _face_clip(on, ap, off, gray=gray)
    out = []
    for lo, hi, backwards in ((on, ap, False), (ap, off, True)):
        seg = [f.astype(np.float64) for f, n in zip(frames, numbers) if lo <= n <= hi]
        seg = seg[::-1] if backwards else seg
        w = arp_weights(len(seg), kind)
        acc = sum(wt * f for wt, f in zip(w, seg))
        acc = cv2.resize(acc, (size, size), interpolation=cv2.INTER_AREA)
        out.append(normalize_image(acc, "minmax").transpose(2, 0, 1))
    return np.stack(out)


# --------------------------------------------------------------------------- stage


def test_stage_on_face_clips(aligned, tmp_path, capsys):
    out = tmp_path / "dynimg.h5"
    rc = cli(["dynimg", str(aligned), "-o", str(out), "--size", "48", "--preview", str(tmp_path / "prev")])
    assert rc == 0, capsys.readouterr().err
    sf = open_stage(out, expect="dynimg")
    di = sf.array("dynimg")
    assert di.shape == (len(CLIPS), 2, 3, 48, 48) and di.dtype == np.float32
    assert sf.sample_ids == list(CLIPS)
    assert sf.meta["apex"] == [c[1] for c in CLIPS.values()]
    assert sf.meta["label"][:2] == ["happiness", "surprise"] and sf.meta["dataset"][3] == "samm"
    assert sf.params["kind"] == "linear" and sf.params["normalize"] == "minmax"
    assert sf.array("phase_frames").tolist() == [[6, 6], [1, 7], [5, 1], [5, 7], [1, 1]]
    for row, sid in enumerate(CLIPS):
        np.testing.assert_allclose(di[row], _reference_di(sid, 48), atol=2e-3)
    a = di[0]
    assert a.min() >= 0 and a.max() <= 255
    # one-frame phases (apex == onset / offset, T = 1) are zero images
    assert not di[1, 0].any() and not di[2, 1].any() and not di[4].any()
    assert di[1, 1].any() and di[2, 0].any()
    # SAMM-like gray clip: identical channels
    np.testing.assert_array_equal(di[3, :, 0], di[3, :, 1])
    # the motion is at the mouth corners: DI contrast is concentrated there
    rise = _face_clip(1, 6, 11)[0][:6]
    raw = dynamic_image(rise, arp_weights(len(rise), "linear"))
    energy = np.abs(raw).sum(axis=2)
    near = np.zeros((S, S), bool)
    for cy, cx in MOUTH:
        near[max(cy - 8, 0):cy + 9, max(cx - 8, 0):cx + 9] = True
    assert energy[near].mean() > 10 * energy[~near].mean()
    pngs = sorted((tmp_path / "prev").glob("*.png"))
    assert len(pngs) == stage.PREVIEW_COUNT
    img = cv2.imread(str(pngs[0]))
    assert img.shape[0] == stage.PREVIEW_SIDE + 22 and img.shape[1] == 5 * stage.PREVIEW_SIDE + 4 * 4  # enlarged


def test_stage_gray_channel_exact_whole_and_standardize(aligned, tmp_path, capsys):
    out = tmp_path / "whole.h5"
    rc = cli(["dynimg", str(aligned), "-o", str(out), "--phases", "whole", "--kind", "exact",
              "--size", "32", "--channels", "1", "--normalize", "standardize"])
    assert rc == 0, capsys.readouterr().err
    sf = open_stage(out)
    di = sf.array("dynimg")
    assert di.shape == (len(CLIPS), 1, 1, 32, 32)
    on, ap, off, _ = CLIPS["s1_a"]
    frames, _ = _face_clip(on, ap, off)
    w = _exact_reference(len(frames))
    acc = sum(wt * (f.astype(np.float64) @ [0.299, 0.587, 0.114]) for wt, f in zip(w, frames))
    ref = cv2.resize(acc, (32, 32), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(di[0, 0, 0], (ref - ref.mean()) / ref.std(), atol=1e-4)
    assert not di[4].any()  # T = 1


def test_whole_phase_needs_no_apex(tmp_path, capsys):
    path = write_aligned(tmp_path / "aligned.h5", apex_unknown=("s1_a",))
    assert cli(["dynimg", str(path), "-o", str(tmp_path / "w.h5"), "--phases", "whole", "--size", "16"]) == 0
    capsys.readouterr()
    assert cli(["dynimg", str(path), "-o", str(tmp_path / "p.h5"), "--size", "16"]) == 1
    err = capsys.readouterr().err
    assert "s1_a" in err and "mertool keyframes" in err and err.startswith("error:")


def test_apex_from_samples_csv(tmp_path, capsys):
    path = write_aligned(tmp_path / "aligned.h5", apex_unknown=("s1_a",))
    csv_path = tmp_path / "samples.csv"
    with open(csv_path, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["sample_id", "subject", "onset", "apex", "offset", "label", "apex_source"])
        for sid, (on, ap, off, _) in CLIPS.items():
            wr.writerow([sid, "s", on, ap, off, "x", "estimated:test" if sid == "s1_a" else "sheet"])
    out = tmp_path / "d.h5"
    rc = cli(["dynimg", str(path), "-o", str(out), "--size", "48", "--samples", str(csv_path)])
    assert rc == 0, capsys.readouterr().err
    sf = open_stage(out)
    assert sf.meta["apex"][0] == 6 and sf.meta["apex_source"][0] == "estimated:test"
    np.testing.assert_allclose(sf.array("dynimg")[0], _reference_di("s1_a", 48), atol=2e-3)
    assert str(csv_path) in sf.attrs["upstream"]
    # a samples.csv lacking an aligned sample is refused, naming it
    rows = list(csv.reader(open(csv_path)))
    with open(csv_path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows[:-1])
    assert cli(["dynimg", str(path), "-o", str(tmp_path / "e.h5"), "--samples", str(csv_path)]) == 1
    assert "s3_one" in capsys.readouterr().err


def _samples_csv(path: Path, rows: dict[str, tuple[int, str]]) -> Path:
    """A samples.csv with the given (apex, apex_source) per sample; other columns from CLIPS."""
    with open(path, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["sample_id", "subject", "onset", "apex", "offset", "label", "apex_source"])
        for sid, (apex, source) in rows.items():
            on, _, off, _ = CLIPS[sid]
            wr.writerow([sid, sid.split("_")[0], on, apex, off, "x", source])
    return path


def test_samples_csv_policy(aligned, tmp_path, capsys):
    """--samples: a row per sample is required; a known apex replaces the aligned file's
    apex and apex_source; a row with apex -1 keeps the aligned file's."""
    rows = {sid: (ap, "sheet") for sid, (_, ap, _, _) in CLIPS.items()}
    rows["s1_a"] = (4, "estimated:test")
    rows["s3_samm"] = (-1, "unknown")
    out = tmp_path / "d.h5"
    rc = cli(["dynimg", str(aligned), "-o", str(out), "--size", "16", "--samples", str(_samples_csv(tmp_path / "s.csv", rows))])
    assert rc == 0, capsys.readouterr().err
    sf = open_stage(out)
    assert sf.meta["apex"] == [4, 20, 9, 104, 7]
    assert sf.meta["apex_source"] == ["estimated:test", "sheet", "sheet", "sheet", "sheet"]
    assert sf.array("phase_frames").tolist()[0] == [4, 8]  # split at the CSV's apex: 1..4, 4..11
    del rows["s2_c"]
    capsys.readouterr()
    missing = tmp_path / "e.h5"
    assert cli(["dynimg", str(aligned), "-o", str(missing), "--samples", str(_samples_csv(tmp_path / "m.csv", rows))]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("error:") == 1 and "s2_c" in err and "s1_a" not in err
    assert not missing.exists() and not Path(str(missing) + ".parts").exists()


def test_keyframes_clip_is_refused(tmp_path, capsys):
    path = write_aligned(tmp_path / "kf.h5", clips={"s1_a": CLIPS["s1_a"]}, params={"frames": "keyframes", "size": S})
    assert cli(["dynimg", str(path), "-o", str(tmp_path / "d.h5")]) == 1
    err = capsys.readouterr().err
    assert "s1_a" in err and "keyframes" in err
    # detected from the content too (a file whose params do not say so)
    path = tmp_path / "kf2.h5"
    w = StageWriter(path, "aligned", {"size": S})
    frames, numbers = _face_clip(1, 6, 11)
    w.add("x", {"frames": frames[[0, 5]], "frame_numbers": numbers[[0, 5]]},
          {"subject": "s", "label": "l", "onset": 1, "apex": 6, "offset": 11})
    w.finish(["x"], stacked=False)
    with pytest.raises(MertoolError, match="keyframes"):
        run_dynimg(path, tmp_path / "d2.h5", progress=False)


def test_bad_inputs(aligned, tmp_path, capsys):
    out = str(tmp_path / "d.h5")
    assert cli(["dynimg", str(tmp_path / "missing.h5"), "-o", out]) == 1  # bad data: exit 1
    assert "file not found" in capsys.readouterr().err
    cases = [  # usage errors: exit 2
        # config errors name the field (the same message for YAML, keyword and flag)
        ([str(aligned), "-o", out, "--phases", "onset,apex"], "phases must be"),
        ([str(aligned), "-o", out, "--phases", "onset,onset"], "phases must be"),
        ([str(aligned), "-o", out, "--kind", "reverse"], "kind must be"),
        ([str(aligned), "-o", out, "--size", "4"], "size must be"),
        ([str(aligned), "-o", out, "--channels", "2"], "channels must be"),
        ([str(aligned), "-o", out, "--normalize", "l2"], "normalize must be"),
        ([str(aligned), "-o", out, "--frame-norm", "median"], "frame_norm must be"),
    ]
    for args, needle in cases:
        assert cli(["dynimg", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error:") and needle in err and "Traceback" not in err, (args, err)
    # a stage file of another kind
    other = StageWriter(tmp_path / "flow.h5", "flow", {})
    other.add("a", {"flow": np.zeros((3, 4, 4), np.float32)}, {})
    other.finish(["a"], stacked=True)
    assert cli(["dynimg", str(tmp_path / "flow.h5"), "-o", out]) == 1
    assert "expected 'aligned'" in capsys.readouterr().err
    # an apex outside onset..offset
    bad = {"z": (1, 6, 11, False)}
    path = write_aligned(tmp_path / "bad.h5", clips=bad)
    with h5py.File(path, "r+") as h5:
        h5["meta/apex"][0] = 40
    assert cli(["dynimg", str(path), "-o", out]) == 1
    assert "apex 40 outside" in capsys.readouterr().err


def test_rerun_reuses_and_changed_params_are_refused(aligned, tmp_path, capsys):
    out = tmp_path / "d.h5"
    assert cli(["dynimg", str(aligned), "-o", str(out), "--size", "16"]) == 0
    mtime = out.stat().st_mtime_ns
    assert cli(["dynimg", str(aligned), "-o", str(out), "--size", "16"]) == 0
    assert out.stat().st_mtime_ns == mtime
    assert cli(["dynimg", str(aligned), "-o", str(out), "--size", "24"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert cli(["dynimg", str(aligned), "-o", str(out), "--size", "24", "--overwrite"]) == 0
    assert open_stage(out).array("dynimg").shape[-1] == 24


def test_long_clip_in_stage_matches_in_memory(tmp_path):
    T = 3 * D.CHUNK + 5
    rng = np.random.default_rng(8)
    frames = rng.integers(0, 256, size=(T, 16, 16, 3), dtype=np.uint8)
    w = StageWriter(tmp_path / "a.h5", "aligned", {"frames": "all"})
    w.add("long", {"frames": frames, "frame_numbers": np.arange(1, T + 1)},
          {"subject": "s", "label": "l", "onset": 1, "apex": 40, "offset": T})
    w.finish(["long"], stacked=False)
    run_dynimg(tmp_path / "a.h5", tmp_path / "d.h5", DynimgConfig(size=16, normalize="none"), progress=False)
    got = open_stage(tmp_path / "d.h5").array("dynimg")[0]
    on, off = phase_dynamic_images(frames, 1, 40, T)
    np.testing.assert_allclose(got[0], on.transpose(2, 0, 1), rtol=1e-6, atol=1e-2)
    np.testing.assert_allclose(got[1], off.transpose(2, 0, 1), rtol=1e-6, atol=1e-2)


_SLOW_RUN = """
import sys, time
import mertool.stages.dynimg as d
orig, calls = d.compute_clip, [0]
def slow(case, **kw):  # the third sample hangs, so the parent can kill us mid-stage
    calls[0] += 1
    if calls[0] > 2:
        time.sleep(60)
    return orig(case, **kw)
d.compute_clip = slow
d.run_dynimg(sys.argv[1], sys.argv[2], d.DynimgConfig(size=48), progress=False)
"""


def test_resume_after_kill_equals_uninterrupted_run(aligned, tmp_path, monkeypatch):
    script = tmp_path / "slow_run.py"
    script.write_text(_SLOW_RUN)
    out = tmp_path / "killed.h5"
    parts = Path(str(out) + ".parts")
    proc = subprocess.Popen([sys.executable, str(script), str(aligned), str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while len(list(parts.glob("*.npz"))) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline, "no progress"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not out.exists() and len(list(parts.glob("*.npz"))) == 2  # killed mid-stage

    calls = []
    orig = stage.compute_clip
    monkeypatch.setattr(stage, "compute_clip", lambda case, **kw: calls.append(case.sample_id) or orig(case, **kw))
    run_dynimg(aligned, out, DynimgConfig(size=48), progress=False)
    assert len(calls) == len(CLIPS) - 2  # only the unfinished samples were computed
    monkeypatch.setattr(stage, "compute_clip", orig)
    clean = run_dynimg(aligned, tmp_path / "clean.h5", DynimgConfig(size=48), progress=False).path
    a, b = open_stage(out), open_stage(clean)
    np.testing.assert_array_equal(a.array("dynimg"), b.array("dynimg"))
    np.testing.assert_array_equal(a.array("phase_frames"), b.array("phase_frames"))
    assert a.meta == b.meta and a.key == b.key and not parts.exists()


def test_parallel_jobs_equal_serial(aligned, tmp_path):
    one = run_dynimg(aligned, tmp_path / "j1.h5", DynimgConfig(size=16), jobs=1, progress=False)
    two = run_dynimg(aligned, tmp_path / "j2.h5", DynimgConfig(size=16), jobs=2, progress=False)
    assert (one.done, two.done, one.failed, two.failed) == (len(CLIPS), len(CLIPS), {}, {})
    np.testing.assert_array_equal(open_stage(one.path).array("dynimg"), open_stage(two.path).array("dynimg"))


def test_help_has_example(capsys):
    assert cli(["dynimg", "--help"]) == 0
    text = capsys.readouterr().out
    assert "Example: mertool dynimg" in text and "--phases" in text and "onset,offset" in text


def test_yaml_config_and_cli_override(aligned, tmp_path, capsys):
    cfg = tmp_path / "dynimg.yaml"
    cfg.write_text("kind: exact\nphases: [whole]\nsize: 16\nframe-norm: mean\n")
    out = tmp_path / "d.h5"
    assert cli(["dynimg", str(aligned), "-o", str(out), "--config", str(cfg), "--size", "24"]) == 0
    p = open_stage(out).params
    assert (p["kind"], p["phases"], p["size"], p["frame_norm"]) == ("exact", "whole", 24, "mean")
    assert open_stage(out).array("dynimg").shape == (len(CLIPS), 1, 3, 24, 24)
    capsys.readouterr()
    cfg.write_text("kinds: exact\n")
    assert cli(["dynimg", str(aligned), "-o", str(tmp_path / "e.h5"), "--config", str(cfg)]) == 2
    assert "kinds" in capsys.readouterr().err


@pytest.mark.slow
def test_end_to_end_with_mertool_align(tmp_path, capsys):
    """index -> the real `mertool align` (dlib) -> dynimg on a smiling astronaut clip."""
    from skimage import data

    face = cv2.resize(data.astronaut()[20:260, 100:340], (200, 200), interpolation=cv2.INTER_AREA)
    yy, xx = np.mgrid[0:200, 0:200].astype(np.float32)
    bump = sum(np.exp(-((yy - 127) ** 2 + (xx - cx) ** 2) / (2 * 8.0**2)) for cx in (88, 122))
    level = [0, 1, 2, 3, 2, 1, 0]  # apex at frame 4
    clip_dir = tmp_path / "clips" / "a"
    clip_dir.mkdir(parents=True)
    for i, a in enumerate(level):
        frame = cv2.remap(face, xx, yy + 1.5 * a * bump, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        cv2.imwrite(str(clip_dir / f"img{i + 1:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    manifest = tmp_path / "m.csv"
    manifest.write_text("sample_id,subject,frames,onset,apex,offset,label\na,s1,clips/a,1,4,7,happiness\n")
    samples, aligned, out = tmp_path / "samples.csv", tmp_path / "aligned.h5", tmp_path / "dynimg.h5"
    assert cli(["index", "--dataset", "manifest", "--sheet", str(manifest), "-o", str(samples)]) == 0
    assert cli(["align", str(samples), "-o", str(aligned), "--size", "64"]) == 0, capsys.readouterr().err
    assert cli(["dynimg", str(aligned), "-o", str(out), "--size", "64", "--normalize", "none"]) == 0
    sf = open_stage(out, expect="dynimg")
    di = sf.array("dynimg")[0]
    assert di.shape == (2, 3, 64, 64) and sf.array("phase_frames").tolist() == [[4, 4]]
    frames = open_stage(aligned).sample("a")["frames"].astype(np.float64)
    on, off = phase_dynamic_images(frames, 1, 4, 7)
    np.testing.assert_allclose(di[0], on.transpose(2, 0, 1), rtol=1e-5, atol=1e-2)
    np.testing.assert_allclose(di[1], off.transpose(2, 0, 1), rtol=1e-5, atol=1e-2)
    assert np.abs(di).max() > 20  # the mouth moved


def test_values_outside_the_validity_mask_are_zeroed_or_kept(tmp_path):
    from crop_fixtures import tight_face, write_clips

    from mertool.stages.align import AlignConfig, run_align

    face = np.ascontiguousarray(tight_face()[:, 50:])  # the similarity crop reaches past this frame
    frames = [np.roll(face, k, axis=0) for k in range(4)]
    samples = write_clips(tmp_path, {"cut": frames}, dataset="my-lab")
    aligned = run_align(samples, tmp_path / "a.h5", AlignConfig(size=64, margin=0.3), progress=False).path
    valid = open_stage(aligned).sample("cut", ["valid"])["valid"]
    inside = cv2.resize(valid.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA) > 0.999
    assert 0.2 < inside.mean() < 0.9
    assert cli(["dynimg", str(aligned), "-o", str(tmp_path / "z.h5"), "--size", "32", "--phases", "whole"]) == 0
    args = ["dynimg", str(aligned), "-o", str(tmp_path / "k.h5"), "--size", "32", "--phases", "whole", "--invalid", "keep"]
    assert cli(args) == 0
    zero, keep = open_stage(tmp_path / "z.h5"), open_stage(tmp_path / "k.h5")
    assert zero.params["invalid"] == "zero" and keep.params["invalid"] == "keep"
    z, k = zero.array("dynimg")[0, 0], keep.array("dynimg")[0, 0]
    assert (z[:, ~inside] == 0).all() and np.abs(k[:, ~inside]).max() > 0
    # min-max over the valid pixels only: they span 0..255 by themselves
    assert np.isclose(z[:, inside].min(), 0) and np.isclose(z[:, inside].max(), 255)


def test_frame_mean_is_taken_over_the_valid_pixels():
    """Hand-worked: valid pixels 1..4, invalid ones 100: the valid mean is 2.5, not (10 + 300) / 7."""
    frame = np.full((2, 4, 1), 100.0)
    frame[0, :, 0] = [1, 2, 3, 4]
    valid = np.zeros((2, 4), bool)
    valid[0] = True
    np.testing.assert_allclose(subtract_frame_mean(frame, valid)[0, :, 0], [-1.5, -0.5, 0.5, 1.5])
    np.testing.assert_allclose(subtract_frame_mean(frame)[0, :, 0], np.array([1, 2, 3, 4]) - 410 / 8)
    with pytest.raises(ValueError, match="does not match"):
        subtract_frame_mean(frame, np.ones((3, 3), bool))


def test_frame_mean_dynamic_images_ignore_what_lies_outside_the_mask():
    """Two clips that differ only outside the validity mask (flickering fill) give the same images with
    frame_norm mean and invalid zero; with invalid keep the fill leaks in."""
    rng = np.random.default_rng(0)
    clip = rng.uniform(0, 255, (7, 16, 16, 3))
    valid = np.zeros((16, 16), bool)
    valid[:, 4:] = True
    other = clip.copy()
    other[:, ~valid] = rng.uniform(0, 255, (7, 1, 3)) * 3  # a different fill per frame

    def make(c, invalid):
        return clip_dynamic_images([c], list(range(1, 8)), 1, 4, 7, frame_norm="mean", size=16, normalize="none",
                                   valid=valid, invalid=invalid)[0]
    np.testing.assert_allclose(make(clip, "zero"), make(other, "zero"), atol=1e-4)
    assert not np.allclose(make(clip, "keep")[:, :, valid], make(other, "keep")[:, :, valid], atol=1e-2)


@pytest.mark.parametrize("frame_norm,revised", [("mean", True), ("none", False)])
def test_frame_mean_files_get_a_new_key_others_keep_theirs(aligned, tmp_path, frame_norm, revised):
    """Files made with frame_norm mean and invalid zero before the valid-pixel means must not pass as up
    to date: their key includes the stage's revision; every other key is computed as before."""
    from mertool.config import config_hash

    out = tmp_path / f"{frame_norm}.h5"
    assert cli(["dynimg", str(aligned), "-o", str(out), "--size", "32", "--frame-norm", frame_norm]) == 0
    sf = open_stage(out)
    before = config_hash({"stage": "dynimg", "params": sf.params, "upstream": [u["key"] for u in sf.upstream()]})
    assert (sf.plan_key != before) is revised
