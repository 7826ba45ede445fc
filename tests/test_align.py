"""mertool align on a real face (scikit-image astronaut) with known motion."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import astronaut_face, write_clip, write_manifest
from mertool.cli.main import cli
from mertool.errors import MertoolError
from mertool.faces import detect_landmarks, eye_centres
from mertool.preprocess.align import align_clip, template_eyes
from mertool.stages.align import AlignConfig, run_align
from mertool.stages.stagefile import open_stage


def _index_and_align(root, manifest, *extra):
    samples = root / "samples.csv"
    assert cli(["index", "--dataset", "manifest", "--sheet", str(manifest), "-o", str(samples)]) == 0
    out = root / "aligned.h5"
    rc = cli(["align", str(samples), "-o", str(out), *extra])
    return rc, samples, out


def test_eye_centres_land_on_template(face_clip):
    rc, _, out = _index_and_align(face_clip["root"], face_clip["manifest"])
    assert rc == 0
    sf = open_stage(out, expect="aligned")
    data = sf.sample("s1_c1")
    assert data["frames"].shape == (6, 224, 224, 3) and data["frames"].dtype == np.uint8
    assert list(data["frame_numbers"]) == [1, 2, 3, 4, 5, 6]
    # Independent check: detect landmarks again on the aligned onset frame.
    redetected, _ = detect_landmarks(data["frames"][0])
    eyes = np.array([redetected[36:42].mean(0), redetected[42:48].mean(0)])
    target = template_eyes(224, AlignConfig().margin)
    assert np.abs(eyes - target).max() < 2.0
    # The stored landmarks are the transformed onset landmarks: their eyes are on the template.
    stored = data["landmarks"]
    assert np.abs(np.array([stored[36:42].mean(0), stored[42:48].mean(0)]) - target).max() < 1e-3


def test_known_translation_survives_alignment(face_clip):
    rc, _, out = _index_and_align(face_clip["root"], face_clip["manifest"])
    assert rc == 0
    data = open_stage(out).sample("s1_c1")
    a = data["transform"][:, :2]
    expected = a @ (np.array(face_clip["step"]) * 5)  # frame 6 vs onset, in aligned pixels
    f0 = cv2.cvtColor(data["frames"][0], cv2.COLOR_RGB2GRAY).astype(np.float32)
    f5 = cv2.cvtColor(data["frames"][5], cv2.COLOR_RGB2GRAY).astype(np.float32)
    # Sub-pixel translation by ECC (an independent estimator), on the centre to avoid borders.
    warp = np.eye(2, 3, dtype=np.float32)
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 200, 1e-6)
    _, warp = cv2.findTransformECC(f5[40:184, 40:184], f0[40:184, 40:184], warp, cv2.MOTION_TRANSLATION, crit, None, 5)
    # ECC gives the warp taking frame-5 coordinates to onset coordinates: minus the motion.
    assert np.abs(-warp[:, 2] - expected).max() < 0.15


def test_align_clip_is_pure_and_grayscale_works():
    face = astronaut_face()
    gray = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
    rgb_from_gray = np.repeat(gray[:, :, None], 3, axis=2)
    result = align_clip([rgb_from_gray, rgb_from_gray], **AlignConfig(size=112).align_options("similarity"))
    assert result["frames"].shape == (2, 112, 112, 3)
    assert np.array_equal(result["frames"][0][..., 0], result["frames"][0][..., 2])


def test_grayscale_files_and_keyframes_mode(tmp_path):
    face = cv2.cvtColor(astronaut_face(), cv2.COLOR_RGB2GRAY)
    write_clip(tmp_path / "g", [face] * 5, first=10, pattern="{:05d}.jpg")
    manifest = write_manifest(
        tmp_path / "m.csv",
        [{"sample_id": "g1", "subject": "s", "frames": "g", "onset": 10, "apex": 12, "offset": 14, "label": "x"}],
    )
    rc, _, out = _index_and_align(tmp_path, manifest, "--frames", "keyframes", "--size", "96")
    assert rc == 0
    data = open_stage(out).sample("g1")
    assert list(data["frame_numbers"]) == [10, 12]
    assert data["frames"].shape == (2, 96, 96, 3)


def test_video_input(tmp_path):
    face = astronaut_face(160)
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 160))
    for _ in range(4):
        writer.write(cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    writer.release()
    manifest = tmp_path / "m.csv"
    manifest.write_text("sample_id,subject,video,onset,apex,offset,label\nv1,s1,clip.avi,1,2,4,happy\n")
    rc, _, out = _index_and_align(tmp_path, manifest)
    assert rc == 0
    assert open_stage(out).sample("v1")["frames"].shape == (4, 224, 224, 3)


def test_no_face_is_listed_and_other_clips_finish(tmp_path, capsys):
    face = astronaut_face()
    write_clip(tmp_path / "ok", [face] * 3)
    write_clip(tmp_path / "blank", [np.full((200, 200, 3), 128, np.uint8)] * 3)
    manifest = write_manifest(
        tmp_path / "m.csv",
        [
            {"sample_id": "ok", "subject": "a", "frames": "ok", "onset": 1, "apex": 2, "offset": 3, "label": "x"},
            {"sample_id": "blank", "subject": "b", "frames": "blank", "onset": 1, "apex": 2, "offset": 3, "label": "y"},
        ],
    )
    rc, _, out = _index_and_align(tmp_path, manifest)
    assert rc == 0
    err = capsys.readouterr().err
    assert "blank" in err and "no face found" in err and "--upsample" in err
    sf = open_stage(out)
    assert sf.sample_ids == ["ok"] and "blank" in sf.failed


def test_two_faces_uses_largest(tmp_path, capsys):
    big = astronaut_face(200)
    small = astronaut_face(110)
    canvas = np.full((240, 360, 3), 90, np.uint8)
    canvas[20:220, 10:210] = big
    canvas[60:170, 240:350] = small
    write_clip(tmp_path / "two", [canvas] * 2)
    manifest = write_manifest(
        tmp_path / "m.csv", [{"sample_id": "two", "subject": "a", "frames": "two", "onset": 1, "apex": 2, "offset": 2, "label": "x"}]
    )
    rc, _, out = _index_and_align(tmp_path, manifest, "--upsample", "1")
    assert rc == 0
    assert "2 faces found, using the largest" in capsys.readouterr().err
    assert open_stage(out).meta["n_faces"] == [2]
    t = open_stage(out).sample("two")["transform"]
    # Map the template's eye midpoint back into the frame: it must fall on the big (left) face.
    mid = template_eyes(224, AlignConfig().margin).mean(0)
    x, y = np.linalg.solve(t[:, :2], mid - t[:, 2])
    assert 10 < x < 210 and 20 < y < 220


def test_preview_contact_sheet(face_clip):
    preview = face_clip["root"] / "preview"
    rc, _, _ = _index_and_align(face_clip["root"], face_clip["manifest"], "--preview", str(preview))
    assert rc == 0
    img = cv2.imread(str(preview / "aligned_contact_sheet.png"))
    assert img is not None and img.shape[0] >= 224 and img.shape[1] >= 2 * 224


@pytest.mark.parametrize("bad", ["zero", "corrupt"])
def test_unreadable_image_names_file(tmp_path, capsys, bad):
    face = astronaut_face()
    folder = write_clip(tmp_path / "c", [face] * 3)
    target = folder / "img001.png"
    target.write_bytes(b"" if bad == "zero" else b"not a png at all")
    manifest = write_manifest(
        tmp_path / "m.csv", [{"sample_id": "c", "subject": "a", "frames": "c", "onset": 1, "apex": 2, "offset": 3, "label": "x"}]
    )
    rc, _, out = _index_and_align(tmp_path, manifest)
    err = capsys.readouterr().err
    assert "img001.png" in err and ("empty" in err if bad == "zero" else "corrupt" in err)
    # the only clip failed: nothing is published, and the error says why
    assert rc == 1 and "no sample could be processed (c: " in err and not out.exists()


def test_bad_config_values(tmp_path, face_clip, capsys):
    samples = tmp_path / "s.csv"
    assert cli(["index", "--dataset", "manifest", "--sheet", str(face_clip["manifest"]), "-o", str(samples)]) == 0
    assert cli(["align", str(samples), "-o", str(tmp_path / "a.h5"), "--detector", "magic"]) == 2
    assert "detector must be hog or cnn" in capsys.readouterr().err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("size: 64\nsharpen: true\n")
    assert cli(["align", str(samples), "-o", str(tmp_path / "a.h5"), "--config", str(cfg)]) == 2
    assert "unknown option(s) sharpen" in capsys.readouterr().err


def test_eye_centres_are_ordered_left_to_right():
    landmarks = np.zeros((68, 2))
    landmarks[36:42] = (80.0, 50.0)  # the subject's right eye, mirrored to the image right
    landmarks[42:48] = (20.0, 52.0)
    np.testing.assert_array_equal(eye_centres(landmarks), [[20.0, 52.0], [80.0, 50.0]])


def test_run_align_library_call(face_clip, tmp_path):
    samples = tmp_path / "s.csv"
    assert cli(["index", "--dataset", "manifest", "--sheet", str(face_clip["manifest"]), "-o", str(samples)]) == 0
    result = run_align(samples, tmp_path / "a.h5", AlignConfig(size=64, frames="keyframes"), progress=False)
    assert (result.done, result.failed, result.up_to_date) == (1, {}, False)
    sf = open_stage(result.path, expect="aligned")
    assert sf.params == AlignConfig(size=64, frames="keyframes").to_dict()
    assert sf.meta["n_faces"] == [1] and sf.meta["apex"] == [4] and sf.meta["apex_source"] == ["sheet"]
    assert [u["path"] for u in sf.upstream()] == [samples.resolve()]
    again = run_align(samples, tmp_path / "a.h5", AlignConfig(size=64, frames="keyframes"), progress=False)
    assert again.up_to_date and again.done == 1
    with pytest.raises(MertoolError, match="size must be within 16..2048, got 5"):
        run_align(samples, tmp_path / "b.h5", AlignConfig(size=5))
    twice = tmp_path / "twice.csv"
    lines = samples.read_text().splitlines()
    twice.write_text("\n".join(lines + lines[1:]) + "\n")
    with pytest.raises(MertoolError, match="'s1_c1' is listed twice"):
        run_align(twice, tmp_path / "c.h5")

