import cv2
import numpy as np
import pytest

from conftest import astronaut_face
from mertool.cli.main import cli
from mertool.errors import MertoolError
from mertool import synth
from mertool.preprocess.keyframes import DEFAULT_METHOD, METHODS, smooth, spot_apex
from mertool.samples import Sample, read_samples, write_samples
from mertool.stages.keyframes import KeyframesConfig, SpotError, format_table, needs_repair, repair_apex, run_keyframes
from mertool.stages.stagefile import StageWriter

T, SIZE, PEAKS = 21, 160, (7, 12, 16)


@pytest.fixture(scope="module")
def face_and_landmarks():
    from mertool.faces import detect_landmarks

    face = astronaut_face(SIZE)
    landmarks, _ = detect_landmarks(face)
    return face, landmarks.astype(np.float32)


def deformed_clip(face, landmarks, peak, seed, drift=0.0):
    """Mouth corners pulled up by a smooth Gaussian bump whose amplitude peaks at ``peak``;
    with ``drift``, the whole face also moves right steadily, by ``drift`` px at the last frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    bump = np.zeros_like(xx)
    for corner in landmarks[[48, 54]]:
        bump += np.exp(-((xx - corner[0]) ** 2 + (yy - corner[1]) ** 2) / (2 * 6.0**2))
    frames = []
    for t in range(T):
        amp = 3.0 * np.exp(-((t - peak) ** 2) / (2 * 3.0**2))
        shift = drift * t / (T - 1)
        img = cv2.remap(face, xx - shift, (yy + amp * bump).astype(np.float32), cv2.INTER_CUBIC,
                        borderMode=cv2.BORDER_REFLECT)
        noisy = img.astype(np.float32) + rng.normal(0, 1.5, img.shape)
        frames.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return np.stack(frames)


@pytest.fixture(scope="module")
def aligned(tmp_path_factory, face_and_landmarks):
    face, landmarks = face_and_landmarks
    folder = tmp_path_factory.mktemp("kf")
    path = folder / "aligned.h5"
    writer = StageWriter(path, "aligned", {"size": SIZE, "test": True})
    clips = {}
    for k, peak in enumerate(PEAKS):
        sid = f"c{k}"
        frames = deformed_clip(face, landmarks, peak, k)
        clips[sid] = frames
        writer.add(
            sid,
            {"frames": frames, "frame_numbers": np.arange(101, 101 + T), "landmarks": landmarks,
             "transform": np.eye(2, 3)},
            {"subject": "s1", "label": "happiness", "onset": 101, "apex": 101 + peak, "offset": 100 + T},
        )
    writer.finish([f"c{k}" for k in range(len(PEAKS))], stacked=False)
    return {"path": path, "clips": clips, "landmarks": landmarks, "folder": folder}


@pytest.mark.parametrize("method", ["flowpeak", "regions"])
def test_methods_within_two_frames(aligned, method):
    for k, peak in enumerate(PEAKS):
        idx = spot_apex(aligned["clips"][f"c{k}"], aligned["landmarks"], method)
        assert abs(idx - peak) <= 2, (k, idx, peak)


def test_lbp_finds_the_peak(aligned):
    errors = [abs(spot_apex(aligned["clips"][f"c{k}"], aligned["landmarks"], "lbp") - p) for k, p in enumerate(PEAKS)]
    assert max(errors) <= 3, errors


def test_default_ignores_head_drift(face_and_landmarks):
    # a steady 1.5 px drift of the whole face outgrows the 3 px mouth-corner bump by the
    # last frame: grey-level differences peak there, the head-motion-free flow at the bump
    face, landmarks = face_and_landmarks
    clip = deformed_clip(face, landmarks, 7, 0, drift=1.5)
    assert DEFAULT_METHOD == "flowpeak"
    assert abs(spot_apex(clip, landmarks) - 7) <= 1
    assert spot_apex(clip, landmarks, "regions") >= T - 3
    # the same clip aligned at twice the size: the flow is computed at the same face scale
    big = np.stack([cv2.resize(f, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC) for f in clip])
    assert abs(spot_apex(big, 2 * landmarks) - 7) <= 1


@pytest.mark.parametrize("apex_at", [(0.2, 0.3), (0.7, 0.8)])
def test_default_beats_midpoint_on_asymmetric_clips(apex_at):
    """Built-in clips (real faces, head jitter, blinks, noise) whose apex lies early or late."""
    cfg = synth.SynthConfig(subjects=3, size=128, frames=24, apex_at=apex_at, seed=7)
    cfg.validate()
    found, middle = [], []
    for s in range(cfg.subjects):
        subject = synth.make_subject(s, cfg)
        for k, label in enumerate(cfg.classes):
            clip = synth.render_clip(subject, label, 10 * s + k, cfg)
            span = clip.offset - clip.onset
            assert apex_at[0] - 0.5 / span <= (clip.apex - clip.onset) / span <= apex_at[1] + 0.5 / span
            frames = clip.frames[clip.onset - 1 : clip.offset]
            truth = clip.apex - clip.onset
            found.append(abs(spot_apex(frames, subject.landmarks) - truth))
            middle.append(abs(spot_apex(frames, None, "midpoint") - truth))
    found = np.array(found)
    assert found.mean() < np.mean(middle) and found.mean() <= 1.5 and (found <= 2).mean() >= 0.8, (found, middle)
    assert min(middle) >= 3  # the clips really are asymmetric


def test_synth_apex_option():
    assert "apex_at" not in synth._params(synth.SynthConfig())  # sets made before the option keep their key
    assert synth._params(synth.SynthConfig(apex_at=(0.2, 0.3)))["apex_at"] == (0.2, 0.3)
    with pytest.raises(MertoolError, match="apex_at"):
        synth.SynthConfig(apex_at=(0.5, 1.0)).validate()


def test_evaluation_table_hand_worked():
    # errors 0, 1, 3, 5 frames: mean 2.25, median 2, within 2 frames: 2 of 4
    s = SpotError("flowpeak", [0, 1, 3, 5]).summary(2)
    assert s == {"n": 4, "mean": 2.25, "median": 2.0, "within": 0.5}
    assert np.isnan(SpotError("lbp", []).summary(2)["mean"])
    lines = format_table([SpotError("flowpeak", [0, 1, 3, 5]), SpotError("midpoint", [4, 6])], 2).splitlines()
    assert lines[0].split() == ["method", "clips", "mean", "median", "<=2", "fr"]
    assert lines[1].split() == ["flowpeak", "4", "2.25", "2.0", "50.0%"]
    assert lines[2].split() == ["midpoint", "2", "5.00", "5.0", "0.0%"]


def test_midpoint_smooth_and_needs_repair():
    assert spot_apex(np.zeros((9, 4, 4)), None, "midpoint") == 4
    x = np.array([0, 0, 3, 0, 0, 6, 0], float)
    ref = np.convolve(np.pad(x, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    np.testing.assert_allclose(smooth(x, 3), ref)
    np.testing.assert_allclose(smooth(x, 4), ref)  # even windows become odd
    assert needs_repair(Sample("a", "s", 1, -1, 9, "x", apex_source="missing")) == "missing"
    assert needs_repair(Sample("a", "s", 1, 1, 9, "x")) == "apex == onset"
    assert needs_repair(Sample("a", "s", 1, 12, 9, "x")) == "outside onset..offset"
    assert needs_repair(Sample("a", "s", 1, 5, 9, "x")) == ""
    with pytest.raises(ValueError, match="unknown apex method"):
        spot_apex(np.zeros((3, 4, 4)), None, "peak")
    with pytest.raises(ValueError, match="68 x 2"):
        spot_apex(np.zeros((3, 8, 8)), np.zeros((5, 2)), "regions")


def _samples(path, rows):
    write_samples([Sample(sid, "s1", 101, apex, 100 + T, "happiness", "casme2", apex_source=src) for sid, apex, src in rows], path)
    return path


def test_cli_repairs_and_evaluates(aligned, tmp_path, capsys):
    src = _samples(tmp_path / "samples.csv", [("c0", -1, "missing"), ("c1", 101, "sheet"), ("c2", 101 + PEAKS[2], "sheet"),
                                              ("zz", -1, "missing")])
    out = tmp_path / "out.csv"
    rc = cli(["keyframes", str(src), "--aligned", str(aligned["path"]), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    got = {s.sample_id: s for s in read_samples(out)}
    assert got["c0"].apex_source == "estimated:flowpeak" and abs(got["c0"].apex - 101 - PEAKS[0]) <= 2
    assert got["c1"].apex_source == "estimated:flowpeak" and abs(got["c1"].apex - 101 - PEAKS[1]) <= 2  # apex == onset
    assert (got["c2"].apex, got["c2"].apex_source) == (101 + PEAKS[2], "sheet")
    assert got["zz"].apex_source == "estimated:midpoint" and got["zz"].apex == (101 + 100 + T + 1) // 2
    assert "zz (not in the aligned file)" in err

    rows = [(f"c{k}", 101 + p, "sheet") for k, p in enumerate(PEAKS)]
    src = _samples(tmp_path / "sheet.csv", rows)
    rc = cli(["keyframes", str(src), "--aligned", str(aligned["path"]), "--evaluate", "--within", "2"])
    table = capsys.readouterr().out
    assert rc == 0
    lines = {line.split()[0]: line.split() for line in table.splitlines()[1:]}
    assert list(lines) == list(METHODS)
    for method in ("flowpeak", "regions"):
        assert lines[method][1] == "3" and float(lines[method][2]) <= 2 and lines[method][4] == "100.0%"
    mid_err = np.mean([abs(10 - p) for p in PEAKS])
    assert float(lines["midpoint"][2]) == pytest.approx(mid_err, abs=0.01)


def test_cli_bad_input(aligned, tmp_path, capsys):
    src = _samples(tmp_path / "s.csv", [("c0", -1, "missing")])
    assert cli(["keyframes", str(src), "--aligned", str(aligned["path"]), "-o", str(tmp_path / "o.csv"), "--method", "peak"]) == 2
    assert "unknown apex method" in capsys.readouterr().err
    assert cli(["keyframes", str(src), "-o", str(tmp_path / "o.csv")]) == 2
    assert "needs aligned" in capsys.readouterr().err
    assert cli(["keyframes", str(src), "--aligned", str(tmp_path / "none.h5"), "-o", str(tmp_path / "o.csv")]) == 1
    assert "file not found" in capsys.readouterr().err
    other = StageWriter(tmp_path / "flow.h5", "flow", {})
    other.add("c0", {"flow": np.zeros((3, 4, 4), np.float32)}, {})
    other.finish(["c0"], stacked=True)
    assert cli(["keyframes", str(src), "--aligned", str(tmp_path / "flow.h5"), "-o", str(tmp_path / "o.csv")]) == 1
    assert "expected 'aligned'" in capsys.readouterr().err
    assert cli(["keyframes", str(src), "--aligned", str(aligned["path"])]) == 2
    assert "give out" in capsys.readouterr().err
    # midpoint needs no aligned file
    assert cli(["keyframes", str(src), "--method", "midpoint", "-o", str(tmp_path / "m.csv")]) == 0
    assert read_samples(tmp_path / "m.csv")[0].apex_source == "estimated:midpoint"


def test_library_call_falls_back_per_clip_and_reports(aligned, tmp_path):
    # c0 has two aligned frames only, c2 none: neither can be spotted, both get the midpoint
    src = _samples(tmp_path / "s.csv", [("c0", -1, "missing"), ("c2", 101 + PEAKS[2], "sheet")])
    short = tmp_path / "short.h5"
    writer = StageWriter(short, "aligned", {"size": SIZE, "test": "short"})
    clip = aligned["clips"]["c0"]
    writer.add("c0", {"frames": clip[:2], "frame_numbers": np.array([101, 102]), "landmarks": aligned["landmarks"],
                      "transform": np.eye(2, 3)}, {"subject": "s1", "label": "happiness"})
    writer.finish(["c0"], stacked=False)
    result = run_keyframes(src, tmp_path / "o.csv", KeyframesConfig(respot=True), aligned=short)
    assert result.repaired == {"c0": "requested", "c2": "requested"}
    assert "holds only frames [101, 102]" in result.fallback["c0"] and result.fallback["c2"] == "not in the aligned file"
    assert [s.apex_source for s in read_samples(result.path)] == ["estimated:midpoint"] * 2
    assert result.summary() == f"{result.path}: 2 apex(es) estimated, 0 kept from the sheet"
    with pytest.raises(MertoolError, match="smooth must be >= 1, got 0"):
        repair_apex(read_samples(src), aligned["path"], KeyframesConfig(smooth=0))
    with pytest.raises(MertoolError, match="no clip with a sheet apex found"):
        run_keyframes(src, aligned=short, evaluate=True)
