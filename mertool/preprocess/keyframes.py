"""Apex spotting on aligned clips (pure: arrays in, a frame index out).

Apex spotting finds the frame where the face differs most from the onset:

``flowpeak``  (the default) local motion from the onset: Farneback optical flow from the
              onset to each frame, averaged over blocks of the blink-free eyebrow, nose
              and mouth regions (:func:`mertool.preprocess.spotting.region_blocks`), minus
              the median block's flow (head motion); per frame the mean length of the
              largest third of the block flows (the pooling of ``mertool spot``),
              smoothed, argmax;
``regions``   mean absolute grey-level difference from the onset inside the eyebrow/eye
              and mouth boxes (from the 68 landmarks), smoothed, argmax;
``lbp``       chi-square distance between uniform-LBP histograms (grid of blocks over the
              landmark box) of each frame and the onset, smoothed, argmax;
``midpoint``  the middle frame between onset and offset (the trivial baseline).

``regions`` and ``lbp`` compare grey levels and textures, so head jitter of a fraction
of a pixel and blinks move them as much as a micro-expression does; ``flowpeak`` removes
both (head motion by the median block, blinks by leaving the eyes out).

The stage that repairs samples.csv apexes with these (``mertool keyframes``) is
:mod:`mertool.stages.keyframes`.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from .spotting import region_blocks as spotting_blocks

METHODS = ("flowpeak", "regions", "lbp", "midpoint")
DEFAULT_METHOD = "flowpeak"
FLOW_SIZE = 112  # frames are shrunk to at most this many pixels for flowpeak's flow
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
    """Local motion from the onset (head motion and blinks removed) per frame.

    Farneback flow from the onset to each frame; its mean over each block of the
    eyebrow, nose and mouth regions (:func:`mertool.preprocess.spotting.region_blocks`,
    which keeps clear of the eyelids); minus the median block's (head motion); the mean
    length of the largest third of the blocks' flows (0 at the onset). Frames larger
    than :data:`FLOW_SIZE` are shrunk to it first (area averaging), so the flow's
    15-pixel window covers the same part of the face at any aligned size.
    """
    gray = np.clip(np.rint(_gray(frames)), 0, 255).astype(np.uint8)
    landmarks = np.asarray(landmarks, dtype=np.float64)
    scale = FLOW_SIZE / max(gray.shape[1:])
    if scale < 1:
        gray = np.stack([cv2.resize(g, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for g in gray])
        landmarks = landmarks * scale
    blocks = spotting_blocks(landmarks, gray.shape[1:])
    top = max(1, int(np.ceil(len(blocks) / 3)))
    out = [0.0]
    for g in gray[1:]:
        flow = cv2.calcOpticalFlowFarneback(gray[0], g, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        means = np.array([flow[y0:y1, x0:x1].reshape(-1, 2).mean(axis=0) for y0, y1, x0, x1 in blocks])
        lengths = np.linalg.norm(means - np.median(means, axis=0), axis=1)
        out.append(float(np.sort(lengths)[-top:].mean()))
    return np.array(out)


_CURVES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "regions": curve_regions,
    "lbp": curve_lbp,
    "flowpeak": curve_flowpeak,
}


def spot_apex(frames: np.ndarray, landmarks: np.ndarray | None, method: str = DEFAULT_METHOD, window: int = 3) -> int:
    """Index (0-based, into ``frames``; frame 0 is the onset) of the estimated apex.

    Parameters
    ----------
    frames : ndarray
        T x H x W (x 3) frames from onset to offset.
    landmarks : ndarray or None
        68 x 2 (x, y) landmarks in the frames' coordinates (unused by ``midpoint``).
    method : {"flowpeak", "regions", "lbp", "midpoint"}
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
