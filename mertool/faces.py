"""dlib faces: the one loader of the detectors and the 68-point landmark model, face
choice, landmarks and eye centres (used by ``mertool align`` and the synthetic data).

The model files come from the face-recognition-models package, found with
:func:`importlib.util.find_spec` (importing it needs ``pkg_resources``; finding it does
not). Nothing is downloaded.

When a frame shows several faces, the one with the largest box is used (ties: the more
confident detection, then the first found). A micro-expression clip films its subject
close to the camera, so the largest face is the subject; the rule is deterministic and
the same for every caller, which also reports how many faces were found.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MertoolError

DETECTORS = ("hog", "cnn")
LEFT_EYE = slice(36, 42)  # the subject's right eye: image-left on an unmirrored face
RIGHT_EYE = slice(42, 48)


def model_file(name: str) -> str:
    """Path of a dlib model file shipped by face-recognition-models.

    Raises
    ------
    MertoolError
        The package (or the file) is not installed: an environment problem, not a frame's.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MertoolError("the face-recognition-models package is not installed (pip install face-recognition-models)")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise MertoolError(f"{path}: dlib model file missing from face-recognition-models")
    return str(path)


@lru_cache(maxsize=None)
def face_detector(kind: str = "hog") -> Any:
    """dlib's HOG frontal detector (``hog``) or its CNN (MMOD) detector (``cnn``), loaded once."""
    import dlib

    if kind not in DETECTORS:
        raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, got {kind!r}")
    if kind == "cnn":
        return dlib.cnn_face_detection_model_v1(model_file("mmod_human_face_detector.dat"))
    return dlib.get_frontal_face_detector()


@lru_cache(maxsize=None)
def landmark_model() -> Any:
    """dlib's 68-point landmark model, loaded once."""
    import dlib

    return dlib.shape_predictor(model_file("shape_predictor_68_face_landmarks.dat"))


def detect_faces(image: np.ndarray, kind: str = "hog", upsample: int = 1) -> list[tuple[Any, float]]:
    """Every face dlib finds: ``[(rectangle, confidence), ...]`` in detection order."""
    image = np.ascontiguousarray(image)
    if kind == "cnn":
        return [(d.rect, float(d.confidence)) for d in face_detector("cnn")(image, upsample)]
    rects, scores, _ = face_detector(kind).run(image, upsample, 0.0)  # 0.0: dlib's default threshold
    return list(zip(rects, map(float, scores)))


def detect_landmarks(image: np.ndarray, detector: str = "hog", upsample: int = 1) -> tuple[np.ndarray, int]:
    """68 landmarks of the chosen face (the largest; see the module docstring).

    Parameters
    ----------
    image : ndarray
        RGB (or grey) uint8 image.
    detector : {"hog", "cnn"}
    upsample : int
        Times dlib upsamples the image before detection (finds smaller faces).

    Returns
    -------
    landmarks : ndarray
        68 x 2 float64 (x, y) in image pixels.
    n_faces : int
        How many faces were found.

    Raises
    ------
    LookupError
        No face found.
    ValueError
        Unknown detector.
    """
    import dlib

    faces = detect_faces(image, detector, upsample)
    if not faces:
        raise LookupError("no face found")
    rect, _ = max(faces, key=lambda f: (f[0].width() * f[0].height(), f[1]))
    box = dlib.rectangle(rect.left(), rect.top(), rect.right(), rect.bottom())
    shape = landmark_model()(np.ascontiguousarray(image), box)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64), len(faces)


def eye_centres(landmarks: np.ndarray) -> np.ndarray:
    """Centres of the two eyes (2 x 2: x, y), the image-left one first.

    Ordered by position rather than by landmark index, so a mirrored face gives the same
    order; on an upright, unmirrored face this is eye 36-41 then eye 42-47.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    a, b = lm[LEFT_EYE].mean(axis=0), lm[RIGHT_EYE].mean(axis=0)
    return np.array([a, b] if a[0] <= b[0] else [b, a])
