"""Face alignment (pure): one crop transform per clip, found on its onset frame.

Three crop policies (:data:`CROP_POLICIES`), each giving one 2 x 3 transform (source
pixels -> output pixels) that every frame of the clip shares -- re-aligning each frame
would erase the very motion micro-expression recognition looks for:

``similarity``
    Rotation, uniform scale and translation putting the onset frame's eye centres on the
    template's (:func:`similarity_from_eyes`), then zoomed in and shifted as little as
    needed for the crop to stay inside the source image, as long as every landmark stays
    in the crop (:func:`fit_inside`). For raw video, where the face is a part of the frame.
``box``
    The landmark bounding box plus a margin, made square, kept inside the image, and
    resized axis-aligned (:func:`face_box`). For pre-cropped frames that still hold some
    background.
``none``
    The whole frame resized (frames the dataset already cropped and registered, e.g.
    CASME II ``Cropped``); landmarks are still located, for QA and the landmark-based
    key-frame methods, but a frame without a face is no failure.

Pixel convention: integer coordinates are pixel centres; a pixel covers +-0.5 around its
centre. An output pixel is *valid* when its source position lies on the source image
(:func:`validity_mask`); the rest (``similarity`` only, when the face is too near the
border for the crop to fit) is filled by replicating the border and marked invalid. The
feature stages resize the mask to their maps (:func:`resize_mask`) and zero or keep the
values outside it (:data:`INVALID_MODES`).

Faces and landmarks come from :mod:`mertool.faces`; the stage (``mertool align``) is
:mod:`mertool.stages.align`.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..faces import detect_landmarks, eye_centres

CROP_POLICIES = ("similarity", "box", "none")
#: What the feature stages do with pixels outside a validity mask: set them to 0, or keep them.
INVALID_MODES = ("zero", "keep")

# Template eye centres at margin 0, as fractions of the crop size (x, y).
TEMPLATE_LEFT_EYE = (0.30, 0.36)
TEMPLATE_RIGHT_EYE = (0.70, 0.36)

_INTERPOLATION = {"cubic": cv2.INTER_CUBIC, "linear": cv2.INTER_LINEAR}


class FrameSizeError(ValueError):
    """A frame whose size differs from the first frame's: its ``index`` in the clip, its
    ``shape`` and the first frame's (height, width)."""

    def __init__(self, index: int, shape: tuple[int, int], first: tuple[int, int]) -> None:
        super().__init__(f"frame {index} is {shape[1]}x{shape[0]}, the first is {first[1]}x{first[0]}")
        self.index, self.shape, self.first = index, shape, first


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


def fit_inside(transform: np.ndarray, landmarks: np.ndarray, shape: tuple[int, int], size: int) -> np.ndarray:
    """Zoom and shift a crop transform so the crop stays inside the image, keeping the face.

    The crop's source region is shrunk about its centre (factor ``s`` <= 1) and moved
    (centre ``c``) just enough to lie on the ``shape`` image; that target is then
    approached along the straight line from the original crop as far as every landmark
    stays inside the ``size`` x ``size`` output. A crop already inside is unchanged.

    Parameters
    ----------
    transform : ndarray
        2 x 3 source -> output transform (e.g. :func:`similarity_from_eyes`).
    landmarks : ndarray
        N x 2 source points that must stay in the crop.
    shape : (int, int)
        Source image height and width.
    size : int
        Output side.

    Returns
    -------
    ndarray
        The adjusted 2 x 3 transform (same rotation; scale multiplied by ``1 / s``).
    """
    h, w = shape
    lin = np.linalg.inv(transform[:, :2])  # output -> source, linear part
    half = (size - 1) / 2.0
    centre0 = lin @ (np.array([half, half]) - transform[:, 2])  # source point at the output centre
    reach = np.abs(lin).sum(axis=1) * half  # source half-extent of the crop along x and y
    s_fit = min(1.0, w / (2 * reach[0]), h / (2 * reach[1]))
    lo, hi = reach * s_fit - 0.5, np.array([w, h]) - 0.5 - reach * s_fit
    centre1 = np.clip(centre0, lo, hi)
    # landmark q stays inside when |lin^-1 (q - c)| <= s * half per axis: linear in t
    # along (s, c) = (1 - t) (1, centre0) + t (s_fit, centre1)
    fwd = transform[:, :2]
    rel0 = (np.asarray(landmarks, np.float64) - centre0) @ fwd.T
    rel1 = (np.asarray(landmarks, np.float64) - centre1) @ fwd.T
    t = 1.0
    for sign in (1.0, -1.0):
        f0, f1 = half - sign * rel0, s_fit * half - sign * rel1
        shrinking = (f0 >= 0) & (f1 < 0)  # inside at first, outside at the target
        if shrinking.any():
            t = min(t, float((f0[shrinking] / (f0[shrinking] - f1[shrinking])).min()))
    s = 1.0 + t * (s_fit - 1.0)
    centre = centre0 + t * (centre1 - centre0)
    scaled = fwd / s
    return np.hstack([scaled, (np.array([half, half]) - scaled @ centre)[:, None]])


def face_box(landmarks: np.ndarray, shape: tuple[int, int], margin: float) -> tuple[tuple[int, int, int, int], bool]:
    """The ``box`` policy's crop: the landmarks' bounding box plus ``margin`` (a fraction of
    its larger side, on each side), made square, moved inside the image and, where larger
    than the image, clamped to it.

    Returns
    -------
    box : (x0, y0, x1, y1)
        Integer pixel bounds (columns ``x0..x1-1``, rows ``y0..y1-1``).
    clamped : bool
        The face (its landmark box) lies partly outside the image, so the crop was cut
        by the image border.
    """
    h, w = shape
    pts = np.asarray(landmarks, np.float64)
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * margin)
    bounds = []
    for centre, limit in (((x0 + x1) / 2, w), ((y0 + y1) / 2, h)):
        length = min(side, limit)
        start = min(max(centre - length / 2, 0.0), limit - length)
        lo = max(0, math.floor(start))
        bounds.append((lo, min(limit, max(lo + 1, math.ceil(start + length)))))
    (bx0, bx1), (by0, by1) = bounds
    clamped = bool(x0 < 0 or y0 < 0 or x1 > w - 1 or y1 > h - 1)
    return (bx0, by0, bx1, by1), clamped


def box_transform(box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """2 x 3 transform of cropping ``box`` (x0, y0, x1, y1) and resizing it to ``size`` x
    ``size`` the way :func:`cv2.resize` maps pixels."""
    x0, y0, x1, y1 = box
    sx, sy = size / (x1 - x0), size / (y1 - y0)
    return np.array([[sx, 0.0, (0.5 - x0) * sx - 0.5], [0.0, sy, (0.5 - y0) * sy - 0.5]])


def validity_mask(transform: np.ndarray, shape: tuple[int, int], size: int) -> np.ndarray:
    """``size`` x ``size`` bool: True where the output pixel's source position lies on the
    ``shape`` (height, width) image (see the module docstring)."""
    inv = cv2.invertAffineTransform(np.asarray(transform, np.float64))
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    tol = 1e-6
    h, w = shape
    return (sx >= -0.5 - tol) & (sx <= w - 0.5 + tol) & (sy >= -0.5 - tol) & (sy <= h - 0.5 + tol)


def resize_mask(valid: np.ndarray, size: int) -> np.ndarray:
    """A validity mask at ``size`` x ``size`` (bool): a pixel is valid when all of its
    footprint is (how flow and dynamic-image maps inherit the aligned frames' mask)."""
    area = cv2.resize(np.asarray(valid, np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return area > 1.0 - 1e-3


def warp(image: np.ndarray, transform: np.ndarray, size: int, interpolation: str = "cubic") -> np.ndarray:
    """Apply a 2 x 3 transform, producing a ``size`` x ``size`` crop (border replicated)."""
    flag = _INTERPOLATION[interpolation]
    return cv2.warpAffine(image, transform, (size, size), flags=flag, borderMode=cv2.BORDER_REPLICATE)


def crop_resize(image: np.ndarray, box: tuple[int, int, int, int], size: int, interpolation: str = "cubic") -> np.ndarray:
    """Crop ``box`` (x0, y0, x1, y1) and resize it to ``size`` x ``size`` (:func:`cv2.resize`)."""
    x0, y0, x1, y1 = box
    return cv2.resize(image[y0:y1, x0:x1], (size, size), interpolation=_INTERPOLATION[interpolation])


def transform_points(points: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Apply a 2 x 3 transform to N x 2 points (x, y)."""
    return points @ transform[:, :2].T + transform[:, 2]


def _check_sizes(frames: list[np.ndarray]) -> tuple[int, int]:
    if not frames:
        raise ValueError("no frames")
    first = frames[0].shape[:2]
    for i, f in enumerate(frames):
        if f.shape[:2] != first:
            raise FrameSizeError(i, f.shape[:2], first)
    return first


def _landmarks(frame: np.ndarray, crop: str, detector: str, upsample: int) -> tuple[np.ndarray, int]:
    """Landmarks of the reference frame; with ``crop="none"`` a frame without a face gives NaNs."""
    try:
        return detect_landmarks(frame, detector, upsample)
    except LookupError:
        if crop != "none":
            raise
        return np.full((68, 2), np.nan), 0


def align_clip(
    frames: list[np.ndarray],
    *,
    crop: str = "similarity",
    size: int,
    margin: float,
    detector: str,
    upsample: int,
    interpolation: str,
    reference: int = 0,
) -> dict[str, np.ndarray]:
    """Align a clip with one crop transform found on its reference (onset) frame.

    Parameters
    ----------
    frames : list of ndarray
        RGB uint8 frames of one clip, all the same size.
    crop : {"similarity", "box", "none"}
        Crop policy (see the module docstring).
    size : int
        Side of the square aligned crop in pixels.
    margin : float
        ``similarity``: extra border around the template face, as a fraction of the crop
        (0 = tight); ``box``: added to each side of the landmark box, as a fraction of its
        larger side; ``none``: unused.
    detector : {"hog", "cnn"}
        dlib face detector (see :mod:`mertool.faces`).
    upsample : int
        Times the image is upsampled before detection.
    interpolation : {"cubic", "linear"}
        Resampling used by the warp or resize.
    reference : int
        Index of the frame used for detection (the onset).

    Returns
    -------
    dict
        ``frames`` (T x S x S x 3 uint8), ``landmarks`` (68 x 2 float32, reference frame,
        aligned coordinates; NaN when ``crop="none"`` found no face), ``transform``
        (2 x 3 float64, source -> aligned pixels), ``valid`` (S x S uint8, 1 where the
        pixel comes from the image), ``n_faces`` (int: faces found on the reference
        frame; the largest is used), ``clamped`` (bool: ``box`` only, the face lies partly
        outside the image) and ``face_fraction`` (float: area of the landmark box over
        the frame's, NaN without a face).

    Raises
    ------
    LookupError
        No face on the reference frame (``similarity`` and ``box``).
    ValueError
        No frames, unknown policy; :class:`FrameSizeError` for frames of different sizes.
    """
    if crop not in CROP_POLICIES:
        raise ValueError(f"crop must be one of {', '.join(CROP_POLICIES)}, got {crop!r}")
    shape = _check_sizes(frames)
    landmarks, n_faces = _landmarks(frames[reference], crop, detector, upsample)
    clamped = False
    if crop == "similarity":
        transform = fit_inside(similarity_from_eyes(landmarks, size, margin), landmarks, shape, size)
        aligned = np.stack([warp(f, transform, size, interpolation) for f in frames])
    else:
        box = (0, 0, shape[1], shape[0])
        if crop == "box":
            box, clamped = face_box(landmarks, shape, margin)
        transform = box_transform(box, size)
        aligned = np.stack([crop_resize(f, box, size, interpolation) for f in frames])
    extent = landmarks.max(axis=0) - landmarks.min(axis=0)
    return {
        "frames": aligned,
        "landmarks": transform_points(landmarks, transform).astype(np.float32),
        "transform": transform,
        "valid": validity_mask(transform, shape, size).astype(np.uint8),
        "n_faces": np.int64(n_faces),
        "clamped": np.bool_(clamped),
        "face_fraction": np.float64(extent[0] * extent[1] / (shape[0] * shape[1])),
    }
