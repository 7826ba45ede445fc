"""The ``pairs`` stage: aligned onset and apex frames, stacked for frame-pair models.

Reads ``aligned.h5`` (per-sample clips) and writes ``pairs.h5`` (stage ``"pairs"``,
stacked): ``onset`` and ``apex``, each N x 3 x S x S uint8 RGB (channels first, as
models consume them), plus the aligned file's meta (``aus`` included) with ``apex``
and ``apex_source`` updated when a samples.csv supplies them.

The apex frame number comes from a ``--samples`` CSV (e.g. written by
``mertool keyframes``) when given and known there, else from the aligned file's meta.
A clip whose apex is unknown (-1) is skipped and reported, or takes the middle frame
of its aligned frames with ``missing_apex="middle"``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from ..stages.stagefile import StageWriter, open_stage
from ..config import StageConfig
from ..errors import MertoolError
from ..log import logger
from ..samples import read_samples

MISSING_APEX = ("skip", "middle")


@dataclasses.dataclass
class PairsConfig(StageConfig):
    """Options of ``mertool pairs``.

    Attributes
    ----------
    size : int
        Output side in pixels (frames are resized when the aligned size differs).
    missing_apex : str
        ``"skip"`` clips whose apex is unknown, or take the ``"middle"`` frame.
    """

    size: int = 224
    missing_apex: str = "skip"

    def validate(self) -> None:
        if not isinstance(self.size, int) or not 16 <= self.size <= 1024:
            raise MertoolError(f"size must be an integer in 16..1024, got {self.size!r}")
        if self.missing_apex not in MISSING_APEX:
            raise MertoolError(f"missing_apex must be one of {', '.join(MISSING_APEX)}, got {self.missing_apex!r}")


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
    missing_apex : str
        ``"skip"`` or ``"middle"`` (see :class:`PairsConfig`).

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
    numbers = [int(n) for n in np.asarray(numbers).reshape(-1)]
    if len(numbers) != len(frames) or not numbers:
        raise ValueError(f"{len(frames)} frames but {len(numbers)} frame numbers")
    where = {n: i for i, n in enumerate(numbers)}
    if onset not in where:
        raise ValueError(f"onset frame {onset} not among the aligned frames ({numbers[0]}..{numbers[-1]})")
    if apex == -1:
        if missing_apex != "middle":
            raise ValueError("apex unknown (-1); run `mertool keyframes` and pass --samples, or --missing-apex middle")
        apex = numbers[len(numbers) // 2]
    if apex not in where:
        raise ValueError(
            f"apex frame {apex} not among the aligned frames ({numbers[0]}..{numbers[-1]}); "
            "re-run `mertool align` (all frames, or keyframes after the apex is known)"
        )
    return frames[where[onset]], frames[where[apex]], apex


def _apex_table(samples_csv: str | Path) -> dict[str, tuple[int, str]]:
    return {s.sample_id: (s.apex, s.apex_source) for s in read_samples(samples_csv)}


def run_pairs(
    aligned: str | Path,
    out: str | Path,
    config: PairsConfig | None = None,
    samples_csv: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[Path, dict[str, str]]:
    """Write pairs.h5 from aligned.h5 (resumable; see the module docstring).

    Parameters
    ----------
    aligned : path
        ``aligned.h5`` written by ``mertool align``.
    out : path
        ``pairs.h5`` to write.
    config : PairsConfig, optional
    samples_csv : path, optional
        samples.csv whose ``apex`` (when not -1) overrides the aligned file's.
    overwrite : bool
        Replace an output made with other parameters or inputs.
    progress : bool
        Show a progress bar.

    Returns
    -------
    path : Path
        The finished file.
    failed : dict
        sample_id -> reason, for clips left out.

    Raises
    ------
    MertoolError
        Input is not an aligned stage file, samples CSV unreadable, or no clip has a
        usable onset/apex pair.
    """
    from tqdm.auto import tqdm

    cfg = config or PairsConfig()
    cfg.validate()
    src = open_stage(aligned, expect="aligned")
    apex_of = _apex_table(samples_csv) if samples_csv is not None else {}
    upstream = [aligned] + ([samples_csv] if samples_csv is not None else [])
    writer = StageWriter(out, "pairs", cfg.to_dict(), upstream=upstream, overwrite=overwrite)
    if writer.complete:
        logger.info(f"{out}: up to date ({len(src)} samples), nothing to do")
        return Path(out), open_stage(out).failed
    if all(str(a).strip() in ("", "nan") for a in src.meta.get("aus", [""])):
        logger.warning(f"{aligned}: no sample has AU codes; AU-using models will get all-zero AU vectors")
    for sid in tqdm(writer.pending(src.sample_ids), desc="pairs", unit="sample", disable=not progress):
        meta = {k: v for k, v in src.meta_of(sid).items() if k != "sample_id"}
        apex, source = int(meta.get("apex", -1)), str(meta.get("apex_source", ""))
        if sid in apex_of and apex_of[sid][0] != -1:
            apex, source = apex_of[sid]
        data = src.sample(sid, ["frames", "frame_numbers"])
        try:
            on, ap, used = select_pair(data["frames"], data["frame_numbers"], int(meta["onset"]), apex, cfg.missing_apex)
        except ValueError as exc:
            writer.fail(sid, str(exc))
            continue
        if used != apex:
            source = "middle"
        meta.update(apex=int(used), apex_source=source)
        meta = {k: (v.item() if hasattr(v, "item") else v) for k, v in meta.items()}
        writer.add(sid, {"onset": to_chw(on, cfg.size), "apex": to_chw(ap, cfg.size)}, meta)
    failed = writer.failures()
    if len(failed) == len(src):
        reasons = "; ".join(f"{k}: {v}" for k, v in list(failed.items())[:3])
        raise MertoolError(f"{aligned}: no clip has a usable onset/apex pair ({reasons})")
    writer.finish(src.sample_ids, stacked=True)
    if failed:
        logger.warning(f"{len(failed)} clip(s) left out: " + "; ".join(f"{k}: {v}" for k, v in failed.items()))
    return Path(out), failed
