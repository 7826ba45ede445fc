"""The ``align`` stage: every clip of samples.csv, face-aligned, into ``aligned.h5``.

Reads samples.csv (from ``mertool index`` or ``mertool keyframes``) and the clips it
points to; writes ``aligned.h5`` (stage ``"aligned"``, per-sample groups since clips
differ in length): ``frames`` (T x S x S x 3 uint8 RGB), ``frame_numbers``,
``landmarks`` (68 x 2, onset frame, aligned coordinates) and ``transform`` (2 x 3), with
the sample's fields as meta plus ``n_faces`` (faces found on the onset frame; the
largest is used, see :mod:`mertool.faces`). The alignment itself is
:func:`mertool.preprocess.align.align_clip`.

A clip that cannot be aligned (no face, unreadable frame) is left out with its reason
(listed by ``mertool info``); the others finish.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .. import faces
from ..config import StageConfig
from ..errors import MertoolError
from ..log import logger
from ..preprocess.align import align_clip, template_eyes
from ..preprocess.render import contact_sheet, landmarks_tile
from ..samples import Sample, clip_numbers, load_frames, read_samples
from ._driver import Case, StageResult, run_stage
from .stagefile import StageWriter, open_stage

PREVIEW_COUNT = 16  # clips on the --preview contact sheet


@dataclasses.dataclass
class AlignConfig(StageConfig):
    """Options of the ``align`` stage (recorded in aligned.h5).

    Attributes
    ----------
    size : int
        Side of the square aligned crop in pixels.
    margin : float
        Extra border around the template face, as a fraction of the crop (0 = tight).
    detector : {"hog", "cnn"}
        dlib HOG frontal detector (fast) or the CNN (MMOD) detector (more robust, slow).
    upsample : int
        Times the image is upsampled before detection (finds smaller faces).
    frames : {"all", "keyframes"}
        Store every frame onset..offset, or only onset and apex.
    interpolation : {"cubic", "linear"}
        Resampling used by the warp.
    """

    size: int = 224
    margin: float = 0.1
    detector: str = "hog"
    upsample: int = 1
    frames: str = "all"
    interpolation: str = "cubic"

    def validate(self) -> None:
        if not 16 <= self.size <= 2048:
            raise MertoolError(f"size must be within 16..2048, got {self.size}")
        if not 0 <= self.margin < 2:
            raise MertoolError(f"margin must be within 0..2, got {self.margin}")
        if self.detector not in faces.DETECTORS:
            raise MertoolError(f"detector must be hog or cnn, got {self.detector!r}")
        if not 0 <= self.upsample <= 4:
            raise MertoolError(f"upsample must be within 0..4, got {self.upsample}")
        if self.frames not in ("all", "keyframes"):
            raise MertoolError(f"frames must be all or keyframes, got {self.frames!r}")
        if self.interpolation not in ("cubic", "linear"):
            raise MertoolError(f"interpolation must be cubic or linear, got {self.interpolation!r}")

    def align_options(self) -> dict[str, Any]:
        """The keywords of :func:`~mertool.preprocess.align.align_clip` (all but ``frames``)."""
        return {k: getattr(self, k) for k in ("size", "margin", "detector", "upsample", "interpolation")}


def sample_meta(sample: Sample) -> dict[str, Any]:
    """The per-sample fields every stage file carries in /meta."""
    return {
        "subject": sample.subject,
        "label": sample.label,
        "dataset": sample.dataset,
        "clip": sample.clip,
        "onset": sample.onset,
        "apex": sample.apex,
        "offset": sample.offset,
        "aus": sample.aus,
        "apex_source": sample.apex_source,
    }


def frame_numbers(sample: Sample, frames: str) -> list[int]:
    """The frames ``align`` stores: every one onset..offset (``all``), or onset and apex
    (``keyframes``; the middle frame stands in for an unknown apex)."""
    numbers = clip_numbers(sample)
    if frames == "all":
        return numbers
    apex = sample.apex if sample.apex != -1 else numbers[len(numbers) // 2]
    return [sample.onset, apex]


def align_case(case: Case, *, config: AlignConfig) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and align one clip (module-level: runs in worker processes).

    Raises
    ------
    LookupError
        No face on the onset frame (the reason names the clip and what to try).
    ValueError
        Frames of different sizes.
    MertoolError
        A frame is missing or unreadable.
    """
    sample: Sample = case.inputs
    numbers = frame_numbers(sample, config.frames)
    try:
        result = align_clip(load_frames(sample, numbers), **config.align_options())
    except LookupError:
        raise LookupError(
            f"no face found on the onset frame of {sample.source()}; try --upsample 2 or --detector cnn"
        ) from None
    except ValueError as exc:
        raise ValueError(f"{sample.source()}: {exc}") from None
    n_faces = int(result.pop("n_faces"))
    result["frame_numbers"] = np.asarray(numbers, dtype=np.int64)
    return result, {"n_faces": n_faces}


def run_align(
    samples_csv: str | Path,
    out: str | Path,
    config: AlignConfig | None = None,
    *,
    jobs: int = 1,
    overwrite: bool = False,
    preview: str | Path | None = None,
    progress: bool = True,
) -> StageResult:
    """The ``align`` stage: samples.csv -> aligned.h5 (resumable; see the module docstring).

    Parameters
    ----------
    samples_csv : path
        samples.csv from ``mertool index`` (or ``mertool keyframes``); recorded as the
        file's upstream.
    out : path
        ``aligned.h5`` to write.
    config : AlignConfig, optional
    jobs : int
        Worker processes (-1 = all cores).
    overwrite : bool
        Replace an output made with other parameters or inputs.
    preview : path, optional
        Folder for a PNG contact sheet (onset and apex of the first clips, landmarks and
        template eyes drawn).
    progress : bool
        Show a progress bar.

    Raises
    ------
    MertoolError
        Bad options, unreadable samples.csv, dlib models not installed, or no clip could
        be aligned.
    """
    config = config or AlignConfig()
    config.validate()
    rows = read_samples(samples_csv)
    samples = {s.sample_id: s for s in rows}
    if len(samples) != len(rows):
        twice = sorted(sid for sid, n in Counter(s.sample_id for s in rows).items() if n > 1)
        raise MertoolError(f"{samples_csv}: sample id(s) listed twice: {', '.join(twice[:5])}")
    writer = StageWriter(out, "aligned", config.to_dict(), upstream=[samples_csv], overwrite=overwrite)
    if not writer.complete:  # a missing dlib model is the installation's problem, not each clip's
        faces.face_detector(config.detector)
        faces.landmark_model()
    result = run_stage(
        writer,
        list(samples),
        lambda sid: Case(sid, sample_meta(samples[sid]), samples[sid]),
        functools.partial(align_case, config=config),
        stacked=False,
        desc="align",
        jobs=jobs,
        preview=None if preview is None else functools.partial(write_preview, folder=preview),
        progress=progress,
    )
    if not result.up_to_date:
        _report_faces(result.path)
    return result


def _report_faces(path: Path) -> None:
    sf = open_stage(path)
    for sid, n in zip(sf.sample_ids, sf.meta.get("n_faces", [])):
        if str(n).isdigit() and int(n) > 1:  # "" for clips aligned by an older version
            logger.info(f"sample {sid}: {n} faces found, using the largest")


def write_preview(aligned_h5: str | Path, folder: str | Path, max_samples: int = PREVIEW_COUNT) -> Path:
    """PNG contact sheet: aligned onset and apex of a few clips, landmarks drawn, template eyes marked."""
    sf = open_stage(aligned_h5, expect="aligned")
    if not len(sf):
        raise MertoolError(f"{aligned_h5}: no aligned samples to preview")
    eyes = template_eyes(int(sf.params.get("size", 224)), float(sf.params.get("margin", 0.0)))
    tiles = []
    for sid in sf.sample_ids[:max_samples]:
        data, meta = sf.sample(sid), sf.meta_of(sid)
        numbers = list(data["frame_numbers"])
        apex = meta["apex"] if meta["apex"] in numbers else numbers[len(numbers) // 2]
        pair = [data["frames"][0], data["frames"][numbers.index(apex)]]
        tiles.append(landmarks_tile(pair, data["landmarks"], eyes, f"{sid} [{meta['label']}]"))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "aligned_contact_sheet.png"
    cv2.imwrite(str(path), cv2.cvtColor(contact_sheet(tiles, cols=2), cv2.COLOR_RGB2BGR))
    return path
