"""Onset and apex frames of an aligned clip, as frame-pair models consume them.

Pure functions (arrays in, arrays out, ``ValueError`` on bad input); the ``pairs`` stage
that reads aligned.h5 and writes pairs.h5 is :mod:`mertool.stages.pairs`.
"""

from __future__ import annotations

import cv2
import numpy as np

MISSING_APEX = ("skip", "middle")


def to_chw(frame: np.ndarray, size: int) -> np.ndarray:
    """H x W x 3 uint8 -> 3 x size x size uint8 (area resampling when shrinking)."""
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 frame, got shape {frame.shape}")
    if frame.shape[:2] != (size, size):
        interp = cv2.INTER_AREA if frame.shape[0] > size else cv2.INTER_CUBIC
        frame = cv2.resize(frame, (size, size), interpolation=interp)
    return np.ascontiguousarray(frame.transpose(2, 0, 1).astype(np.uint8))


def select_pair(
    frames: np.ndarray, numbers: np.ndarray, onset: int, apex: int, missing_apex: str = "skip"
) -> tuple[np.ndarray, np.ndarray, int]:
    """Pick the onset and apex frames of one aligned clip.

    Parameters
    ----------
    frames : ndarray
        T x S x S x 3 aligned frames.
    numbers : ndarray
        T original frame numbers.
    onset, apex : int
        Frame numbers (apex -1 = unknown).
    missing_apex : {"skip", "middle"}
        What an unknown apex means: the clip is refused (``"skip"``), or its middle
        aligned frame is taken.

    Returns
    -------
    onset_frame, apex_frame : ndarray
    apex : int
        The apex frame number used.

    Raises
    ------
    ValueError
        With a message saying what is missing (the caller records it as the reason).
    """
    if missing_apex not in MISSING_APEX:
        raise ValueError(f"missing_apex must be one of {', '.join(MISSING_APEX)}, got {missing_apex!r}")
    numbers = [int(n) for n in np.asarray(numbers).reshape(-1)]
    if len(numbers) != len(frames) or not numbers:
        raise ValueError(f"{len(frames)} frames but {len(numbers)} frame numbers")
    where = {n: i for i, n in enumerate(numbers)}
    if onset not in where:
        raise ValueError(f"onset frame {onset} not among the aligned frames ({numbers[0]}..{numbers[-1]})")
    if apex == -1:
        if missing_apex == "skip":
            raise ValueError("apex unknown (-1); run `mertool keyframes` and pass --samples, or --missing-apex middle")
        apex = numbers[len(numbers) // 2]
    if apex not in where:
        raise ValueError(
            f"apex frame {apex} not among the aligned frames ({numbers[0]}..{numbers[-1]}); "
            "re-run `mertool align` (all frames, or keyframes after the apex is known)"
        )
    return frames[where[onset]], frames[where[apex]], apex
