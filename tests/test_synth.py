"""Built-in synthetic data: determinism, apex, amplitude (measured by OpenCV's TV-L1),
class locality, motion axis, manifest indexing, resume and bad input."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from mertool.cli.main import cli
from mertool.samples import load_frames, read_samples
from mertool.synth import (
    SynthConfig,
    class_region,
    face_landmarks,
    generate,
    make_subject,
    motion_field,
    profile,
    render_clip,
)

SMALL = dict(subjects=2, per_class=1, frames=10)


@pytest.fixture(scope="module")
def subject():
    return make_subject(0, SynthConfig())


def _gray(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def _flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """OpenCV Dual TV-L1 (independent of mertool's flow stage)."""
    return cv2.optflow.DualTVL1OpticalFlow_create(lambda_=0.5).calc(_gray(a), _gray(b), None)


def _box(mask: np.ndarray, pad: int) -> tuple[slice, slice]:
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    return slice(max(ys.min() - pad, 0), min(ys.max() + pad, h)), slice(max(xs.min() - pad, 0), min(xs.max() + pad, w))


def _farneback(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return cv2.calcOpticalFlowFarneback(_gray(a), _gray(b), None, 0.5, 3, 9, 5, 5, 1.1, 0)


def _motion(clip, subject, label, frame_idx: int, flow=_flow) -> tuple[float, np.ndarray]:
    """Robust peak of the measured local motion (global jitter removed) in the class region."""
    region = class_region(subject.landmarks, label, clip.frames.shape[1:3])
    box = _box(region, 24)
    f = flow(clip.frames[clip.onset - 1][box], clip.frames[frame_idx][box])
    local = f - np.median(f[~region[box]], axis=0)  # jitter is a global shift
    true = np.linalg.norm(clip.field[box], axis=2)
    core = true > 0.7 * true.max()
    return float(np.percentile(np.linalg.norm(local[core], axis=1), 90)), local[core]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic_for_a_seed(tmp_path):
    a = generate(tmp_path / "a", SynthConfig(seed=7, **SMALL), progress=False).parent
    b = generate(tmp_path / "b", SynthConfig(seed=7, **SMALL), progress=False).parent
    c = generate(tmp_path / "c", SynthConfig(seed=8, **SMALL), progress=False).parent
    fa, fb, fc = _files(a), _files(b), _files(c)
    images = [k for k in fa if k.endswith(".jpg")]
    assert len(images) == 2 * 3 * 10
    assert fa == fb  # every byte, manifest and synth.json included
    assert sum(fa[k] != fc.get(k) for k in images) > len(images) // 2


def test_profile_is_a_raised_cosine_peaking_at_apex():
    n = np.arange(1, 21)
    s = profile(n, 3, 9, 18)
    assert s[n.tolist().index(9)] == 1.0 and np.argmax(s) == 8
    assert np.all(s[:3] == 0) and np.all(s[18:] == 0)
    assert s[5] == pytest.approx(0.5 - 0.5 * np.cos(np.pi * 3 / 6))
    assert np.all(np.diff(s[2:9]) > 0) and np.all(np.diff(s[8:18]) < 0)


def test_apex_frame_is_the_peak_of_measured_deformation(subject):
    cfg = SynthConfig(frames=16, blink=0.0, amplitude=(2.0, 2.0))
    clip = render_clip(subject, "surprise", 3, cfg)
    assert 1 <= clip.onset < clip.apex < clip.offset <= 16
    measured = [_motion(clip, subject, "surprise", i, _farneback)[0] for i in range(16)]
    peak = int(np.argmax(measured)) + 1
    assert abs(peak - clip.apex) <= 1
    assert measured[clip.apex - 1] >= 0.9 * max(measured)
    assert measured[clip.onset - 1] < 0.25 and measured[clip.offset - 1] < 0.5 * max(measured)


@pytest.mark.parametrize("label", ["surprise", "sadness"])
@pytest.mark.parametrize("lo,hi", [(0.6, 0.9), (1.5, 2.5)])
def test_displacement_amplitude_within_requested_range(subject, label, lo, hi):
    cfg = SynthConfig(amplitude=(lo, hi), frames=12, blink=0.0, classes=(label, "positive"))
    clip = render_clip(subject, label, 11, cfg)
    assert lo <= clip.amplitude <= hi
    # the rendered field is normalised so its apex peak equals the clip's amplitude
    assert np.linalg.norm(clip.field, axis=2).max() == pytest.approx(clip.amplitude, rel=1e-5)
    peak, _ = _motion(clip, subject, label, clip.apex - 1)
    assert 0.8 * lo <= peak <= 1.15 * hi, (peak, lo, hi)


def test_classes_differ_only_in_their_motion_regions(subject):
    cfg = SynthConfig(frames=12, blink=1.0)  # blinks and jitter on: they must not depend on the class
    clips = {lab: render_clip(subject, lab, 5, cfg) for lab in ("positive", "negative", "surprise")}
    shape = subject.image.shape[:2]
    kernel = np.ones((5, 5), np.uint8)  # cubic interpolation reaches 2 px beyond the field
    for a, b in (("positive", "negative"), ("negative", "surprise"), ("positive", "surprise")):
        ca, cb = clips[a], clips[b]
        assert (ca.onset, ca.apex, ca.offset, ca.blink) == (cb.onset, cb.apex, cb.offset, cb.blink)
        allowed = cv2.dilate((class_region(subject.landmarks, a, shape) | class_region(subject.landmarks, b, shape)).astype(np.uint8), kernel) > 0
        diff = np.abs(ca.frames.astype(int) - cb.frames.astype(int)).max(axis=3)
        assert diff[:, ~allowed].max() == 0
        apex_diff = diff[ca.apex - 1]
        for lab in (a, b):
            assert apex_diff[class_region(subject.landmarks, lab, shape)].max() >= 5
    # the regions really are local: brows vs mouth do not overlap
    assert not (class_region(subject.landmarks, "positive", shape) & class_region(subject.landmarks, "surprise", shape)).any()


def test_motion_axis_option(subject):
    shape = subject.image.shape[:2]
    lm = subject.landmarks
    left, right = lm[36:42].mean(0), lm[42:48].mean(0)
    x_axis = (right - left) / np.linalg.norm(right - left) * (1 if right[0] > left[0] else -1)
    up = np.array([x_axis[1], -x_axis[0]])
    for label in ("positive", "negative"):
        field = motion_field(lm, label, shape, axis=0.0)
        vecs = field[np.linalg.norm(field, axis=2) > 0.05].reshape(-1, 2)
        assert np.abs(vecs @ up).max() < 1e-5  # purely along the face's horizontal
        field = motion_field(lm, label, shape, axis=90.0)
        vecs = field[np.linalg.norm(field, axis=2) > 0.05].reshape(-1, 2)
        assert np.abs(vecs @ x_axis).max() < 1e-5
        sign = np.sign(vecs @ up)
        assert np.all(sign == (1 if label == "positive" else -1))  # keeps the native up/down sign
    # native AU12 moves up and outwards: measured by flow, the two mouth corners move apart
    cfg = SynthConfig(frames=12, blink=0.0, amplitude=(2.5, 2.5), jitter=0.0)
    clip = render_clip(subject, "positive", 2, cfg)
    f = _flow(clip.frames[clip.onset - 1], clip.frames[clip.apex - 1])
    mid_x = (lm[48, 0] + lm[54, 0]) / 2
    core = np.linalg.norm(clip.field, axis=2) > 0.7 * clip.amplitude
    ys, xs = np.nonzero(core)
    u = f[ys, xs, 0]
    assert np.median(u[xs < mid_x]) < -0.3 and np.median(u[xs > mid_x]) > 0.3
    # with --axis 90 the horizontal part is gone
    clip = render_clip(subject, "positive", 2, SynthConfig(frames=12, blink=0.0, amplitude=(2.5, 2.5), jitter=0.0, axis=90.0))
    f = _flow(clip.frames[clip.onset - 1], clip.frames[clip.apex - 1])
    assert np.abs(np.median(f[ys, xs, 0])) < 0.3 and np.median(-f[ys, xs, 1]) > 0.8


def test_manifest_indexes_cleanly_and_faces_are_detectable(tmp_path, capsys):
    manifest = generate(tmp_path / "set", SynthConfig(**SMALL), progress=False)
    truth = json.loads((manifest.parent / "synth.json").read_text())["clips"]
    rc = cli(["index", "--dataset", "manifest", "--sheet", str(manifest), "-o", str(tmp_path / "samples.csv")])
    assert rc == 0, capsys.readouterr().err
    samples = read_samples(tmp_path / "samples.csv")
    assert len(samples) == 6 and {s.subject for s in samples} == {"sub01", "sub02"}
    assert sorted(s.label for s in samples) == sorted(["positive", "negative", "surprise"] * 2)
    for s in samples:
        t = truth[s.sample_id]
        assert (s.onset, s.apex, s.offset, s.label, s.aus) == (t["onset"], t["apex"], t["offset"], t["label"], t["aus"])
        assert s.apex_source == "sheet" and s.dataset == "synth"
    first = {}
    for s in samples:
        first.setdefault(s.subject, s)
    for s in first.values():  # dlib's HOG detector finds the face at native size
        (frame,) = load_frames(s, [s.onset])
        assert frame.shape == (256, 256, 3)
        lm = face_landmarks(frame, upsample=1)
        assert 60 < np.ptp(lm[:, 0]) < 200


def test_resume_after_an_interrupted_run(tmp_path):
    out = tmp_path / "set"
    generate(out, SynthConfig(**SMALL), progress=False)
    before = _files(out)
    # simulate a kill: summary and one clip missing, a half-written clip left behind
    (out / "synth.json").unlink()
    (out / "manifest.csv").unlink()
    (out / ".synth-params.json").write_text(json.dumps({"key": json.loads(before["synth.json"])["key"]}))
    shutil.rmtree(out / "sub02" / "sub02_002")
    (out / "sub02" / "sub02_002.tmp").mkdir()
    generate(out, SynthConfig(**SMALL), progress=False)
    assert _files(out) == before


def test_cli_synth_reads_a_yaml_config_and_flags_override_it(tmp_path):
    config = tmp_path / "synth.yaml"
    config.write_text("subjects: 2\nper-class: 1\nframes: 9\nclasses: [sadness, disgust]\namplitude: [0.5, 0.7]\naxis: 0\n")
    assert cli(["synth", "-o", str(tmp_path / "set"), "--config", str(config), "--frames", "8", "--apex-at", "0.7,0.8"]) == 0
    info = json.loads((tmp_path / "set" / "synth.json").read_text())
    p = info["params"]
    assert p["apex_at"] == [0.7, 0.8]
    for c in info["clips"].values():  # the apex lies in 0.7..0.8 of onset..offset (rounded to a frame)
        assert 0.7 * (c["offset"] - c["onset"]) - 0.5 <= c["apex"] - c["onset"] <= 0.8 * (c["offset"] - c["onset"]) + 0.5
    assert (p["subjects"], p["per_class"], p["frames"], p["axis"]) == (2, 1, 8, 0)
    assert p["classes"] == ["sadness", "disgust"] and p["amplitude"] == [0.5, 0.7]
    assert all(0.5 <= c["amplitude_px"] <= 0.7 for c in info["clips"].values())
    assert len(list((tmp_path / "set" / "sub01" / "sub01_001").glob("img*.jpg"))) == 8
    bad = tmp_path / "bad.yaml"
    bad.write_text("subject: 3\n")
    assert cli(["synth", "-o", str(tmp_path / "x"), "--config", str(bad)]) == 2


def test_cli_synth_writes_the_set_and_rejects_bad_input(tmp_path, capsys):
    out = tmp_path / "set"
    args = ["synth", "-o", str(out), "--subjects", "2", "--per-class", "1", "--frames", "8", "--classes", "positive,sadness"]
    assert cli(args) == 0
    with open(out / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["label"] for r in rows) == ["positive", "positive", "sadness", "sadness"]
    assert {r["aus"] for r in rows} == {"12", "15"}
    assert cli(args) == 0  # finished set: reused
    capsys.readouterr()
    bad = [
        (["--classes", "happy,surprise"], "unknown class"),
        (["--classes", "surprise"], "at least two"),
        (["--amplitude", "3,1"], "amplitude"),
        (["--amplitude", "a,b"], "--amplitude"),
        (["--apex-at", "0.7,0.3"], "apex_at"),
        (["--apex-at", "x"], "--apex-at"),
        (["--frames", "3"], "frames"),
        (["--subjects", "0"], "subjects"),
    ]
    for extra, message in bad:
        rc = cli(["synth", "-o", str(tmp_path / "bad")] + extra)
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("error:") and message in err, (extra, err)
    rc = cli(args[:-1] + ["positive,negative"])  # same folder, other parameters
    err = capsys.readouterr().err
    assert rc == 1 and "--overwrite" in err
    assert cli(args[:-1] + ["positive,negative", "--overwrite"]) == 0
    other = tmp_path / "notes"
    other.mkdir()
    (other / "thesis.txt").write_text("keep me")
    rc = cli(["synth", "-o", str(other)])
    assert rc == 1 and "not a mertool synth set" in capsys.readouterr().err
    assert (other / "thesis.txt").read_text() == "keep me"
