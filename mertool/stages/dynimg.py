"""The ``dynimg`` stage: aligned.h5 -> dynimg.h5, DIANet's phase dynamic images.

Each clip is read a block of frames at a time (:meth:`StageFile.iter_frames`), so a long
clip is never in memory whole; the images are made by
:func:`mertool.preprocess.dynimg.clip_dynamic_images`. dynimg.h5 holds stacked
``dynimg`` (N x P x C x S x S float32) and ``phase_frames`` (N x P int64, frames per
phase), with the aligned file's meta (``apex`` / ``apex_source`` from ``--samples`` where
it knows them). Where the aligned clip has a validity mask (``valid``), the images are
normalised over its valid pixels and set to 0 outside them (``invalid="zero"``; then
``frame_norm="mean"`` also takes each frame's means over the valid pixels), or the mask is
ignored (``invalid="keep"``); the choice is recorded with the other options.

Every sample is checked before any work starts, and a bad one stops the stage with an
error naming it: the clip must hold every frame onset..offset (not ``align --frames
keyframes``), and when a phase splits the clip at the apex, the apex must be known and
within onset..offset.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from ..config import StageConfig
from ..errors import MertoolError
from ..io import safe_name
from ..preprocess.dynimg import (
    CHUNK,
    FRAME_NORMS,
    INVALID_MODES,
    NORMALIZATIONS,
    PHASES,
    STAGE_KINDS,
    clip_dynamic_images,
    phase_frame_counts,
    phase_span,
)
from ..preprocess.render import display_tile, frame_tile, labelled, spread_samples
from ._driver import Case, StageResult, apex_overrides, case_meta, inputs_of, run_stage
from .stagefile import StageFile, StageWriter, open_stage

PREVIEW_COUNT = 4  # samples drawn by --preview
PREVIEW_SIDE = 112  # smallest tile side in the previews (smaller images are enlarged)


@dataclasses.dataclass
class DynimgConfig(StageConfig):
    """Options of the ``dynimg`` stage (recorded in dynimg.h5).

    Attributes
    ----------
    phases : str
        Comma list of ``onset`` (onset..apex), ``offset`` (apex..offset, ranked
        backwards), ``whole`` (onset..offset); DIANet uses ``onset,offset``.
    kind : {"linear", "exact"}
        ARP weights (DIANet: linear).
    size : int
        Output side S (DIANet: 224).
    channels : {3, 1}
        1 = gray (BT.601 luma), e.g. for SAMM whose 3 channels are identical.
    normalize : {"minmax", "standardize", "none"}
        Per-image rescaling of the stored dynamic images.
    frame_norm : {"none", "mean"}
        Per-frame preprocessing: ``mean`` removes each frame's channel means.
    invalid : {"zero", "keep"}
        Pixels from outside the source image (the aligned clip's validity mask): set to
        0, or kept.
    """

    #: Other spellings accepted as keys (YAML or flags); the recorded field name stays ``normalize``.
    ALIASES: ClassVar[dict[str, str]] = {"normalise": "normalize"}

    phases: str = "onset,offset"
    kind: str = "linear"
    size: int = 224
    channels: int = 3
    normalize: str = "minmax"
    frame_norm: str = "none"
    invalid: str = "zero"

    def __post_init__(self) -> None:
        if isinstance(self.phases, (list, tuple)):
            self.phases = ",".join(map(str, self.phases))

    def phase_list(self) -> list[str]:
        return [p.strip() for p in str(self.phases).split(",") if p.strip()]

    def validate(self) -> None:
        names = self.phase_list()
        bad = [p for p in names if p not in PHASES]
        if not names or bad or len(set(names)) != len(names):
            raise MertoolError(
                f"phases must be a comma list of distinct phases from {', '.join(PHASES)} "
                f"(e.g. onset,offset or whole), got {self.phases!r}"
            )
        if self.kind not in STAGE_KINDS:
            raise MertoolError(f"kind must be {' or '.join(STAGE_KINDS)}, got {self.kind!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 8 <= self.size <= 4096:
            raise MertoolError(f"size must be an integer within 8..4096, got {self.size!r}")
        if self.channels not in (1, 3):
            raise MertoolError(f"channels must be 1 (gray) or 3 (RGB), got {self.channels!r}")
        if self.normalize not in NORMALIZATIONS:
            raise MertoolError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {self.normalize!r}")
        if self.frame_norm not in FRAME_NORMS:
            raise MertoolError(f"frame_norm must be one of {', '.join(FRAME_NORMS)}, got {self.frame_norm!r}")
        if self.invalid not in INVALID_MODES:
            raise MertoolError(f"invalid must be one of {', '.join(INVALID_MODES)}, got {self.invalid!r}")


def compute_clip(case: Case, *, source: StageFile, config: DynimgConfig) -> dict[str, np.ndarray]:
    """One sample's phase dynamic images, its frames streamed from ``source``.

    ``case.inputs`` holds the clip's frame numbers; onset, apex and offset come from
    ``case.meta``; the validity mask, where the aligned file has one, from ``source``.
    Module-level (with the config passed by keyword) so that it pickles to worker
    processes.
    """
    meta = case.meta
    valid = source.sample(case.sample_id, ["valid"])["valid"] if "valid" in source.array_names() else None
    images, lengths = clip_dynamic_images(
        source.iter_frames(case.sample_id, CHUNK),
        case.inputs,
        int(meta["onset"]),
        int(meta.get("apex", -1)),
        int(meta["offset"]),
        phases=config.phase_list(),
        kind=config.kind,
        frame_norm=config.frame_norm,
        size=config.size,
        channels=config.channels,
        normalize=config.normalize,
        valid=valid,
        invalid=config.invalid,
    )
    return {"dynimg": images, "phase_frames": lengths}


def _check_clip(sid: str, meta: dict[str, Any], numbers: np.ndarray, phases: list[str], keyframes_file: bool) -> None:
    """Refuse a clip its phases cannot be made from (see the module docstring)."""
    onset, apex, offset = int(meta["onset"]), int(meta.get("apex", -1)), int(meta["offset"])
    span = offset - onset + 1
    # keyframes-aligned clips hold onset and apex only; older files do not say so in params
    if keyframes_file or (numbers.size == 2 and span > 2 and list(numbers) == [onset, apex]):
        raise MertoolError(
            f"sample {sid}: aligned with --frames keyframes (only onset and apex); dynamic images "
            "need every frame onset..offset: re-run `mertool align` without --frames keyframes"
        )
    splits = any(p != "whole" for p in phases)
    if splits and apex == -1:
        raise MertoolError(
            f"sample {sid}: apex unknown (-1); phase dynamic images split the clip at the apex: "
            "run `mertool keyframes` and pass its samples.csv with --samples, or use --phases whole"
        )
    if splits and not onset <= apex <= offset:
        raise MertoolError(f"sample {sid}: apex {apex} outside onset..offset ({onset}..{offset})")
    for phase, count in zip(phases, phase_frame_counts(numbers, onset, apex, offset, phases)):
        if count == 0:
            lo, hi = phase_span(phase, onset, apex, offset)
            raise MertoolError(
                f"sample {sid}: no aligned frame in phase {phase} ({lo}..{hi}); frames are "
                f"{numbers.min()}..{numbers.max()}"
            )


def _plan(
    source: StageFile, phases: list[str], overrides: dict[str, tuple[int, str]]
) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """Every sample's meta and frame numbers, each clip checked before any work starts."""
    if not {"frames", "frame_numbers"} <= set(source.array_names()):
        raise MertoolError(f"{source.path}: no frames/frame_numbers arrays; is it an aligned.h5?")
    keyframes_file = str(source.params.get("frames", "")) == "keyframes"
    metas, numbers = {}, {}
    for sid in source.sample_ids:
        metas[sid] = case_meta(source, sid, overrides)
        numbers[sid] = np.asarray(source.sample(sid, ["frame_numbers"])["frame_numbers"], np.int64)
        _check_clip(sid, metas[sid], numbers[sid], phases, keyframes_file)
    return metas, numbers


def run_dynimg(
    src: str | Path,
    out: str | Path,
    config: DynimgConfig | None = None,
    *,
    samples_csv: str | Path | None = None,
    jobs: int = 1,
    overwrite: bool = False,
    preview: str | Path | None = None,
    progress: bool = True,
) -> StageResult:
    """The ``dynimg`` stage: aligned.h5 -> dynimg.h5 (resumable; see the module docstring).

    Parameters
    ----------
    src : path
        Stage "aligned" file: per sample ``frames`` (all frames onset..offset) and
        ``frame_numbers``.
    out : path
        dynimg.h5 to write.
    config : DynimgConfig, optional
        Defaults: DIANet's onset,offset phases, linear weights, 224 px, min-max.
    samples_csv : path, optional
        samples.csv whose known apex (e.g. from ``mertool keyframes``) replaces the aligned
        file's; it must list every aligned sample (see :mod:`mertool.stages._driver`).
    jobs : int
        Worker processes.
    overwrite : bool
        Replace an output (or unfinished work) made with other parameters or inputs.
    preview : path, optional
        Folder for PNGs (onset, apex, offset frames beside the dynamic images) of the
        first few samples.
    progress : bool
        Show a progress bar.

    Raises
    ------
    MertoolError
        Input not an aligned stage file or empty, apex unknown where a phase needs it, a
        clip aligned with ``--frames keyframes``, samples.csv lacking a sample, bad
        options, or no sample could be processed.
    """
    config = config or DynimgConfig()
    config.validate()
    source = open_stage(src, expect="aligned")
    if len(source) == 0:
        raise MertoolError(f"{src}: holds no samples")
    phases = config.phase_list()
    metas, numbers = _plan(source, phases, apex_overrides(samples_csv, source.sample_ids))
    # revision 1: frame_norm "mean" with invalid "zero" takes the frames' means over the valid pixels only
    revision = int(config.frame_norm == "mean" and config.invalid == "zero")
    writer = StageWriter(out, "dynimg", config.to_dict(), upstream=inputs_of(src, samples_csv), overwrite=overwrite,
                         revision=revision)

    def draw(path: Path) -> None:
        write_previews(source, open_stage(path), preview, metas, numbers, phases)

    return run_stage(
        writer,
        source.sample_ids,
        lambda sid: Case(sid, metas[sid], numbers[sid]),
        functools.partial(compute_clip, source=source, config=config),
        stacked=True,
        desc="dynimg",
        jobs=jobs,
        preview=None if preview is None else draw,
        progress=progress,
    )


def _frames_at(source: StageFile, sample_id: str, indices: list[int]) -> dict[int, np.ndarray]:
    """The frames at the given positions of one clip, streamed (the clip is not read whole)."""
    wanted, found, start = set(indices), {}, 0
    for block in source.iter_frames(sample_id, CHUNK):
        for i in wanted.intersection(range(start, start + len(block))):
            found[i] = block[i - start]
        start += len(block)
        if len(found) == len(wanted):
            break
    return found


def write_previews(
    source: StageFile,
    result: StageFile,
    folder: str | Path,
    metas: dict[str, dict[str, Any]],
    numbers: dict[str, np.ndarray],
    phases: list[str],
) -> list[Path]:
    """PNG per sample (:data:`PREVIEW_COUNT` of them, spread over classes and subjects):
    onset, apex, offset frames, then each phase's dynamic image, each at least
    :data:`PREVIEW_SIDE` pixels wide so its caption fits."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    done = [sid for sid in metas if sid in result.sample_ids]  # not the failed ones
    for k in spread_samples([metas[s].get("subject", s) for s in done], [metas[s].get("label", s) for s in done], PREVIEW_COUNT):
        sid = done[k]
        got = result.sample(sid, ["dynimg", "phase_frames"])
        dis, lengths, nums = got["dynimg"], got["phase_frames"], numbers[sid]
        side = max(dis.shape[-1], PREVIEW_SIDE)
        keys = [(label, int(metas[sid].get(label, -1))) for label in ("onset", "apex", "offset")]
        at = [(label, int(np.argmin(np.abs(nums - n)))) for label, n in keys if n >= 0]
        frames = _frames_at(source, sid, [i for _, i in at])
        tiles = [labelled(frame_tile(frames[i], side), f"{label} {nums[i]}") for label, i in at]
        tiles += [labelled(display_tile(dis[p], side), f"DI-{phase} ({lengths[p]}f)") for p, phase in enumerate(phases)]
        gap = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
        row = np.hstack([x for tile in tiles for x in (tile, gap)][:-1])
        path = folder / (safe_name(sid) + ".png")
        cv2.imwrite(str(path), cv2.cvtColor(row, cv2.COLOR_RGB2BGR))
        written.append(path)
    return written
