"""Phase-aware dynamic images by approximate rank pooling (DIANet; Bilen et al. 2016).

A dynamic image summarises a clip in one image: ``d = sum_t alpha_t * F_t`` with weights
that grow with time, so ``d`` is positive where the clip gets brighter and negative where
it gets darker. DIANet splits a micro-expression at the apex:

- DI-Onset over frames onset..apex with ``alpha_t = 2t - T - 1`` (``kind="linear"``);
- DI-Offset over frames apex..offset with ``alpha'_t = T + 1 - 2t`` (``kind="reverse"``),
  i.e. the same ranking run backwards from the offset to the apex, so both images weight
  the apex highest and show the expression with the same polarity.

``kind="exact"`` uses Bilen et al.'s weights ``alpha_t = 2(T - t + 1) - (T + 1)(H_T -
H_{t-1})`` (H the harmonic numbers), which fold in their time-varying-mean smoothing; in
the offset phase they are applied backwards too (the weight vector reversed).

Conventions (all follow from the formulas, documented because users ask):

- Every weight vector sums to 0, so subtracting a fixed image from every frame (clip
  mean, onset frame) does not change a dynamic image; only per-frame preprocessing that
  differs between frames (e.g. ``frame_norm="mean"``, removing per-frame brightness
  flicker) does.
- A phase of one frame (apex == onset, or apex == offset, or a one-frame clip) has the
  weight vector ``[0]``: its dynamic image is all zeros. Normalisation keeps a constant
  image at 0 (min-max and standardisation alike), so such a phase reaches a model as a
  zero input, never as noise. ``phase_frames`` in dynimg.h5 records each phase's length.
- Two frames give ``F_2 - F_1`` (linear) or ``(F_2 - F_1) / 2`` (exact).
- Resizing and the RGB -> gray conversion are linear, so they are applied to the dynamic
  image rather than to every frame (same result, T times cheaper).

Everything here is pure (arrays in, arrays out, ``ValueError`` on bad input); the
``dynimg`` stage that reads aligned.h5 and writes dynimg.h5 is :mod:`mertool.stages.dynimg`.
"""

from __future__ import annotations

import functools

from collections.abc import Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np

from .align import INVALID_MODES, resize_mask

KINDS = ("linear", "reverse", "exact")
STAGE_KINDS = ("linear", "exact")
PHASES = ("onset", "offset", "whole")
NORMALIZATIONS = ("minmax", "standardize", "none")
FRAME_NORMS = ("none", "mean")
CHUNK = 32  # frames weighted at a time: bounds memory for very long clips
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as cv2.COLOR_RGB2GRAY


# --------------------------------------------------------------------------- weights


def arp_weights(T: int, kind: str = "linear") -> np.ndarray:
    """Approximate-rank-pooling weights for a sequence of ``T`` frames.

    Parameters
    ----------
    T : int
        Number of frames (>= 1).
    kind : {"linear", "reverse", "exact"}
        ``linear``: ``alpha_t = 2t - T - 1`` (DIANet Eq. 1-2); ``reverse``:
        ``alpha'_t = T + 1 - 2t`` (DIANet Eq. 3, DI-Offset); ``exact``: Bilen et al.,
        ``alpha_t = 2(T - t + 1) - (T + 1)(H_T - H_{t-1})`` with ``H_0 = 0``.

    Returns
    -------
    numpy.ndarray
        ``T`` float64 weights, t = 1..T; they sum to 0 (``[0.]`` for ``T = 1``).
    """
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"T must be a positive integer, got {T!r}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    t = np.arange(1, T + 1, dtype=np.float64)
    if kind == "linear":
        return 2 * t - T - 1
    if kind == "reverse":
        return T + 1 - 2 * t
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / t)])  # H_0..H_T
    return 2 * (T - t + 1) - (T + 1) * (harmonic[T] - harmonic[:-1])


def phase_span(name: str, onset: int, apex: int, offset: int) -> tuple[int, int]:
    """First and last frame number of a phase: onset..apex, apex..offset or onset..offset."""
    if name not in PHASES:
        raise ValueError(f"unknown phase {name!r}; valid: {', '.join(PHASES)}")
    return {"onset": (onset, apex), "offset": (apex, offset), "whole": (onset, offset)}[name]


def phase_frame_counts(
    frame_numbers: Sequence[int], onset: int, apex: int, offset: int, phases: Sequence[str]
) -> np.ndarray:
    """How many of the clip's frames lie in each phase (both ends included).

    Returns
    -------
    numpy.ndarray
        One int64 count per phase; 0 means the phase holds no frame of the clip.
    """
    numbers = np.asarray(frame_numbers, dtype=np.int64)
    spans = [phase_span(p, onset, apex, offset) for p in phases]
    return np.array([np.count_nonzero((numbers >= lo) & (numbers <= hi)) for lo, hi in spans], np.int64)


def phase_weights(
    frame_numbers: Sequence[int],
    onset: int,
    apex: int,
    offset: int,
    phases: Sequence[str] = ("onset", "offset"),
    kind: str = "linear",
    reverse_offset: bool = True,
) -> np.ndarray:
    """Weights of every clip frame in every phase's dynamic image.

    Parameters
    ----------
    frame_numbers : sequence of int
        The clip's frame numbers (increasing).
    onset, apex, offset : int
        Key frame numbers; a phase covers the frames whose number lies in its span,
        both ends included (the apex frame belongs to both phases).
    phases : sequence of {"onset", "offset", "whole"}
        ``onset`` = onset..apex, ``offset`` = apex..offset, ``whole`` = onset..offset.
    kind : {"linear", "exact"}
        Weight family (see :func:`arp_weights`).
    reverse_offset : bool
        Rank the offset phase backwards (DIANet: ``alpha'_t = T + 1 - 2t`` for linear).
        False ranks it forwards like the other phases (then DI-Offset of a
        rise-then-fall clip has the opposite sign to DI-Onset).

    Returns
    -------
    numpy.ndarray
        ``P x T`` float64; row ``p`` is zero outside phase ``p``.
    """
    if kind not in STAGE_KINDS:
        raise ValueError(f"kind must be one of {', '.join(STAGE_KINDS)}, got {kind!r}")
    numbers = np.asarray(frame_numbers, dtype=np.int64)
    if numbers.ndim != 1 or numbers.size == 0:
        raise ValueError("frame_numbers must be a non-empty 1-D sequence")
    if np.any(np.diff(numbers) <= 0):
        raise ValueError("frame_numbers must be strictly increasing")
    if not onset <= apex <= offset:
        raise ValueError(f"need onset <= apex <= offset, got {onset}, {apex}, {offset}")
    out = np.zeros((len(phases), numbers.size))
    for p, name in enumerate(phases):
        lo, hi = phase_span(name, onset, apex, offset)
        idx = np.flatnonzero((numbers >= lo) & (numbers <= hi))
        if idx.size == 0:
            raise ValueError(f"phase {name!r} ({lo}..{hi}) holds no frame of the clip")
        w = arp_weights(int(idx.size), kind)
        out[p, idx] = w[::-1] if (name == "offset" and reverse_offset) else w
    return out


# --------------------------------------------------------------------------- images


def _as_hwc(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.ndim != 3:
        raise ValueError(f"a frame must be H x W or H x W x C, got shape {frame.shape}")
    return frame


def _chunks_of(frames: np.ndarray | Iterable[np.ndarray], chunk: int) -> Iterator[np.ndarray]:
    """Frames as k x H x W x C blocks, from a T x ... array or an iterable of frames."""
    if isinstance(frames, np.ndarray):
        if frames.ndim == 3:
            frames = frames[..., None]
        if frames.ndim != 4:
            raise ValueError(f"frames must be T x H x W (x C), got shape {frames.shape}")
        for i in range(0, frames.shape[0], chunk):
            yield frames[i : i + chunk]
        return
    for frame in frames:
        yield _as_hwc(frame)[None]


def accumulate_chunks(
    chunks: Iterable[np.ndarray],
    weights: np.ndarray,
    preprocess: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """``sum_t weights[:, t] * preprocess(F_t)`` over a stream of frame blocks, in float64.

    Parameters
    ----------
    chunks : iterable of arrays k x H x W x C
        The clip's frames in order, a block at a time (e.g. ``StageFile.iter_frames``), so
        a long clip never has to be in memory whole.
    weights : array, shape (P, T)
        P weight rows over the T frames (see :func:`phase_weights`).
    preprocess : callable, optional
        Applied to each frame (float64 H x W x C) before weighting.

    Returns
    -------
    numpy.ndarray
        P x H x W x C float64.
    """
    P, T = weights.shape
    acc: np.ndarray | None = None
    t = 0
    for block in chunks:
        k = block.shape[0]
        if t + k > T:
            raise ValueError(f"more frames than weights ({T})")
        data = block.astype(np.float64)
        if preprocess is not None:
            data = np.stack([preprocess(f) for f in data])
        if acc is None:
            acc = np.zeros((P, *data.shape[1:]))
        elif data.shape[1:] != acc.shape[1:]:
            raise ValueError(f"frame {t} has shape {data.shape[1:]}, earlier ones {acc.shape[1:]}")
        acc += np.tensordot(weights[:, t : t + k], data, axes=1)
        t += k
    if t != T:
        raise ValueError(f"{t} frames but {T} weights")
    assert acc is not None
    return acc


def dynamic_image(
    frames: np.ndarray | Iterable[np.ndarray],
    weights: np.ndarray | Sequence[float],
    preprocess: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Dynamic image ``sum_t w_t * preprocess(F_t)``, accumulated in float64.

    Parameters
    ----------
    frames : array (T x H x W x C, or T x H x W) or iterable of H x W (x C) frames
        The clip; an iterable is consumed one frame at a time, so a long clip never has
        to be stacked in memory.
    weights : array, shape (T,) or (P, T)
        One weight per frame (e.g. :func:`arp_weights`), or P rows for P images in a
        single pass (e.g. :func:`phase_weights`).
    preprocess : callable, optional
        Applied to each frame (float64 H x W x C) before weighting, e.g.
        :func:`subtract_frame_mean`.

    Returns
    -------
    numpy.ndarray
        H x W x C float64 (or P x H x W x C for 2-D weights); grayscale input gives C = 1.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim not in (1, 2) or w.shape[-1] == 0:
        raise ValueError(f"weights must have shape (T,) or (P, T), got {w.shape}")
    acc = accumulate_chunks(_chunks_of(frames, CHUNK), np.atleast_2d(w), preprocess)
    return acc[0] if w.ndim == 1 else acc


def subtract_frame_mean(frame: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Per-frame preprocessing: remove each channel's spatial mean (brightness flicker).

    With ``valid`` (H x W bool, the clip's validity mask) the means are taken over the valid
    pixels only, so values align filled in from outside the source image do not shift them.
    """
    if valid is None or not valid.any():
        return frame - frame.mean(axis=(0, 1), keepdims=True)
    if valid.shape != frame.shape[:2]:
        raise ValueError(f"validity mask {valid.shape} does not match the frame {frame.shape[:2]}")
    return frame - frame[valid].mean(axis=0)


def phase_dynamic_images(
    clip: np.ndarray | Iterable[np.ndarray],
    onset: int,
    apex: int,
    offset: int,
    frame_numbers: Sequence[int] | None = None,
    kind: str = "linear",
    preprocess: Callable[[np.ndarray], np.ndarray] | None = None,
    reverse_offset: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """DIANet's two phase dynamic images of one clip, in one pass over its frames.

    Parameters
    ----------
    clip : array T x H x W (x C) or iterable of frames
        Frames onset..offset.
    onset, apex, offset : int
        Key frame numbers (onset <= apex <= offset).
    frame_numbers : sequence of int, optional
        Number of each clip frame; default ``onset, onset + 1, ...`` (needs ``len(clip)``).
    kind : {"linear", "exact"}
    preprocess : callable, optional
        Per-frame preprocessing (see :func:`dynamic_image`).
    reverse_offset : bool
        DIANet's backwards ranking of the offset phase (see :func:`phase_weights`).

    Returns
    -------
    (di_onset, di_offset) : tuple of numpy.ndarray
        H x W x C float64 each (un-normalised). A one-frame phase gives zeros.
    """
    if frame_numbers is None:
        if not hasattr(clip, "__len__"):
            raise ValueError("frame_numbers is required when clip is an iterator")
        frame_numbers = range(onset, onset + len(clip))  # type: ignore[arg-type]
    w = phase_weights(frame_numbers, onset, apex, offset, ("onset", "offset"), kind, reverse_offset)
    di = dynamic_image(clip, w, preprocess)
    return di[0], di[1]


def normalize_image(image: np.ndarray, method: str = "minmax", valid: np.ndarray | None = None) -> np.ndarray:
    """Rescale one dynamic image (all channels jointly, so colour balance is kept).

    Parameters
    ----------
    image : array
        H x W x C.
    method : {"minmax", "standardize", "none"}
        ``minmax``: linear map of min..max onto 0..255; ``standardize``: zero mean, unit
        standard deviation; ``none``: unchanged. A constant image becomes all zeros
        under both rescalings (it carries no motion).
    valid : array, optional
        H x W bool: take the statistics over these pixels only (all when none is True).

    Returns
    -------
    numpy.ndarray
        float64, same shape.
    """
    if method not in NORMALIZATIONS:
        raise ValueError(f"method must be one of {', '.join(NORMALIZATIONS)}, got {method!r}")
    img = np.asarray(image, dtype=np.float64)
    if method == "none":
        return img.copy()
    seen = img if valid is None or not np.any(valid) else img[np.asarray(valid, bool)]
    if method == "minmax":
        lo, hi = seen.min(), seen.max()
        return np.zeros_like(img) if hi - lo <= 1e-9 * max(1.0, abs(hi)) else (img - lo) * (255.0 / (hi - lo))
    sd = seen.std()
    return np.zeros_like(img) if sd <= 1e-9 * max(1.0, abs(seen.mean())) else (img - seen.mean()) / sd


def to_model_input(
    di: np.ndarray, size: int, channels: int, normalize: str, valid: np.ndarray | None = None
) -> np.ndarray:
    """H x W x C dynamic image -> C' x size x size float32 (gray if channels == 1).

    With ``valid`` (the clip's validity mask, any size), the image is normalised over
    the valid pixels and set to 0 outside them.
    """
    img = np.asarray(di, dtype=np.float64)
    if channels == 1:
        img = img @ _LUMA if img.shape[2] == 3 else img.mean(axis=2)
        img = img[:, :, None]
    elif img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    if img.shape[:2] != (size, size):
        shrink = size < img.shape[0]
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        if img.ndim == 2:
            img = img[:, :, None]
    mask = None if valid is None else resize_mask(valid, size)
    img = normalize_image(img, normalize, mask)
    if mask is not None:
        img[~mask] = 0.0
    return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)


def clip_dynamic_images(
    chunks: Iterable[np.ndarray],
    frame_numbers: Sequence[int],
    onset: int,
    apex: int,
    offset: int,
    *,
    phases: Sequence[str] = ("onset", "offset"),
    kind: str = "linear",
    frame_norm: str = "none",
    size: int = 224,
    channels: int = 3,
    normalize: str = "minmax",
    valid: np.ndarray | None = None,
    invalid: str = "zero",
) -> tuple[np.ndarray, np.ndarray]:
    """Model-ready phase dynamic images of one clip, in one streaming pass over its frames.

    Parameters
    ----------
    chunks : iterable of arrays k x H x W x C
        The clip's frames in order, a block at a time (``[clip]`` for a whole T x H x W x C
        clip).
    frame_numbers : sequence of int
        Number of each frame (increasing).
    onset, apex, offset : int
        Key frame numbers (apex is ignored when only ``whole`` is asked for).
    phases : sequence of {"onset", "offset", "whole"}
        The images to make (see :func:`phase_weights`; the offset phase is ranked backwards).
    kind : {"linear", "exact"}
        Weight family (see :func:`arp_weights`).
    frame_norm : {"none", "mean"}
        Per-frame preprocessing: ``mean`` removes each frame's channel means
        (:func:`subtract_frame_mean`; over the valid pixels with ``invalid="zero"``).
    size, channels, normalize
        Output side, 1 (gray) or 3 channels, and per-image rescaling (see
        :func:`to_model_input`).
    valid : array, optional
        The clip's validity mask (H x W, from ``mertool align``; True where the pixel
        came from the source image).
    invalid : {"zero", "keep"}
        ``zero``: images normalised over the valid pixels and 0 outside them; ``keep``:
        the mask is ignored.

    Returns
    -------
    images : numpy.ndarray
        P x C x size x size float32.
    frames_per_phase : numpy.ndarray
        P int64: how many frames each image summarises (1 gives a zero image).
    """
    if frame_norm not in FRAME_NORMS:
        raise ValueError(f"frame_norm must be one of {', '.join(FRAME_NORMS)}, got {frame_norm!r}")
    if invalid not in INVALID_MODES:
        raise ValueError(f"invalid must be one of {', '.join(INVALID_MODES)}, got {invalid!r}")
    mask = valid if invalid == "zero" else None
    if "onset" not in phases and "offset" not in phases:
        apex = onset  # only "whole": the apex plays no part (and may be unknown, -1)
    weights = phase_weights(frame_numbers, onset, apex, offset, phases, kind)
    frame_mask = None if mask is None else np.asarray(mask, bool)
    preprocess = functools.partial(subtract_frame_mean, valid=frame_mask) if frame_norm == "mean" else None
    dis = accumulate_chunks(chunks, weights, preprocess)
    images = np.stack([to_model_input(d, size, channels, normalize, mask) for d in dis])
    return images, phase_frame_counts(frame_numbers, onset, apex, offset, phases)
