"""The ``align`` stage: every clip of samples.csv, face-aligned, into ``aligned.h5``.

Reads samples.csv (from ``mertool index`` or ``mertool keyframes``) and the clips it
points to; writes ``aligned.h5`` (stage ``"aligned"``, per-sample groups since clips
differ in length): ``frames`` (T x S x S x 3 uint8 RGB), ``frame_numbers``,
``landmarks`` (68 x 2, onset frame, aligned coordinates), ``transform`` (2 x 3) and
``valid`` (S x S uint8 validity mask: 1 where the pixel comes from the source image),
with the sample's fields as meta plus ``n_faces`` (faces found on the onset frame; the
largest is used, see :mod:`mertool.faces`), ``crop`` (the policy used), ``valid_fraction``
and ``crop_warning`` (empty, or what looked wrong). The alignment itself is
:func:`mertool.preprocess.align.align_clip`.

Crop policy: ``crop="auto"`` (the default) takes each clip's from its dataset: ``none``
where the dataset adapter declares its frames pre-cropped (CASME II, SAMM), else
``similarity`` (raw video, manifests, the synthetic data, whose face fills about half of
the frame). A clip under :data:`LOW_VALID` valid pixels is warned about by name.

A clip that cannot be aligned (no face, unreadable frame, frames of different sizes) is
left out with its reason (listed by ``mertool info``); the others finish.
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
from ..preprocess.align import CROP_POLICIES, FrameSizeError, align_clip, template_eyes
from ..preprocess.render import contact_sheet, labelled, landmarks_tile, shade_invalid, spread_samples
from ..samples import Sample, clip_fingerprints, clip_numbers, load_frames, read_samples
from ._driver import Case, StageResult, run_stage
from .stagefile import StageFile, StageWriter, open_stage

LOW_VALID = 0.8  # clips with a smaller valid fraction are warned about
SMALL_FACE = 0.2  # crop "none": a landmark box under this fraction of the frame is suspicious


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
        Resampling used by the warp or resize.
    crop : {"auto", "similarity", "box", "none"}
        Crop policy (:mod:`mertool.preprocess.align`); ``auto`` follows each clip's
        dataset (see the module docstring).
    """

    size: int = 224
    margin: float = 0.1
    detector: str = "hog"
    upsample: int = 1
    frames: str = "all"
    interpolation: str = "cubic"
    crop: str = "auto"

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
        if self.crop not in ("auto", *CROP_POLICIES):
            raise MertoolError(f"crop must be one of auto, {', '.join(CROP_POLICIES)}, got {self.crop!r}")

    def align_options(self, crop: str) -> dict[str, Any]:
        """The keywords of :func:`~mertool.preprocess.align.align_clip` (all but ``frames``)
        for a clip whose policy (``auto`` resolved) is ``crop``."""
        options = {k: getattr(self, k) for k in ("size", "margin", "detector", "upsample", "interpolation")}
        return {**options, "crop": crop}


def default_crop(dataset: str) -> str:
    """The ``auto`` crop policy of a clip of ``dataset``: ``none`` when its adapter declares
    the frames pre-cropped, else ``similarity``."""
    from .. import datasets  # fills the adapter registry (the adapters import pandas: not at start-up)

    return "none" if datasets._registry.is_pre_cropped(dataset) else "similarity"


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

    ``case.inputs`` is ``(sample, crop policy)``.

    Raises
    ------
    LookupError
        No face on the onset frame (the reason names the clip and what to try).
    ValueError
        Frames of different sizes (naming the clip and the frame).
    MertoolError
        A frame is missing or unreadable.
    """
    sample, crop = case.inputs
    numbers = frame_numbers(sample, config.frames)
    try:
        result = align_clip(load_frames(sample, numbers), **config.align_options(crop))
    except LookupError:  # crop "none" does without a face
        raise LookupError(
            f"no face found on the onset frame of {sample.source()} (--crop {crop}); try --upsample 2 or "
            "--detector cnn, or --crop none for frames that are already face crops"
        ) from None
    except FrameSizeError as exc:
        (h, w), (h0, w0) = exc.shape, exc.first
        raise ValueError(
            f"sample {sample.sample_id} ({sample.source()}): frame {numbers[exc.index]} is {w}x{h}, "
            f"but frame {numbers[0]} is {w0}x{h0}; every frame of a clip must have one size"
        ) from None
    except ValueError as exc:
        raise ValueError(f"{sample.source()}: {exc}") from None
    n_faces, valid = int(result.pop("n_faces")), result["valid"]
    result["frame_numbers"] = np.asarray(numbers, dtype=np.int64)
    update = {
        "n_faces": n_faces,
        "crop": crop,
        "valid_fraction": round(float(valid.mean()), 4),
        "crop_warning": _crop_warning(crop, n_faces, bool(result.pop("clamped")), float(result.pop("face_fraction"))),
    }
    return result, update


def _crop_warning(crop: str, n_faces: int, clamped: bool, face_fraction: float) -> str:
    """What looked wrong with a clip's crop ("" when nothing did)."""
    if clamped:
        return "the face lies partly outside the frame: the box was clamped to the image"
    if crop == "none" and n_faces == 0:
        return "no face found on the onset frame (landmarks left empty; frames used as they are)"
    if crop == "none" and face_fraction < SMALL_FACE:
        return (
            f"the face covers only {face_fraction:.0%} of the frame: are these frames face crops? "
            "(try --crop box or --crop similarity)"
        )
    return ""


def run_align(
    samples_csv: str | Path,
    out: str | Path,
    config: AlignConfig | None = None,
    *,
    jobs: int = 1,
    overwrite: bool = False,
    preview: str | Path | None = None,
    progress: bool = True,
    compression: str | None = None,
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
        Folder for a PNG contact sheet (:func:`write_preview`: onset and apex of clips
        covering every subject and class, landmarks drawn, invalid pixels shaded).
    progress : bool
        Show a progress bar.
    compression : str, optional
        How aligned.h5 stores its arrays: ``lzf`` (None: the default for a new file; an
        up-to-date file is kept as it is), ``gzip``, ``gzip:LEVEL`` or ``none``. Not part
        of the key: asking an up-to-date file for another re-packs it without
        recomputing (:class:`~mertool.stages.stagefile.StageWriter`).

    Raises
    ------
    UsageError
        An unknown ``compression``.
    MertoolError
        Bad options, unreadable samples.csv, dlib models not installed, or no clip could
        be aligned.
    """
    config = config or AlignConfig()
    config.validate()
    rows = read_samples(samples_csv)
    samples = {s.sample_id: s for s in rows}  # ids are unique (read_samples checks)
    writer = StageWriter(
        out, "aligned", config.to_dict(), upstream=[samples_csv], overwrite=overwrite,
        fingerprints=clip_fingerprints(rows), compression=compression,
    )
    if not writer.complete:  # a missing dlib model is the installation's problem, not each clip's
        faces.face_detector(config.detector)
        faces.landmark_model()
    crops = {sid: config.crop if config.crop != "auto" else default_crop(s.dataset) for sid, s in samples.items()}
    how = "" if config.crop != "auto" else " (auto: from each dataset's pre-cropped declaration)"
    counts = Counter(crops.values())
    logger.info("crop " + ", ".join(f"{crop} for {n} clip(s)" for crop, n in sorted(counts.items())) + how)
    result = run_stage(
        writer,
        list(samples),
        lambda sid: Case(sid, sample_meta(samples[sid]), (samples[sid], crops[sid])),
        functools.partial(align_case, config=config),
        stacked=False,
        desc="align",
        jobs=jobs,
        preview=None if preview is None else functools.partial(write_preview, folder=preview),
        progress=progress,
    )
    if not result.up_to_date:
        _report(open_stage(result.path))
    return result


def _report(sf: StageFile) -> None:
    """Log what deserves a look: several faces, crop warnings, clips under :data:`LOW_VALID` valid."""
    for sid in sf.sample_ids:
        meta = sf.meta_of(sid)
        if isinstance(meta.get("n_faces"), int) and meta["n_faces"] > 1:  # "" in files of older versions
            logger.warning(f"sample {sid}: {meta['n_faces']} faces found, using the largest (check its crop in the preview)")
        if meta.get("crop_warning"):
            logger.warning(f"sample {sid}: {meta['crop_warning']}")
    summary = valid_fraction_summary(sf)
    for sid, fraction in (summary or {}).get("low", {}).items():
        logger.warning(
            f"sample {sid}: only {fraction:.0%} of its aligned pixels come from the image "
            f"(crop {sf.meta_of(sid).get('crop')}; the rest replicates the border and is masked out)"
        )


def valid_fraction_summary(stage_file: StageFile | str | Path, threshold: float = LOW_VALID) -> dict[str, Any] | None:
    """Valid fraction of the clips of an aligned file (or a file made from one).

    Parameters
    ----------
    stage_file : StageFile or path
        A stage file whose per-sample meta has ``valid_fraction`` (``mertool align``
        writes it; ``flow``, ``dynimg`` and ``pairs`` files carry the aligned meta on).
    threshold : float
        Clips below it are listed in ``low``.

    Returns
    -------
    dict or None
        ``{"clips": n, "min": f, "median": f, "low": {sample_id: f}}`` over the clips
        that record it; None when none does (a file from before validity masks).
    """
    sf = open_stage(stage_file)
    found = {
        sid: float(v)
        for sid, v in zip(sf.sample_ids, sf.meta.get("valid_fraction", []))
        if isinstance(v, (int, float)) and np.isfinite(v)
    }
    if not found:
        return None
    values = np.array(list(found.values()))
    return {
        "clips": len(found),
        "min": float(values.min()),
        "median": float(np.median(values)),
        "low": {sid: f for sid, f in found.items() if f < threshold},
    }


def write_preview(aligned_h5: str | Path, folder: str | Path, max_samples: int | None = None) -> Path:
    """PNG contact sheet: aligned onset and apex of clips covering every subject and class
    (:func:`~.render.spread_samples`; ``max_samples`` caps them), landmarks drawn, pixels
    from outside the image shaded, the template eyes marked on ``similarity`` crops."""
    sf = open_stage(aligned_h5, expect="aligned")
    if not len(sf):
        raise MertoolError(f"{aligned_h5}: no aligned samples to preview")
    eyes = template_eyes(int(sf.params.get("size", 224)), float(sf.params.get("margin", 0.0)))
    tiles, crops = [], {}
    ids = sf.sample_ids
    for i in spread_samples(sf.meta.get("subject", ids), sf.meta.get("label", ids), max_samples):
        sid = ids[i]
        data, meta = sf.sample(sid), sf.meta_of(sid)
        numbers = list(data["frame_numbers"])
        apex = meta["apex"] if meta["apex"] in numbers else numbers[len(numbers) // 2]
        pair = [data["frames"][0], data["frames"][numbers.index(apex)]]
        if "valid" in data:
            pair = [shade_invalid(f, data["valid"]) for f in pair]
        crop = meta.get("crop") or "similarity"  # files from before crop policies
        marks = eyes if crop == "similarity" else np.zeros((0, 2))
        who = sid if str(meta.get("subject", "")) in sid else f"{sid} ({meta.get('subject')})"
        text = f"{who} {meta['label']}, apex {apex}"
        crops[crop] = crops.get(crop, 0) + 1
        if isinstance(meta.get("valid_fraction"), float) and meta["valid_fraction"] < 1:
            text += f", {meta['valid_fraction']:.0%} valid"
        tiles.append(labelled(landmarks_tile(pair, data["landmarks"], marks, ""), text))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "aligned_contact_sheet.png"
    legend = ["green dots: the 68 landmarks found on the onset frame",
              "red +: template eye centres (where a similarity crop puts the eyes)",
              "magenta: pixels from outside the source frame (border replicated)",
              "crop: " + ", ".join(f"{crop} ({n} clip(s))" for crop, n in sorted(crops.items()))]
    sheet = contact_sheet(tiles, cols=2 if len(tiles) <= 8 else 4, columns=("onset", "apex"), legend=legend)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return path
