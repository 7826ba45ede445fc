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
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import h5py
import numpy as np

from ..stages.stagefile import StageWriter, open_stage
from ..config import StageConfig
from ..errors import MertoolError
from ..log import logger
from ..parallel import parallel_map
from ..samples import read_samples

KINDS = ("linear", "reverse", "exact")
STAGE_KINDS = ("linear", "exact")
PHASES = ("onset", "offset", "whole")
NORMALIZATIONS = ("minmax", "standardize", "none")
FRAME_NORMS = ("none", "mean")
CHUNK = 32  # frames read from HDF5 at a time: bounds memory for very long clips
PREVIEW_COUNT = 4
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


def _phase_span(name: str, onset: int, apex: int, offset: int) -> tuple[int, int]:
    return {"onset": (onset, apex), "offset": (apex, offset), "whole": (onset, offset)}[name]


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
        if name not in PHASES:
            raise ValueError(f"unknown phase {name!r}; valid: {', '.join(PHASES)}")
        lo, hi = _phase_span(name, onset, apex, offset)
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


def _accumulate(
    chunks: Iterable[np.ndarray],
    weights: np.ndarray,
    preprocess: Callable[[np.ndarray], np.ndarray] | None,
) -> np.ndarray:
    """sum_t weights[:, t] * preprocess(F_t) over a stream of frame blocks (float64)."""
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
    acc = _accumulate(_chunks_of(frames, CHUNK), np.atleast_2d(w), preprocess)
    return acc[0] if w.ndim == 1 else acc


def subtract_frame_mean(frame: np.ndarray) -> np.ndarray:
    """Per-frame preprocessing: remove each channel's spatial mean (brightness flicker)."""
    return frame - frame.mean(axis=(0, 1), keepdims=True)


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


def normalize_image(image: np.ndarray, method: str = "minmax") -> np.ndarray:
    """Rescale one dynamic image (all channels jointly, so colour balance is kept).

    Parameters
    ----------
    image : array
    method : {"minmax", "standardize", "none"}
        ``minmax``: linear map of min..max onto 0..255; ``standardize``: zero mean, unit
        standard deviation; ``none``: unchanged. A constant image becomes all zeros
        under both rescalings (it carries no motion).

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
    if method == "minmax":
        lo, hi = img.min(), img.max()
        return np.zeros_like(img) if hi - lo <= 1e-9 * max(1.0, abs(hi)) else (img - lo) * (255.0 / (hi - lo))
    sd = img.std()
    return np.zeros_like(img) if sd <= 1e-9 * max(1.0, abs(img.mean())) else (img - img.mean()) / sd


def to_model_input(di: np.ndarray, size: int, channels: int, normalize: str) -> np.ndarray:
    """H x W x C dynamic image -> C' x size x size float32 (gray if channels == 1)."""
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
    img = normalize_image(img, normalize)
    return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)


# --------------------------------------------------------------------------- stage


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
    """

    phases: str = "onset,offset"
    kind: str = "linear"
    size: int = 224
    channels: int = 3
    normalize: str = "minmax"
    frame_norm: str = "none"

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
                f"--phases {self.phases!r}: give a comma list of distinct phases from "
                f"{', '.join(PHASES)} (e.g. onset,offset or whole)"
            )
        if self.kind not in STAGE_KINDS:
            raise MertoolError(f"--kind {self.kind!r}: choose {' or '.join(STAGE_KINDS)}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 8 <= self.size <= 4096:
            raise MertoolError(f"--size {self.size!r}: must be an integer in 8..4096")
        if self.channels not in (1, 3):
            raise MertoolError(f"--channels {self.channels!r}: must be 1 (gray) or 3 (RGB)")
        if self.normalize not in NORMALIZATIONS:
            raise MertoolError(f"--normalize {self.normalize!r}: choose {', '.join(NORMALIZATIONS)}")
        if self.frame_norm not in FRAME_NORMS:
            raise MertoolError(f"--frame-norm {self.frame_norm!r}: choose {', '.join(FRAME_NORMS)}")


def _frames_path(layout: str, row: int) -> tuple[str, int | None]:
    """Where a sample's frames live in a stage file (per-sample group or stacked row)."""
    return (f"samples/{row}/frames", None) if layout != "stacked" else ("data/frames", row)


def _read_chunks(path: str, layout: str, row: int, chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """Stream a sample's frames from aligned.h5, ``chunk`` frames at a time."""
    name, stacked_row = _frames_path(layout, row)
    with h5py.File(path, "r") as h5:
        ds = h5[name]
        T = ds.shape[0] if stacked_row is None else ds.shape[1]
        for i in range(0, T, chunk):
            block = ds[i : i + chunk] if stacked_row is None else ds[stacked_row, i : i + chunk]
            if block.ndim == 3:
                block = block[..., None]
            yield block


def _dynimg_one(task: tuple) -> tuple[str, dict[str, np.ndarray] | None, str | None]:
    """Worker: one sample's phase dynamic images (picklable; runs in a worker process)."""
    path, layout, row, sid, numbers, keys, cfg = task
    try:
        w = phase_weights(numbers, *keys, phases=cfg["phase_list"], kind=cfg["kind"])
        pre = subtract_frame_mean if cfg["frame_norm"] == "mean" else None
        dis = _accumulate(_read_chunks(path, layout, row), w, pre)
        stack = np.stack([to_model_input(d, cfg["size"], cfg["channels"], cfg["normalize"]) for d in dis])
        spans = [_phase_span(p, *keys) for p in cfg["phase_list"]]
        lengths = np.array([np.count_nonzero((numbers >= lo) & (numbers <= hi)) for lo, hi in spans], np.int64)
        return sid, {"dynimg": stack, "phase_frames": lengths}, None
    except (ValueError, OSError, KeyError) as exc:
        return sid, None, f"{type(exc).__name__}: {exc}"


def _apex_overrides(samples_csv: str | Path, sample_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
    rows = {s.sample_id: s for s in read_samples(samples_csv)}
    missing = [sid for sid in sample_ids if sid not in rows]
    if missing:
        raise MertoolError(
            f"{samples_csv}: no row for sample(s) {', '.join(missing[:5])}"
            + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            + " of the aligned file; pass the samples.csv the clips were aligned from"
        )
    return {sid: (int(rows[sid].apex), rows[sid].apex_source) for sid in sample_ids}


def _plan(
    sf: Any, config: DynimgConfig, samples_csv: str | Path | None
) -> list[tuple[str, np.ndarray, tuple[int, int, int], dict]]:
    """Check every sample before any work: apex known, full clip present."""
    phases = config.phase_list()
    needs_apex = any(p != "whole" for p in phases)
    overrides = _apex_overrides(samples_csv, sf.sample_ids) if samples_csv is not None else {}
    keyframes_file = str(sf.params.get("frames", "")) == "keyframes"
    plan = []
    with h5py.File(sf.path, "r") as h5:
        for sid in sf.sample_ids:
            meta = dict(sf.meta_of(sid))
            if sid in overrides:
                meta["apex"], meta["apex_source"] = overrides[sid]
            row = sf.row(sid)
            name, stacked_row = _frames_path(sf.layout, row)
            nums_name = name.replace("frames", "frame_numbers")
            if nums_name not in h5 or name not in h5:
                raise MertoolError(f"{sf.path}: sample {sid} has no frames/frame_numbers arrays; is it an aligned.h5?")
            numbers = np.asarray(h5[nums_name][...] if stacked_row is None else h5[nums_name][stacked_row], dtype=np.int64)
            onset, apex, offset = int(meta["onset"]), int(meta.get("apex", -1)), int(meta["offset"])
            span = offset - onset + 1
            if keyframes_file or (numbers.size == 2 and span > 2 and list(numbers) == [onset, apex]):
                raise MertoolError(
                    f"sample {sid}: aligned with --frames keyframes (only onset and apex); dynamic images "
                    "need every frame onset..offset: re-run `mertool align` without --frames keyframes"
                )
            if needs_apex and apex == -1:
                raise MertoolError(
                    f"sample {sid}: apex unknown (-1); phase dynamic images split the clip at the apex: "
                    "run `mertool keyframes` and pass its samples.csv with --samples, or use --phases whole"
                )
            if needs_apex and not onset <= apex <= offset:
                raise MertoolError(f"sample {sid}: apex {apex} outside onset..offset ({onset}..{offset})")
            for p in phases:
                lo, hi = _phase_span(p, onset, apex, offset)
                if not np.any((numbers >= lo) & (numbers <= hi)):
                    raise MertoolError(
                        f"sample {sid}: no aligned frame in phase {p} ({lo}..{hi}); frames are "
                        f"{numbers.min()}..{numbers.max()}"
                    )
            plan.append((sid, numbers, (onset, apex if needs_apex else onset, offset), meta))
    return plan


def run_dynimg(
    aligned_h5: str | Path,
    out: str | Path,
    config: DynimgConfig | None = None,
    samples_csv: str | Path | None = None,
    jobs: int = 1,
    overwrite: bool = False,
    preview: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """The ``dynimg`` stage: aligned.h5 -> dynimg.h5 (resumable).

    Parameters
    ----------
    aligned_h5 : path
        Stage "aligned" file: per sample ``frames`` (T x S x S x 3 uint8, all frames
        onset..offset) and ``frame_numbers``.
    out : path
        dynimg.h5 to write: stacked ``dynimg`` (N x P x C x size x size float32) and
        ``phase_frames`` (N x P int64, frames per phase), meta copied from the input.
    config : DynimgConfig, optional
        Defaults: DIANet's onset,offset phases, linear weights, 224 px, min-max.
    samples_csv : path, optional
        samples.csv whose apex (e.g. from ``mertool keyframes``) overrides the aligned
        file's; must list every aligned sample.
    jobs : int
        Worker processes.
    overwrite : bool
        Replace an output (or unfinished work) made with other parameters or inputs.
    preview : path, optional
        Folder for PNGs (onset, apex, offset frames beside the dynamic images) of the
        first few samples.

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    MertoolError
        Input not an aligned stage file, apex unknown where a phase needs it, a clip
        aligned with ``--frames keyframes``, samples.csv lacking a sample, bad options.
    """
    config = config or DynimgConfig()
    config.validate()
    sf = open_stage(aligned_h5, expect="aligned")
    if len(sf) == 0:
        raise MertoolError(f"{aligned_h5}: holds no samples")
    plan = _plan(sf, config, samples_csv)
    upstream = [aligned_h5] + ([samples_csv] if samples_csv is not None else [])
    writer = StageWriter(out, "dynimg", config.to_dict(), upstream=upstream, overwrite=overwrite)
    order = [sid for sid, *_ in plan]
    if not writer.complete:
        cfg = {**config.to_dict(), "phase_list": config.phase_list()}
        todo = set(writer.pending(order))
        tasks = [(str(sf.path), sf.layout, sf.row(sid), sid, nums, keys, cfg)
                 for sid, nums, keys, _ in plan if sid in todo]
        metas = {sid: meta for sid, _, _, meta in plan}
        for sid, arrays, error in parallel_map(_dynimg_one, tasks, jobs=jobs, desc="dynimg", progress=progress):
            if error is not None:
                logger.warning(f"sample {sid}: {error}")
                writer.fail(sid, error)
            else:
                writer.add(sid, arrays, _json_meta(metas[sid]))
        failed = writer.failures()
        writer.finish(order, stacked=True)
        note = f", {len(failed)} failed (see `mertool info`)" if failed else ""
        logger.info(f"{out}: {len(order) - len(failed)} samples x {len(config.phase_list())} phase(s){note}")
    if preview is not None:
        write_previews(sf, out, preview, plan[:PREVIEW_COUNT], config.phase_list())
    return Path(out)


def _json_meta(meta: dict) -> dict:
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in meta.items()}


# --------------------------------------------------------------------------- previews


def write_previews(sf: Any, out: str | Path, folder: str | Path, plan: list, phases: list[str]) -> list[Path]:
    """PNG per sample: onset, apex, offset frames, then each phase's dynamic image."""
    from .render import display_tile, frame_tile, labelled

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    result = open_stage(out, expect="dynimg")
    written = []
    with h5py.File(sf.path, "r") as h5:
        for sid, numbers, (onset, apex, offset), meta in plan:
            if sid not in result.sample_ids:
                continue
            got = result.sample(sid, ["dynimg", "phase_frames"])
            dis, lengths = got["dynimg"], got["phase_frames"]
            side = dis.shape[-1]
            name, stacked_row = _frames_path(sf.layout, sf.row(sid))
            ds = h5[name]
            tiles = []
            key_frames = [("onset", onset), ("apex", int(meta.get("apex", -1))), ("offset", offset)]
            for label, number in key_frames:
                if number < 0:
                    continue
                i = int(np.argmin(np.abs(numbers - number)))
                frame = ds[i] if stacked_row is None else ds[stacked_row, i]
                frame = frame if frame.ndim == 3 else frame[:, :, None]
                tiles.append(labelled(frame_tile(frame, side), f"{label} {numbers[i]}"))
            for p, phase in enumerate(phases):
                tiles.append(labelled(display_tile(dis[p], side), f"DI-{phase} ({lengths[p]}f)"))
            gap = np.full((side + 22, 4, 3), 255, np.uint8)
            row_img = np.hstack([x for t in tiles for x in (t, gap)][:-1])
            path = folder / (re.sub(r"[^A-Za-z0-9_.-]+", "_", sid) + ".png")
            cv2.imwrite(str(path), cv2.cvtColor(row_img, cv2.COLOR_RGB2BGR))
            written.append(path)
    return written
