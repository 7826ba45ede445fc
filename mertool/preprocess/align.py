"""Face alignment (pure): one similarity transform per clip, found on its onset frame.

The transform maps the two eye centres of the onset frame exactly onto the template's
eye positions (rotation, uniform scale, translation). Using one transform for the whole
clip matters: re-aligning each frame would erase the very motion micro-expression
recognition looks for. Faces and landmarks come from :mod:`mertool.faces`; the stage
(``mertool align``) is :mod:`mertool.stages.align`.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..faces import detect_landmarks, eye_centres

# Template eye centres at margin 0, as fractions of the crop size (x, y).
TEMPLATE_LEFT_EYE = (0.30, 0.36)
TEMPLATE_RIGHT_EYE = (0.70, 0.36)


def template_eyes(size: int, margin: float = 0.0) -> np.ndarray:
    """Template eye centres (2 x 2: image-left, image-right) in pixels for a ``size`` crop."""
    eyes = np.array([TEMPLATE_LEFT_EYE, TEMPLATE_RIGHT_EYE], dtype=np.float64)
    return (0.5 + (eyes - 0.5) / (1.0 + 2.0 * margin)) * size


def similarity_from_eyes(landmarks: np.ndarray, size: int, margin: float) -> np.ndarray:
    """2 x 3 similarity transform taking the landmarks' eye centres onto the template's."""
    src = eye_centres(landmarks)
    dst = template_eyes(size, margin)
    # A similarity is z -> a z + b on complex numbers: two point pairs fix a and b.
    zs = src[:, 0] + 1j * src[:, 1]
    zd = dst[:, 0] + 1j * dst[:, 1]
    a = (zd[1] - zd[0]) / (zs[1] - zs[0])
    b = zd[0] - a * zs[0]
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])


def warp(image: np.ndarray, transform: np.ndarray, size: int, interpolation: str = "cubic") -> np.ndarray:
    """Apply a 2 x 3 transform, producing a ``size`` x ``size`` crop (border replicated)."""
    flag = cv2.INTER_CUBIC if interpolation == "cubic" else cv2.INTER_LINEAR
    return cv2.warpAffine(image, transform, (size, size), flags=flag, borderMode=cv2.BORDER_REPLICATE)


def transform_points(points: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Apply a 2 x 3 transform to N x 2 points (x, y)."""
    return points @ transform[:, :2].T + transform[:, 2]


def align_clip(
    frames: list[np.ndarray],
    *,
    size: int,
    margin: float,
    detector: str,
    upsample: int,
    interpolation: str,
    reference: int = 0,
) -> dict[str, np.ndarray]:
    """Align a clip with one transform found on its reference (onset) frame.

    Parameters
    ----------
    frames : list of ndarray
        RGB uint8 frames of one clip, all the same size.
    size : int
        Side of the square aligned crop in pixels.
    margin : float
        Extra border around the template face, as a fraction of the crop (0 = tight).
    detector : {"hog", "cnn"}
        dlib face detector (see :mod:`mertool.faces`).
    upsample : int
        Times the image is upsampled before detection.
    interpolation : {"cubic", "linear"}
        Resampling used by the warp.
    reference : int
        Index of the frame used for detection (the onset).

    Returns
    -------
    dict
        ``frames`` (T x S x S x 3 uint8), ``landmarks`` (68 x 2 float32, reference frame,
        aligned coordinates), ``transform`` (2 x 3 float64), ``n_faces`` (int: faces
        found on the reference frame; the largest is used).

    Raises
    ------
    LookupError
        No face on the reference frame.
    ValueError
        No frames, or frames of different sizes.

    Notes
    -----
    ``mertool align`` passes ``AlignConfig(...).align_options()``
    (:mod:`mertool.stages.align`), which also holds the default values.
    """
    if not frames:
        raise ValueError("no frames")
    shape = frames[0].shape[:2]
    for i, f in enumerate(frames):
        if f.shape[:2] != shape:
            raise ValueError(f"frame {i} is {f.shape[1]}x{f.shape[0]}, the first is {shape[1]}x{shape[0]}")
    landmarks, n_faces = detect_landmarks(frames[reference], detector, upsample)
    transform = similarity_from_eyes(landmarks, size, margin)
    aligned = np.stack([warp(f, transform, size, interpolation) for f in frames])
    return {
        "frames": aligned,
        "landmarks": transform_points(landmarks, transform).astype(np.float32),
        "transform": transform,
        "n_faces": np.int64(n_faces),
    }
