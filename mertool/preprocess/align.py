"""Face alignment: dlib detection + 68 landmarks on the onset frame, one similarity
transform per clip applied to every frame (so the motion between frames is kept).

The transform maps the two eye centres of the onset frame exactly onto the template's
eye positions (rotation, uniform scale, translation). Using one transform for the whole
clip matters: re-aligning each frame would erase the very motion micro-expression
recognition looks for.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ..stages.stagefile import StageWriter, open_stage
from ..config import StageConfig
from ..errors import MertoolError
from ..log import logger
from ..parallel import parallel_map
from ..samples import Sample, clip_numbers, load_frames

# Template eye centres at margin 0, as fractions of the crop size (x, y).
TEMPLATE_LEFT_EYE = (0.30, 0.36)
TEMPLATE_RIGHT_EYE = (0.70, 0.36)
LEFT_EYE_IDX = slice(36, 42)  # image-left eye (the subject's right eye) in dlib's 68 points
RIGHT_EYE_IDX = slice(42, 48)


@dataclasses.dataclass
class AlignConfig(StageConfig):
    """Parameters of ``mertool align``.

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
            raise MertoolError(f"--size must be within 16..2048, got {self.size}")
        if not 0 <= self.margin < 2:
            raise MertoolError(f"--margin must be within 0..2, got {self.margin}")
        if self.detector not in ("hog", "cnn"):
            raise MertoolError(f"--detector must be hog or cnn, got {self.detector!r}")
        if not 0 <= self.upsample <= 4:
            raise MertoolError(f"--upsample must be within 0..4, got {self.upsample}")
        if self.frames not in ("all", "keyframes"):
            raise MertoolError(f"--frames must be all or keyframes, got {self.frames!r}")
        if self.interpolation not in ("cubic", "linear"):
            raise MertoolError(f"--interpolation must be cubic or linear, got {self.interpolation!r}")


def template_eyes(size: int, margin: float = 0.0) -> np.ndarray:
    """Template eye centres (2 x 2: left, right) in pixels for a ``size`` crop."""
    eyes = np.array([TEMPLATE_LEFT_EYE, TEMPLATE_RIGHT_EYE], dtype=np.float64)
    return (0.5 + (eyes - 0.5) / (1.0 + 2.0 * margin)) * size


def _model_file(name: str) -> str:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise MertoolError("the face-recognition-models package is not installed (pip install face-recognition-models)")
    path = Path(spec.origin).parent / "models" / name
    if not path.is_file():
        raise MertoolError(f"{path}: dlib model file missing from face-recognition-models")
    return str(path)


@lru_cache(maxsize=None)
def _detector(kind: str):
    import dlib

    if kind == "cnn":
        return dlib.cnn_face_detection_model_v1(_model_file("mmod_human_face_detector.dat"))
    return dlib.get_frontal_face_detector()


@lru_cache(maxsize=None)
def _predictor():
    import dlib

    return dlib.shape_predictor(_model_file("shape_predictor_68_face_landmarks.dat"))


def detect_landmarks(image: np.ndarray, detector: str = "hog", upsample: int = 1) -> tuple[np.ndarray, int]:
    """Detect faces and return the 68 landmarks of the largest one.

    Parameters
    ----------
    image : ndarray
        RGB uint8 image (H x W x 3).
    detector : {"hog", "cnn"}
    upsample : int

    Returns
    -------
    landmarks : ndarray
        68 x 2 float64 (x, y) in image pixels.
    n_faces : int
        How many faces were found (the largest is used).

    Raises
    ------
    LookupError
        No face found.
    """
    import dlib

    found = _detector(detector)(image, upsample)
    rects = [d.rect if hasattr(d, "rect") else d for d in found]
    if not rects:
        raise LookupError("no face found")
    rect = max(rects, key=lambda r: r.width() * r.height())
    shape = _predictor()(image, dlib.rectangle(rect.left(), rect.top(), rect.right(), rect.bottom()))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64), len(rects)


def similarity_from_eyes(landmarks: np.ndarray, size: int, margin: float) -> np.ndarray:
    """2 x 3 similarity transform taking the landmarks' eye centres onto the template's."""
    src = np.array([landmarks[LEFT_EYE_IDX].mean(0), landmarks[RIGHT_EYE_IDX].mean(0)])
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
    return points @ transform[:, :2].T + transform[:, 2]


def align_clip(frames: list[np.ndarray], config: AlignConfig | None = None, reference: int = 0) -> dict[str, np.ndarray]:
    """Align a clip with one transform found on its reference (onset) frame.

    Parameters
    ----------
    frames : list of ndarray
        RGB uint8 frames of one clip, all the same size.
    config : AlignConfig, optional
    reference : int
        Index of the frame used for detection (the onset).

    Returns
    -------
    dict
        ``frames`` (T x S x S x 3 uint8), ``landmarks`` (68 x 2 float32, reference frame,
        aligned coordinates), ``transform`` (2 x 3 float64), ``n_faces`` (int).

    Raises
    ------
    LookupError
        No face on the reference frame.
    ValueError
        Frames of different sizes.
    """
    cfg = config or AlignConfig()
    if not frames:
        raise ValueError("no frames")
    shape = frames[0].shape[:2]
    for i, f in enumerate(frames):
        if f.shape[:2] != shape:
            raise ValueError(f"frame {i} is {f.shape[1]}x{f.shape[0]}, the first is {shape[1]}x{shape[0]}")
    landmarks, n_faces = detect_landmarks(frames[reference], cfg.detector, cfg.upsample)
    transform = similarity_from_eyes(landmarks, cfg.size, cfg.margin)
    aligned = np.stack([warp(f, transform, cfg.size, cfg.interpolation) for f in frames])
    return {
        "frames": aligned,
        "landmarks": transform_points(landmarks, transform).astype(np.float32),
        "transform": transform,
        "n_faces": np.int64(n_faces),
    }


def _keyframe_numbers(sample: Sample, cfg: AlignConfig) -> list[int]:
    numbers = clip_numbers(sample)
    if cfg.frames == "all":
        return numbers
    apex = sample.apex if sample.apex != -1 else numbers[len(numbers) // 2]
    return [sample.onset, apex] if apex != sample.onset else [sample.onset, sample.onset]


def sample_meta(sample: Sample) -> dict:
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


def _align_sample(job: tuple[Sample, AlignConfig]) -> tuple[str, dict | None, str]:
    sample, cfg = job
    try:
        numbers = _keyframe_numbers(sample, cfg)
        frames = load_frames(sample, numbers)
        result = align_clip(frames, cfg, reference=0)
    except MertoolError as exc:
        return sample.sample_id, None, str(exc)
    except LookupError:
        return sample.sample_id, None, (
            f"no face found on the onset frame of {sample.source()}; "
            "try --upsample 2 or --detector cnn"
        )
    except ValueError as exc:
        return sample.sample_id, None, f"{sample.source()}: {exc}"
    result["frame_numbers"] = np.asarray(numbers, dtype=np.int64)
    return sample.sample_id, result, ""


def run_align(
    samples: list[Sample],
    out: str | Path,
    config: AlignConfig,
    upstream: list[str | Path] = (),
    jobs: int = 1,
    overwrite: bool = False,
    preview: str | Path | None = None,
    progress: bool = True,
) -> tuple[Path, dict[str, str]]:
    """Align every sample and write aligned.h5 (resumable).

    Returns
    -------
    path : Path
        The finished stage file.
    failed : dict
        sample_id -> reason for clips that could not be aligned (e.g. no face).
    """
    writer = StageWriter(out, "aligned", config.to_dict(), upstream=upstream, overwrite=overwrite)
    if writer.complete:
        logger.info(f"{out}: up to date ({len(samples)} samples), nothing to do")
        failed = open_stage(out).failed
    else:
        by_id = {s.sample_id: s for s in samples}
        jobs_list = [(by_id[sid], config) for sid in writer.pending(by_id)]
        for sid, result, reason in parallel_map(_align_sample, jobs_list, jobs=jobs, desc="align", progress=progress):
            if result is None:
                writer.fail(sid, reason)
                continue
            n_faces = int(result.pop("n_faces"))
            if n_faces > 1:
                logger.info(f"sample {sid}: {n_faces} faces found, using the largest")
            writer.add(sid, result, sample_meta(by_id[sid]))
        failed = writer.failures()
        writer.finish([s.sample_id for s in samples], stacked=False)
    if failed:
        logger.warning(f"{len(failed)} clip(s) not aligned: " + "; ".join(f"{k}: {v}" for k, v in failed.items()))
    if preview is not None:
        write_preview(out, preview)
    return Path(out), failed


def write_preview(aligned_h5: str | Path, folder: str | Path, max_samples: int = 16) -> Path:
    """PNG contact sheet: aligned onset and apex of a few clips, landmarks drawn, template eyes marked."""
    sf = open_stage(aligned_h5, expect="aligned")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tiles = []
    size = int(sf.params.get("size", 224))
    eyes = template_eyes(size, float(sf.params.get("margin", 0.0)))
    for sid in sf.sample_ids[:max_samples]:
        data = sf.sample(sid)
        meta = sf.meta_of(sid)
        numbers = list(data["frame_numbers"])
        apex = meta["apex"] if meta["apex"] in numbers else numbers[len(numbers) // 2]
        pair = []
        for idx in (0, numbers.index(apex)):
            img = cv2.cvtColor(data["frames"][idx], cv2.COLOR_RGB2BGR)
            for x, y in data["landmarks"]:
                cv2.circle(img, (int(round(x)), int(round(y))), 1, (0, 255, 0), -1)
            for x, y in eyes:
                cv2.drawMarker(img, (int(round(x)), int(round(y))), (0, 0, 255), cv2.MARKER_CROSS, 8, 1)
            pair.append(img)
        tile = np.concatenate(pair, axis=1)
        cv2.putText(tile, f"{sid} [{meta['label']}]", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
        tiles.append(tile)
    if not tiles:
        raise MertoolError(f"{aligned_h5}: no aligned samples to preview")
    cols = 2
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i : i + cols], axis=1) for i in range(0, len(tiles), cols)]
    path = folder / "aligned_contact_sheet.png"
    cv2.imwrite(str(path), np.concatenate(rows, axis=0))
    return path
