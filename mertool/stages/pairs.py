"""The ``pairs`` stage: aligned onset and apex frames, stacked for frame-pair models.

Reads ``aligned.h5`` (per-sample clips) and writes ``pairs.h5`` (stage ``"pairs"``,
stacked): ``onset`` and ``apex``, each N x 3 x S x S uint8 RGB (channels first, as
models consume them), plus the aligned file's meta (``aus`` included).

The apex frame is the aligned file's, or the ``--samples`` CSV's where that knows it
(the one policy of :mod:`mertool.stages._driver`). A clip whose apex is unknown (-1)
fails with its reason (listed by ``mertool info``), or takes the middle of its aligned
frames with ``missing_apex="middle"`` (then ``apex_source`` is ``"middle"``).

Where the aligned clip has a validity mask (``valid``), pixels that came from outside the
source image are set to 0 in both frames (``invalid="zero"``, as flow and dynimg do), or
kept as align filled them (``invalid="keep"``).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..config import StageConfig
from ..errors import MertoolError
from ..io import safe_name
from ..log import logger
from ..preprocess.align import INVALID_MODES, resize_mask
from ..preprocess.pairs import MISSING_APEX, select_pair, to_chw
from ..preprocess.render import frame_tile, labelled
from ._driver import Case, StageResult, apex_overrides, case_meta, inputs_of, run_stage
from .stagefile import StageFile, StageWriter, open_stage

PREVIEW_COUNT = 4  # samples drawn by --preview


@dataclasses.dataclass
class PairsConfig(StageConfig):
    """Options of the ``pairs`` stage (recorded in pairs.h5).

    Attributes
    ----------
    size : int
        Output side in pixels (frames are resized when the aligned size differs).
    missing_apex : str
        ``"skip"`` clips whose apex is unknown, or take the ``"middle"`` frame.
    invalid : {"zero", "keep"}
        Pixels from outside the source image (the aligned clip's validity mask): set to
        0, or kept.
    """

    size: int = 224
    missing_apex: str = "skip"
    invalid: str = "zero"

    def validate(self) -> None:
        if not isinstance(self.size, int) or not 16 <= self.size <= 1024:
            raise MertoolError(f"size must be an integer in 16..1024, got {self.size!r}")
        if self.missing_apex not in MISSING_APEX:
            raise MertoolError(f"missing_apex must be one of {', '.join(MISSING_APEX)}, got {self.missing_apex!r}")
        if self.invalid not in INVALID_MODES:
            raise MertoolError(f"invalid must be one of {', '.join(INVALID_MODES)}, got {self.invalid!r}")


def compute_pair(
    case: Case, *, source: StageFile, config: PairsConfig
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """One clip's onset and apex frames, and the apex (and its source) they were taken at.

    The clip is read from ``source`` here, in the worker, so that only the clips in
    flight are in memory. Module-level (options passed by keyword) so that it pickles
    to worker processes.
    """
    masked = config.invalid == "zero" and "valid" in source.array_names()
    clip = source.sample(case.sample_id, ["frames", "frame_numbers"] + (["valid"] if masked else []))
    apex = int(case.meta.get("apex", -1))
    onset_frame, apex_frame, used = select_pair(
        clip["frames"], clip["frame_numbers"], int(case.meta["onset"]), apex, config.missing_apex
    )
    arrays = {"onset": to_chw(onset_frame, config.size), "apex": to_chw(apex_frame, config.size)}
    if masked:
        outside = ~resize_mask(clip["valid"], config.size)
        for image in arrays.values():
            image[:, outside] = 0
    return arrays, {"apex": used, "apex_source": "middle" if used != apex else str(case.meta.get("apex_source", ""))}


def run_pairs(
    src: str | Path,
    out: str | Path,
    config: PairsConfig | None = None,
    *,
    samples_csv: str | Path | None = None,
    jobs: int = 1,
    overwrite: bool = False,
    preview: str | Path | None = None,
    progress: bool = True,
) -> StageResult:
    """The ``pairs`` stage: aligned.h5 -> pairs.h5 (resumable; see the module docstring).

    Parameters
    ----------
    src : path
        ``aligned.h5`` written by ``mertool align``.
    out : path
        ``pairs.h5`` to write.
    config : PairsConfig, optional
    samples_csv : path, optional
        samples.csv with a row for every aligned sample; a known apex (not -1) replaces
        the aligned file's.
    jobs : int
        Worker processes.
    overwrite : bool
        Replace an output made with other parameters or inputs.
    preview : path, optional
        Folder for PNGs (onset beside apex) of the first few samples.
    progress : bool
        Show a progress bar.

    Raises
    ------
    MertoolError
        Input not an aligned stage file or empty, samples.csv unreadable or lacking a
        sample, bad options, or no clip has a usable onset/apex pair.
    """
    config = config or PairsConfig()
    config.validate()
    source = open_stage(src, expect="aligned")
    if len(source) == 0:
        raise MertoolError(f"{src}: holds no samples")
    overrides = apex_overrides(samples_csv, source.sample_ids)
    writer = StageWriter(out, "pairs", config.to_dict(), upstream=inputs_of(src, samples_csv), overwrite=overwrite)
    if not writer.complete and all(str(a).strip() in ("", "nan") for a in source.meta.get("aus", [""])):
        logger.warning(f"{src}: no sample has AU codes; AU-using models will get all-zero AU vectors")
    return run_stage(
        writer,
        source.sample_ids,
        lambda sid: Case(sid, case_meta(source, sid, overrides), None),
        functools.partial(compute_pair, source=source, config=config),
        stacked=True,
        desc="pairs",
        jobs=jobs,
        preview=None if preview is None else lambda path: write_previews(open_stage(path), preview),
        progress=progress,
    )


def write_previews(result: StageFile, folder: str | Path) -> list[Path]:
    """PNG per sample (the first :data:`PREVIEW_COUNT`): the onset frame beside the apex frame."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for sid in result.sample_ids[:PREVIEW_COUNT]:
        got, meta = result.sample(sid, ["onset", "apex"]), result.meta_of(sid)
        side = got["onset"].shape[-1]
        onset, apex = (labelled(frame_tile(got[k].transpose(1, 2, 0), side), f"{k} {meta[k]}") for k in ("onset", "apex"))
        row = np.hstack([onset, np.full((onset.shape[0], 4, 3), 255, np.uint8), apex])
        path = folder / (safe_name(sid) + ".png")
        cv2.imwrite(str(path), cv2.cvtColor(row, cv2.COLOR_RGB2BGR))
        written.append(path)
    return written
