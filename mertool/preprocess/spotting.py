"""Micro-expression spotting in long videos (pure: arrays in, curves and intervals out).

Per-frame features in landmark regions (:func:`region_blocks`: eyebrows, eyes, nose,
mouth, each cut into blocks of about a quarter of the inter-ocular distance):

``lbp``   block histograms of uniform rotation-invariant LBP codes (8 neighbours on a
          circle of radius 1, as :func:`skimage.feature.local_binary_pattern` with
          ``method="uniform"``; :func:`lbp_codes`);
``flow``  block means of the optical flow (OpenCV DIS) from the previous frame; their
          running sum is each block's path, minus the median block's (head motion).

Regions keep :data:`_LID_CLEARANCE` inter-ocular distances clear of the upper eyelids
(the eyebrows above, the nose below), so blinks stay out; the default regions leave out
the eyes.

Feature difference (the classic scheme of Moilanen et al., ICPR 2014, used by the MEGC
spotting baselines), with a window of ``k`` frames, about half the expected expression
length: each frame ``t`` is compared with the average of the frames ``k`` before and
after it (:func:`difference_curve`; chi-square distance for LBP, displacement for flow),
so a change that comes and goes within ``2k`` frames stands out while slow drift and
steady ramps cancel. Per frame, the mean of the largest third of the block differences.

Contrast and threshold (:func:`contrast`, :func:`threshold`): ``C(t) = F(t) -
(F(t - k) + F(t + k)) / 2``, clipped at 0; peaks of ``C`` at least ``k`` frames apart that
clear ``z`` robust standard deviations of the noise of ``F`` (from the spread of ``F``
below its median, which expressions never reach: a video with a strong expression does not
raise the bar for the others).

Intervals (:func:`spot`): a micro pass (``k`` = half the expected micro-expression) and a
macro pass (a longer window). A micro peak is kept when the expression has come and gone
(:func:`returns`: the face ``k`` frames after it is no farther from where it was ``k``
frames before than the peak is from both, :data:`RETURN`) and it does not fall inside a
macro interval; a macro peak when its contrast stays above half height for more than half
its window (shorter ones are micro-expressions). Intervals are ``[peak - k, peak + k]``
clipped to the video, each type through non-maximum suppression (:func:`nms`); the type
is micro for at most :data:`MICRO_SECONDS` (:func:`kind_of`).

Evaluation (MEGC spotting track): a spotted interval is a true positive when its IoU
(:func:`iou`, frames inclusive) with a ground-truth interval of its type is at least 0.5,
each interval matched at most once (:func:`match`: highest IoU first; the types are matched
separately, :func:`count_video`); :func:`evaluate` counts TP/FP/FN per video, per subject,
per type and overall (the sums over the types).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import cv2
import numpy as np

METHODS = ("lbp", "flow")
REGIONS = ("brows", "eyes", "nose", "mouth")
DEFAULT_REGIONS = ("brows", "nose", "mouth")
MICRO_SECONDS = 0.5  # longest micro-expression (MEGC)
RETURN = 1.0  # a micro-expression has come and gone: returns() at most this times its peak difference
LBP_BINS = 10  # uniform rotation-invariant codes for 8 neighbours: 0..8 uniform, 9 the rest

# landmark indices (dlib 68) and padding (fractions of the inter-ocular distance, IOD):
# (points, pad left/right, pad above, pad below)
_REGION_POINTS = {
    "brows": (np.r_[17:27], 0.1, 0.3, 0.05),
    "eyes": (np.r_[36:48], 0.15, 0.1, 0.15),
    "nose": (np.r_[27:36], 0.1, 0.0, 0.1),
    "mouth": (np.r_[48:68], 0.2, 0.15, 0.2),
}
_UPPER_LIDS = np.r_[37, 38, 43, 44]
_LID_CLEARANCE = 0.35  # IOD between the upper eyelids and the eyebrow (above) and nose (below) regions


# --------------------------------------------------------------------------- regions


def _iod(landmarks: np.ndarray) -> float:
    left, right = landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0)
    return float(np.linalg.norm(right - left))


def region_blocks(
    landmarks: np.ndarray, shape: tuple[int, int], *, regions: Sequence[str] = DEFAULT_REGIONS, block: float = 0.25
) -> np.ndarray:
    """The blocks features are pooled over: each region's landmark box, padded, cut into a grid.

    Parameters
    ----------
    landmarks : ndarray
        68 x 2 (x, y) landmarks in the frames' coordinates.
    shape : (int, int)
        Frame height and width.
    regions : sequence of str
        From :data:`REGIONS`.
    block : float
        Block side as a fraction of the inter-ocular distance.

    Returns
    -------
    ndarray
        B x 4 int (y0, y1, x0, x1), rows and columns ``y0..y1-1``, ``x0..x1-1``; blocks of
        one region do not overlap (boxes of different regions may).

    Raises
    ------
    ValueError
        Bad landmarks or region names, or a region outside the frame.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2) or not np.isfinite(lm).all():
        raise ValueError(f"expected 68 x 2 finite landmarks, got {lm.shape}")
    unknown = [r for r in regions if r not in REGIONS]
    if unknown or not regions:
        raise ValueError(f"unknown region(s) {unknown}; choose from {', '.join(REGIONS)}")
    iod = _iod(lm)
    h, w = shape
    side = max(block * iod, 4.0)
    out = []
    for name in regions:
        points, pad_x, pad_up, pad_down = _REGION_POINTS[name]
        (x0, y0), (x1, y1) = lm[points].min(axis=0), lm[points].max(axis=0)
        y0, y1 = y0 - pad_up * iod, y1 + pad_down * iod
        if name == "brows":  # keep clear of the upper eyelids: blinks stay out
            y1 = min(y1, lm[_UPPER_LIDS, 1].min() - _LID_CLEARANCE * iod)
        elif name == "nose":
            y0 = max(y0, lm[_UPPER_LIDS, 1].max() + _LID_CLEARANCE * iod)
        y0, y1 = max(int(round(y0)), 1), min(int(round(y1)), h - 1)
        x0, x1 = max(int(round(x0 - pad_x * iod)), 1), min(int(round(x1 + pad_x * iod)), w - 1)
        if y1 - y0 < 4 or x1 - x0 < 4:
            raise ValueError(f"region {name} lies outside the {w}x{h} frames")
        rows = np.linspace(y0, y1, max(1, int(round((y1 - y0) / side))) + 1).round().astype(int)
        cols = np.linspace(x0, x1, max(1, int(round((x1 - x0) / side))) + 1).round().astype(int)
        out += [(a, b, c, d) for a, b in zip(rows[:-1], rows[1:]) for c, d in zip(cols[:-1], cols[1:])]
    return np.array(out, dtype=np.int64)


# --------------------------------------------------------------------------- features

# The 8 sampling points on the circle of radius 1, (row, column) offsets: skimage rounds
# them to 5 decimals, so a diagonal sample is the bilinear mix of its 2 x 2 pixels with
# weights 0.70711^2 (corner), 0.70711 * 0.29289 (the two side pixels), 0.29289^2 (centre).
_NEIGHBOURS = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))
_NEAR, _FAR = 70711, 29289  # 0.70711 and 1 - 0.70711, times 10^5
# uniform rotation-invariant code of each 8-bit pattern: number of ones if at most two
# 0/1 transitions around the circle, else 9
_UNIFORM = np.array(
    [bin(p).count("1") if bin(p ^ ((p >> 1) | ((p & 1) << 7))).count("1") <= 2 else 9 for p in range(256)],
    dtype=np.uint8,
)


def lbp_codes(gray: np.ndarray) -> np.ndarray:
    """Uniform rotation-invariant LBP codes (0..9) of T x H x W grey frames, per pixel.

    The codes of ``skimage.feature.local_binary_pattern(frame, 8, 1, "uniform")`` (zeros
    outside the frame), decided in exact integer arithmetic: a diagonal sample minus the
    centre is ``0.70711 * (0.70711 a + 0.29289 (b + c))`` with ``a`` the corner's and
    ``b``, ``c`` the side pixels' differences from the centre, so its sign is that of
    ``70711 a + 29289 (b + c)``. skimage decides the same in floating point, which can
    differ only where that sum is exactly 0 (then this counts the sample as >= centre).
    """
    gray = np.asarray(gray)
    if gray.ndim != 3:
        raise ValueError(f"expected T x H x W grey frames, got shape {gray.shape}")
    t, h, w = gray.shape
    g = np.pad(gray.astype(np.int32), ((0, 0), (1, 1), (1, 1)))

    def at(dy: int, dx: int) -> np.ndarray:
        return g[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    centre = at(0, 0)
    pattern = np.zeros((t, h, w), dtype=np.uint8)
    for bit, (dy, dx) in enumerate(_NEIGHBOURS):
        if dy and dx:
            corner = at(dy, dx) - centre
            sides = at(dy, 0) + at(0, dx) - 2 * centre
            on = _NEAR * corner + _FAR * sides >= 0
        else:
            on = at(dy, dx) >= centre
        pattern |= on.view(np.uint8) << bit
    return _UNIFORM[pattern]


def _block_index(blocks: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(pixel flat indices, block of each) for every block pixel."""
    pix, owner = [], []
    w = shape[1]
    for b, (y0, y1, x0, x1) in enumerate(blocks):
        ys, xs = np.mgrid[y0:y1, x0:x1]
        pix.append((ys * w + xs).ravel())
        owner.append(np.full(ys.size, b))
    return np.concatenate(pix), np.concatenate(owner)


def lbp_features(gray: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """Normalised LBP histograms of each block of each frame: T x B x :data:`LBP_BINS` float32."""
    gray = np.asarray(gray)
    y0, x0 = blocks[:, 0].min(), blocks[:, 2].min()
    y1, x1 = blocks[:, 1].max(), blocks[:, 3].max()
    # codes of the blocks' bounding box only (one pixel of context around it)
    ty0, tx0 = max(y0 - 1, 0), max(x0 - 1, 0)
    codes = lbp_codes(gray[:, ty0 : y1 + 1, tx0 : x1 + 1])
    local = blocks - np.array([ty0, ty0, tx0, tx0])
    pix, owner = _block_index(local, codes.shape[1:])
    t = len(codes)
    flat = codes.reshape(t, -1)[:, pix].astype(np.int64) + owner * LBP_BINS
    flat += (np.arange(t) * len(blocks) * LBP_BINS)[:, None]
    counts = np.bincount(flat.ravel(), minlength=t * len(blocks) * LBP_BINS).reshape(t, len(blocks), LBP_BINS)
    sizes = np.bincount(owner, minlength=len(blocks)).astype(np.float32)
    return (counts / sizes[None, :, None]).astype(np.float32)


def flow_features(gray: np.ndarray, blocks: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
    """Block means of the optical flow from each frame's predecessor: T x B x 2 float32 (dx, dy).

    The flow is OpenCV's DIS (dense inverse search, ``ultrafast`` preset: about 1 ms for
    224 x 224 on one core). ``previous`` is the frame before ``gray[0]`` (for chunks of a
    long video); without it the first frame's flow is zero.
    """
    gray = np.asarray(gray)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
    prev = gray[0] if previous is None else np.asarray(previous)
    out = np.zeros((len(gray), len(blocks), 2), np.float32)
    pix, owner = _block_index(blocks, gray.shape[1:])
    sizes = np.bincount(owner, minlength=len(blocks))
    for i, frame in enumerate(gray):
        if i or previous is not None:
            flow = dis.calc(prev, frame, None).reshape(-1, 2)[pix]
            for c in range(2):
                out[i, :, c] = np.bincount(owner, weights=flow[:, c], minlength=len(blocks)) / sizes
        prev = frame
    return out


# --------------------------------------------------------------------------- curves


def _shifted(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(n)
    return np.clip(t - k, 0, n - 1), np.clip(t + k, 0, n - 1)


def _signal(features: np.ndarray, method: str) -> np.ndarray:
    """What frames are compared by: LBP histograms, or each block's flow path (running sum)
    minus the median block's (head motion)."""
    if method not in METHODS:
        raise ValueError(f"unknown spotting method {method!r}; choose from {', '.join(METHODS)}")
    feats = np.asarray(features, dtype=np.float64)
    if method == "lbp":
        return feats
    path = np.cumsum(feats, axis=0)
    return path - np.median(path, axis=1, keepdims=True)


def _distance(a: np.ndarray, b: np.ndarray, method: str) -> np.ndarray:
    """Per frame, the mean of the largest third of the block distances between ``a`` and
    ``b`` (N x B x D): chi-square for LBP histograms, Euclidean for flow paths."""
    if method == "lbp":
        diff = ((a - b) ** 2 / (a + b + 1e-10)).sum(axis=2)
    else:
        diff = np.linalg.norm(a - b, axis=2)
    top = max(1, int(np.ceil(diff.shape[1] / 3)))
    return np.sort(diff, axis=1)[:, -top:].mean(axis=1)


def difference_curve(features: np.ndarray, k: int, method: str = "flow") -> np.ndarray:
    """Feature difference ``F(t)`` of each frame with the average of frames ``t - k`` and
    ``t + k`` (clamped to the video): the mean of the largest third of its block differences.

    Parameters
    ----------
    features : ndarray
        T x B x D per-frame block features (:func:`lbp_features` or :func:`flow_features`).
    k : int
        Window (frames), >= 1.
    method : {"flow", "lbp"}
        ``lbp``: chi-square distance of histograms; ``flow``: length of the displacement
        of each block's path (running sum of its flow, minus the median block's).

    Raises
    ------
    ValueError
        Unknown method, k < 1, or fewer than ``2k + 1`` frames.
    """
    signal = _signal(features, method)
    n = len(signal)
    if k < 1 or n < 2 * k + 1:
        raise ValueError(f"a window of {k} frames needs at least {2 * k + 1} frames, got {n}")
    before, after = _shifted(n, k)
    return _distance(signal, 0.5 * (signal[before] + signal[after]), method)


def returns(features: np.ndarray, peaks: np.ndarray, w: int, method: str = "flow") -> np.ndarray:
    """How far the face is, at ``w`` frames after each peak, from where it was ``w`` frames
    before it (the distance of :func:`difference_curve`): small when the change came and
    went, large at the start or end of a longer expression."""
    signal = _signal(features, method)
    n = len(signal)
    peaks = np.asarray(peaks, dtype=np.int64)
    return _distance(signal[np.clip(peaks - w, 0, n - 1)], signal[np.clip(peaks + w, 0, n - 1)], method)


def contrast(curve: np.ndarray, k: int) -> np.ndarray:
    """``C(t) = F(t) - (F(t - k) + F(t + k)) / 2``, clipped at 0 (indices clamped)."""
    curve = np.asarray(curve, dtype=np.float64)
    before, after = _shifted(len(curve), k)
    return np.maximum(curve - 0.5 * (curve[before] + curve[after]), 0.0)


def threshold(curve: np.ndarray, z: float) -> float:
    """``z`` robust standard deviations of a difference curve's noise: ``z * 1.4826 *`` the
    median distance below the median. Only the lower half counts, since expressions (up to
    half the video) only ever raise the curve."""
    values = np.asarray(curve, dtype=np.float64)
    med = float(np.median(values))
    return z * 1.4826 * float(np.median(med - values[values <= med]))


def find_peaks(values: np.ndarray, level: float, distance: int) -> np.ndarray:
    """Indices of local maxima above ``level``, greedily highest first, at least
    ``distance`` frames apart; in time order."""
    v = np.asarray(values, dtype=np.float64)
    left = np.r_[-np.inf, v[:-1]]
    right = np.r_[v[1:], -np.inf]
    candidates = np.flatnonzero((v > level) & (v >= left) & (v > right))
    kept: list[int] = []
    for i in candidates[np.argsort(-v[candidates], kind="stable")]:
        if all(abs(int(i) - j) >= distance for j in kept):
            kept.append(int(i))
    return np.array(sorted(kept), dtype=np.int64)


# --------------------------------------------------------------------------- intervals


@dataclasses.dataclass(frozen=True)
class Interval:
    """A spotted (or true) expression: frame indices ``onset..offset`` (inclusive), its
    ``apex``, ``score`` (contrast over threshold) and ``kind`` (micro | macro)."""

    onset: int
    apex: int
    offset: int
    score: float = 0.0
    kind: str = ""


def kind_of(length: int, fps: float) -> str:
    """``micro`` when ``length`` frames last at most :data:`MICRO_SECONDS`, else ``macro``."""
    return "micro" if length <= MICRO_SECONDS * fps + 1e-9 else "macro"


def half_width(values: np.ndarray, peak: int) -> int:
    """Frames of the run around ``peak`` where ``values`` stay at or above half its height."""
    v = np.asarray(values, dtype=np.float64)
    half = v[peak] / 2
    left = right = peak
    while left > 0 and v[left - 1] >= half:
        left -= 1
    while right < len(v) - 1 and v[right + 1] >= half:
        right += 1
    return right - left + 1


def spot_pass(curve: np.ndarray, k: int, z: float) -> tuple[list[tuple[int, float, int]], np.ndarray, float]:
    """One window's candidates: contrast, threshold, peaks at least ``k`` apart.

    Returns
    -------
    peaks : list of (frame index, score, half width)
        ``score`` is the peak's contrast over the threshold; the half width is the
        :func:`half_width` of the contrast peak.
    contrast : ndarray
    level : float
        The threshold.
    """
    c = contrast(curve, k)
    level = threshold(curve, z)
    scale = level if level > 0 else max(float(c.max()), 1e-12)
    return [(int(p), float(c[p] / scale), half_width(c, int(p))) for p in find_peaks(c, level, k)], c, level


def nms(intervals: Iterable[Interval], overlap: float = 0.0) -> list[Interval]:
    """Non-maximum suppression: highest score first, drop an interval whose IoU with a kept
    one exceeds ``overlap`` (0: any shared frame); in time order."""
    kept: list[Interval] = []
    for cand in sorted(intervals, key=lambda iv: -iv.score):
        if all(iou((cand.onset, cand.offset), (k.onset, k.offset)) <= overlap for k in kept):
            kept.append(cand)
    return sorted(kept, key=lambda iv: iv.onset)


def spot(
    features: np.ndarray,
    *,
    fps: float,
    method: str = "flow",
    micro_window: float,
    macro_window: float,
    z: float,
) -> tuple[list[Interval], dict[str, np.ndarray]]:
    """Spot micro- and macro-expressions in one video's per-frame features.

    The micro pass (half window ``k = micro_window * fps``) gives ``[peak - k, peak +
    k]`` intervals. The macro pass (``K = macro_window * fps``) keeps the peaks whose
    contrast stays above half height for more than ``K / 2`` frames (shorter ones are
    micro-expressions, which the micro pass spots) as ``[peak - K, peak + K]``; a micro
    interval whose apex falls inside a macro interval is dropped. Each type then goes
    through :func:`nms`. Intervals are clipped to the video.

    Parameters
    ----------
    features : ndarray
        T x B x D per-frame block features.
    fps : float
        Frame rate of the features.
    method : {"flow", "lbp"}
    micro_window, macro_window : float
        Half windows in seconds (``macro_window`` 0 skips the macro pass, as does a
        video too short for it).
    z : float
        Threshold: robust standard deviations above the median contrast.

    Returns
    -------
    intervals : list of Interval
        Frame indices (0-based), in time order.
    curves : dict
        Per pass run (``micro``, ``macro``): the feature difference under the pass's name,
        its contrast as ``<pass>_contrast`` and threshold as ``<pass>_level`` (1 element).

    Raises
    ------
    ValueError
        Fewer frames than the micro window needs, bad windows or fps.
    """
    if fps <= 0 or micro_window <= 0 or macro_window < 0:
        raise ValueError(f"need fps > 0, micro_window > 0, macro_window >= 0 (got {fps}, {micro_window}, {macro_window})")
    n = len(features)
    k = max(1, int(round(micro_window * fps)))
    big = max(k + 1, int(round(macro_window * fps)))
    curves: dict[str, np.ndarray] = {}
    found: dict[str, list[Interval]] = {"micro": [], "macro": []}
    for kind, window in (("macro", big), ("micro", k)):
        if kind == "macro" and (macro_window == 0 or n < 2 * big + 1):
            continue
        curve = difference_curve(features, window, method)
        peaks, c, level = spot_pass(curve, window, z)
        curves.update({kind: curve, f"{kind}_contrast": c, f"{kind}_level": np.array([level])})
        at = np.array([p for p, _, _ in peaks], dtype=np.int64)
        back = returns(features, at, window, method) / np.maximum(curve[at], 1e-12) if kind == "micro" else None
        for i, (p, score, width) in enumerate(peaks):
            onset, offset = max(p - window, 0), min(p + window, n - 1)
            if kind == "macro":
                keep = width > window / 2
            else:
                keep = back[i] <= RETURN and not any(m.onset <= p <= m.offset for m in found["macro"])
            if keep:
                found[kind].append(Interval(onset, p, offset, score, kind_of(offset - onset + 1, fps)))
    return sorted(nms(found["macro"]) + nms(found["micro"]), key=lambda iv: iv.onset), curves


# --------------------------------------------------------------------------- evaluation


def iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Intersection over union of two frame intervals ``(onset, offset)``, frames inclusive."""
    inter = min(a[1], b[1]) - max(a[0], b[0]) + 1
    if inter <= 0:
        return 0.0
    return inter / ((a[1] - a[0] + 1) + (b[1] - b[0] + 1) - inter)


def match(spotted: Sequence[tuple[int, int]], truth: Sequence[tuple[int, int]], level: float = 0.5) -> list[tuple[int, int]]:
    """Pairs ``(spotted index, truth index)`` with IoU >= ``level``, each interval used at
    most once, highest IoU first (ties: earlier truth, then earlier spot)."""
    pairs = [
        (iou(s, t), i, j) for i, s in enumerate(spotted) for j, t in enumerate(truth) if iou(s, t) >= level
    ]
    used_s: set[int] = set()
    used_t: set[int] = set()
    out = []
    for _, i, j in sorted(pairs, key=lambda p: (-p[0], p[2], p[1])):
        if i not in used_s and j not in used_t:
            used_s.add(i)
            used_t.add(j)
            out.append((i, j))
    return sorted(out)


@dataclasses.dataclass
class Counts:
    """True positives, false positives and false negatives, with the derived scores."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp + self.fp + self.fn else 0.0


def count_video(
    spotted: Sequence[tuple[int, int, str]], truth: Sequence[tuple[int, int, str]], level: float = 0.5
) -> dict[str, Counts]:
    """TP/FP/FN of one video per type: spots and truths ``(onset, offset, kind)`` of each
    kind are matched among themselves (a spot of the wrong type is an FP and its
    expression an FN)."""
    out = {}
    for kind in ("micro", "macro"):
        s = [(a, b) for a, b, k in spotted if k == kind]
        t = [(a, b) for a, b, k in truth if k == kind]
        tp = len(match(s, t, level))
        out[kind] = Counts(tp, len(s) - tp, len(t) - tp)
    return out


def evaluate(
    videos: dict[str, tuple[str, Sequence[tuple[int, int, str]], Sequence[tuple[int, int, str]]]], level: float = 0.5
) -> list[dict]:
    """MEGC-style scores per video, per subject, per type and overall.

    Parameters
    ----------
    videos : dict
        video -> (subject, spotted, truth), intervals ``(onset, offset, kind)``.
    level : float
        IoU a true positive needs.

    Returns
    -------
    list of dict
        Rows ``{"scope": overall | type | subject | video, "name", "type": all | micro |
        macro, "tp", "fp", "fn", "precision", "recall", "f1"}``: overall (all, micro,
        macro), then each subject and each video (all, micro, macro).
    """
    per_video = {v: count_video(spotted, truth, level) for v, (_, spotted, truth) in videos.items()}
    groups: dict[tuple[str, str], dict[str, Counts]] = {}

    def add(scope: str, name: str, counts: dict[str, Counts]) -> None:
        slot = groups.setdefault((scope, name), {"micro": Counts(), "macro": Counts()})
        for kind in ("micro", "macro"):
            slot[kind] = slot[kind] + counts[kind]

    for v, counts in per_video.items():
        add("overall", "all", counts)
        add("subject", videos[v][0], counts)
        add("video", v, counts)
    order = {"overall": 0, "subject": 1, "video": 2}
    rows = []
    for (scope, name), counts in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        for kind, c in (("all", counts["micro"] + counts["macro"]), ("micro", counts["micro"]), ("macro", counts["macro"])):
            rows.append({"scope": scope, "name": name, "type": kind, "tp": c.tp, "fp": c.fp, "fn": c.fn,
                         "precision": round(c.precision, 4), "recall": round(c.recall, 4), "f1": round(c.f1, 4)})
    return rows
