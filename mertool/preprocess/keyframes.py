"""Apex spotting on aligned clips (pure: arrays in, a frame index out).

Apex spotting finds the frame where the face differs most from the onset:

``regions``   mean absolute grey-level difference from the onset inside the eyebrow/eye
              and mouth boxes (from the 68 landmarks), smoothed, argmax;
``lbp``       chi-square distance between uniform-LBP histograms (grid of blocks over the
              landmark box) of each frame and the onset, smoothed, argmax;
``flowpeak``  mean Farneback optical-flow magnitude from the onset in the landmark box,
              smoothed, argmax;
``midpoint``  the middle frame between onset and offset (the trivial baseline).

The stage that repairs samples.csv apexes with these (``mertool keyframes``) is
:mod:`mertool.stages.keyframes`.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np


METHODS = ("regions", "lbp", "flowpeak", "midpoint")
_BROWS_EYES = np.r_[17:27, 36:48]
_MOUTH = np.r_[48:68]


def _gray(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 4:
        frames = frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return frames.astype(np.float32)


def _box(points: np.ndarray, shape: tuple[int, int], pad: float = 0.25) -> tuple[int, int, int, int]:
    """Padded bounding box (y0, y1, x0, x1) of landmark points, clipped to the image."""
    x0, y0 = points.min(0)
    x1, y1 = points.max(0)
    px, py = pad * max(x1 - x0, 4), pad * max(y1 - y0, 4)
    h, w = shape
    box = (int(max(y0 - py, 0)), int(min(y1 + py + 1, h)), int(max(x0 - px, 0)), int(min(x1 + px + 1, w)))
    if box[1] - box[0] < 2 or box[3] - box[2] < 2:
        raise ValueError("landmarks lie outside the aligned frames")
    return box


def region_boxes(landmarks: np.ndarray, shape: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Eyebrows+eyes and mouth boxes (y0, y1, x0, x1) from 68 landmarks (x, y)."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (68, 2):
        raise ValueError(f"expected 68 x 2 landmarks, got {landmarks.shape}")
    return [_box(landmarks[_BROWS_EYES], shape), _box(landmarks[_MOUTH], shape)]


def smooth(curve: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average with edge replication (window 1 = unchanged)."""
    curve = np.asarray(curve, dtype=np.float64)
    window = min(window, len(curve))
    window -= 1 - window % 2  # odd, so the average stays centred
    if window <= 1:
        return curve
    half = window // 2
    padded = np.pad(curve, half, mode="edge")
    return np.convolve(padded, np.ones(window) / window, mode="valid")


def curve_regions(frames: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Per-frame mean |frame - onset| inside the eyebrow/eye and mouth boxes (sum of the two)."""
    gray = _gray(frames)
    out = np.zeros(len(gray))
    for y0, y1, x0, x1 in region_boxes(landmarks, gray.shape[1:]):
        patch = gray[:, y0:y1, x0:x1]
        out += np.abs(patch - patch[0]).mean(axis=(1, 2))
    return out


def _lbp_hists(gray: np.ndarray, box: tuple[int, int, int, int], grid: int) -> np.ndarray:
    from skimage.feature import local_binary_pattern

    y0, y1, x0, x1 = box
    codes = local_binary_pattern(gray[y0:y1, x0:x1], P=8, R=1, method="uniform")  # values 0..9
    hists = []
    for rows in np.array_split(codes, grid, axis=0):
        for block in np.array_split(rows, grid, axis=1):
            h = np.bincount(block.astype(int).ravel(), minlength=10).astype(np.float64)
            hists.append(h / max(h.sum(), 1))
    return np.concatenate(hists)


def curve_lbp(frames: np.ndarray, landmarks: np.ndarray, grid: int = 4) -> np.ndarray:
    """Chi-square distance of each frame's block LBP histograms to the onset's."""
    gray = np.clip(np.rint(_gray(frames)), 0, 255).astype(np.uint8)  # LBP wants integer images
    box = _box(np.asarray(landmarks, dtype=np.float64), gray.shape[1:], pad=0.05)
    ref = _lbp_hists(gray[0], box, grid)
    out = []
    for g in gray:
        h = _lbp_hists(g, box, grid)
        out.append(0.5 * np.sum((h - ref) ** 2 / (h + ref + 1e-10)))
    return np.array(out)


def curve_flowpeak(frames: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Mean Farneback flow magnitude from the onset inside the landmark box."""
    gray = np.clip(_gray(frames), 0, 255).astype(np.uint8)
    y0, y1, x0, x1 = _box(np.asarray(landmarks, dtype=np.float64), gray.shape[1:], pad=0.05)
    out = [0.0]
    for g in gray[1:]:
        flow = cv2.calcOpticalFlowFarneback(gray[0], g, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        out.append(float(np.linalg.norm(flow[y0:y1, x0:x1], axis=-1).mean()))
    return np.array(out)


_CURVES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "regions": curve_regions,
    "lbp": curve_lbp,
    "flowpeak": curve_flowpeak,
}


def spot_apex(frames: np.ndarray, landmarks: np.ndarray | None, method: str = "regions", window: int = 3) -> int:
    """Index (0-based, into ``frames``; frame 0 is the onset) of the estimated apex.

    Parameters
    ----------
    frames : ndarray
        T x H x W (x 3) frames from onset to offset.
    landmarks : ndarray or None
        68 x 2 (x, y) landmarks in the frames' coordinates (unused by ``midpoint``).
    method : {"regions", "lbp", "flowpeak", "midpoint"}
    window : int
        Moving-average window applied to the difference curve.

    Raises
    ------
    ValueError
        Unknown method, window < 1, fewer than 2 frames, missing/bad landmarks.
    """
    if method not in METHODS:
        raise ValueError(f"unknown apex method {method!r}; choose from {', '.join(METHODS)}")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    n = len(frames)
    if n < 2:
        raise ValueError(f"apex spotting needs at least 2 frames, got {n}")
    if method == "midpoint":
        return (n - 1) // 2
    if landmarks is None:
        raise ValueError(f"method {method!r} needs landmarks")
    curve = smooth(_CURVES[method](np.asarray(frames), landmarks), window)
    curve[0] = -np.inf  # the onset itself is never the apex
    return int(np.argmax(curve))
