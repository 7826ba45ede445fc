"""Learning check on real-face synthetic clips, through the whole chain:
index -> align -> flow -> train (offtanet, LOSO) -> report -> predict.

Clips are scikit-image's astronaut face (public domain) with class-specific local
motions placed on dlib landmarks: ``positive`` lifts the mouth corners (AU12),
``surprise`` raises the brows (AU1+2), ``negative`` lowers and draws them together (AU4).
Subjects differ by position, scale, brightness and noise.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import astronaut_face, write_clip, write_manifest
from mertool.cli.main import cli

CLASSES = ("negative", "positive", "surprise")


def _landmarks(face: np.ndarray) -> np.ndarray:
    from mertool.faces import detect_landmarks

    return detect_landmarks(face)[0]


def _motion(lm: np.ndarray, label: str, amp: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """(point, displacement) pairs of a class's local motion."""
    brows_l, brows_r = lm[17:22], lm[22:27]
    if label == "positive":
        return [(lm[48], np.array([-1.0, -1.6]) * amp), (lm[54], np.array([1.0, -1.6]) * amp)]
    if label == "surprise":
        return [(p, np.array([0.0, -2.0]) * amp) for p in np.concatenate([brows_l, brows_r])]
    return [(p, np.array([1.2, 1.2]) * amp) for p in brows_l] + [(p, np.array([-1.2, 1.2]) * amp) for p in brows_r]


def _warp(image: np.ndarray, moves: list[tuple[np.ndarray, np.ndarray]], sigma: float = 7.0) -> np.ndarray:
    """Move image content by Gaussian-weighted displacements around the given points."""
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = np.zeros((h, w), np.float32), np.zeros((h, w), np.float32)
    for (px, py), (mx, my) in moves:
        g = np.exp(-((xx - px) ** 2 + (yy - py) ** 2) / (2 * sigma**2))
        dx = np.where(np.abs(g * mx) > np.abs(dx), g * mx, dx)
        dy = np.where(np.abs(g * my) > np.abs(dy), g * my, dy)
    # backward map: content at p moves to p + d
    return cv2.remap(image, (xx - dx).astype(np.float32), (yy - dy).astype(np.float32), cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def make_clips(root: Path, subjects: int = 6, per_class: int = 3, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    base = astronaut_face(200)
    rows = []
    for s in range(subjects):
        # a "subject": scaled/shifted/brightened version of the face
        scale, shift = rng.uniform(0.92, 1.08), rng.uniform(-6, 6, 2)
        m = cv2.getRotationMatrix2D((100, 100), rng.uniform(-4, 4), scale)
        m[:, 2] += shift
        face = cv2.warpAffine(base, m, (200, 200), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        face = np.clip(face.astype(np.float32) * rng.uniform(0.85, 1.15), 0, 255).astype(np.uint8)
        lm = _landmarks(face)
        for c, label in enumerate(CLASSES):
            for k in range(per_class):
                noise = lambda img: np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8)  # noqa: E731
                apex = _warp(face, _motion(lm, label, rng.uniform(0.8, 1.3)))
                sid = f"s{s + 1}_{label}_{k}"
                write_clip(root / "clips" / sid, [noise(face), noise(apex)])
                rows.append({"sample_id": sid, "subject": f"s{s + 1}", "frames": f"clips/{sid}",
                             "onset": 1, "apex": 2, "offset": 2, "label": label})
    return write_manifest(root / "manifest.csv", rows)


@pytest.mark.slow
def test_offtanet_learns_real_face_motions_under_loso(tmp_path, capsys):
    manifest = make_clips(tmp_path)
    w = str(tmp_path)
    assert cli(["index", "--dataset", "manifest", "--sheet", str(manifest), "-o", f"{w}/samples.csv"]) == 0
    assert cli(["align", f"{w}/samples.csv", "-o", f"{w}/aligned.h5"]) == 0
    assert cli(["flow", f"{w}/aligned.h5", "-o", f"{w}/flow.h5"]) == 0
    run = tmp_path / "runs" / "offtanet"
    args = ["train", f"{w}/flow.h5", "--model", "offtanet", "--epochs", "10", "--batch-size", "16", "-q", "--jobs", "2"]
    assert cli([*args, "-o", str(run)]) == 0, capsys.readouterr().err
    m = json.loads((run / "metrics.json").read_text())
    assert m["n_folds"] == 6 and m["n_samples"] == 54
    assert m["uf1"] > 0.6 and m["uar"] > 0.6, m  # chance is 1/3

    # report
    capsys.readouterr()
    assert cli(["report", str(run)]) == 0
    assert f"{m['uf1']:.4f}" in capsys.readouterr().out

    # predict on a clip folder replays align + flow: equals the ensemble on that clip's cached flow
    from mertool.stages.stagefile import open_stage
    from mertool.predict import predict_inputs

    sf = open_stage(f"{w}/flow.h5")
    row = sf.sample_ids.index("s2_positive_1")
    cached = predict_inputs(run, {"flow": sf.array("flow")[row : row + 1]})[0]
    capsys.readouterr()
    assert cli(["predict", "--run", str(run), "--frames", f"{w}/clips/s2_positive_1", "--onset", "1",
                "--apex", "2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    got = np.array([res["probabilities"][c] for c in CLASSES])
    assert np.allclose(got, cached, atol=1e-4)
    assert res["label"] == CLASSES[int(np.argmax(cached))] and res["models"] == 6

    # --video: the same clip as a (lossy) video file still gets a proper answer
    frames = [cv2.imread(str(p)) for p in sorted((tmp_path / "clips" / "s2_positive_1").iterdir())]
    video = tmp_path / "clip.avi"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (200, 200))
    for f in frames:
        vw.write(f)
    vw.release()
    capsys.readouterr()
    assert cli(["predict", "--run", str(run), "--video", str(video), "--apex", "2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res["probabilities"]) == set(CLASSES) and abs(sum(res["probabilities"].values()) - 1) < 1e-4
    assert (res["onset"], res["apex"]) == (1, 2)
