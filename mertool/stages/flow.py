"""The ``flow`` stage: TV-L1 flow and optical strain between key frames of aligned clips.

Reads ``aligned.h5`` (``mertool align``) and writes ``flow.h5`` (stage ``flow``): with
``pairs="apex"`` the onset->apex maps, stacked as ``flow`` N x 3 x S x S float32 (u, v,
strain); with ``pairs="all"`` onset->every frame, per sample ``flow`` T x 3 x S x S plus
``frame_numbers``. Per-sample meta is the aligned file's, with the ``--samples`` apex
applied (:func:`._driver.apex_overrides`). Where the aligned clip has a validity mask
(``valid``), map pixels from outside the source image are set to 0 (``invalid="zero"``,
after normalising over the valid ones) or kept (``invalid="keep"``).

Presets (:attr:`FlowConfig.PRESETS`) reproduce published inputs, each from its source:

``offtanet``
    Off-TANet (Zhang, Liu & Zhou, PRICAI 2021) and the authors' released preprocessing:
    frames resized to 112 x 112 (bicubic) before gray, OpenCV Dual TV-L1 with its
    defaults, strain from raw ``cv2.Sobel`` derivatives (float32, ksize 3, no division)
    with the paper's Eq. 4 (``strain_formula="published"`` is the authors' code path,
    u_y^2 in place of v_y^2). For the exact inputs, align with ``--crop none --size 112``
    (the dataset crop resized once).
``ststnet``
    STSTNet (Liong et al., FG 2019) and the widely shared composite (MEGC 2019) inputs:
    28 x 28 u, v, strain maps, each channel min-max scaled to 0..255 per sample
    (``minmax255``), stored u, v, strain -- the order ``mertool import`` gives those
    images, so features made here and imported composite images share one scale.

The algorithms are :mod:`mertool.preprocess.tvl1` and :mod:`mertool.preprocess.strain`.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from ..config import StageConfig
from ..device import resolve_device
from ..errors import MertoolError
from ..io import safe_name
from ..log import logger
from ..preprocess.render import display_scale, edge_band, flow_preview, spread_samples
from ..preprocess.strain import INVALID_MODES, NORMALISATIONS, STRAIN_FORMULAS, STRAIN_METHODS, flow_features
from ..preprocess.tvl1 import prepare_frame, tvl1_many
from ..preprocess.tvl1_params import BACKENDS, TVL1Params, check_backend
from ._driver import Case, Output, StageResult, apex_overrides, case_meta, inputs_of, run_stage
from .stagefile import StageFile, StageWriter, open_stage

PAIR_MODES = ("apex", "all")

_TVL1 = TVL1Params()  # OpenCV's defaults, the TV-L1 fields' defaults below


@dataclasses.dataclass
class FlowConfig(StageConfig):
    """Options of the ``flow`` stage (defaults = the ``offtanet`` preset).

    ``flow_size``: frames are resized (bicubic) to this before the flow (0 = aligned
    size); ``size``: side of the stored maps. ``pairs``: ``apex`` (onset->apex, stacked
    N x 3 x S x S) or ``all`` (onset->every frame, T x 3 x S x S per sample).
    ``strain``, ``strain_formula``, ``normalise``, ``rescale_flow``, ``invalid``: see
    :func:`mertool.preprocess.strain.flow_features`. The fields from ``tau`` on are
    :class:`~mertool.preprocess.tvl1.TVL1Params` (:meth:`tvl1`), kept flat so that the
    recorded parameters stay one flat dict.
    """

    #: Presets only set defaults; every value stays overridable and is recorded.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # Off-TANet (PRICAI 2021, authors' preprocessing): onset/apex resized to 112x112
        # (bicubic), grayscale, OpenCV defaults, strain Eq. 4 from raw 3x3 cv2.Sobel
        # derivatives, channels u, v, strain, no normalisation.
        "offtanet": {"flow_size": 112, "size": 112, "strain": "sobel-raw", "strain_formula": "eq4", "normalise": "none"},
        # STSTNet (FG 2019) / composite MEGC 2019 images: 28x28 u, v, strain (flow at
        # 112, area-resized to 28), each channel min-max to 0..255 per sample.
        "ststnet": {"flow_size": 112, "size": 28, "strain": "sobel", "strain_formula": "eq4", "normalise": "minmax255"},
    }
    #: Other spellings accepted as keys (YAML or flags); the recorded field name stays ``normalise``.
    ALIASES: ClassVar[dict[str, str]] = {"lambda": "lambda_", "normalize": "normalise"}

    preset: str = "offtanet"
    size: int = 112
    flow_size: int = 112
    pairs: str = "apex"
    normalise: str = "none"
    strain: str = "sobel-raw"
    strain_formula: str = "eq4"
    rescale_flow: bool = True
    invalid: str = "zero"
    backend: str = "opencv"
    tau: float = _TVL1.tau
    lambda_: float = _TVL1.lambda_
    theta: float = _TVL1.theta
    nscales: int = _TVL1.nscales
    warps: int = _TVL1.warps
    epsilon: float = _TVL1.epsilon
    inner_iterations: int = _TVL1.inner_iterations
    outer_iterations: int = _TVL1.outer_iterations
    scale_step: float = _TVL1.scale_step
    gamma: float = _TVL1.gamma
    median_filtering: int = _TVL1.median_filtering

    def validate(self) -> None:
        for name, allowed in (
            ("pairs", PAIR_MODES),
            ("normalise", NORMALISATIONS),
            ("strain", STRAIN_METHODS),
            ("strain_formula", STRAIN_FORMULAS),
            ("invalid", INVALID_MODES),
            ("backend", BACKENDS),
        ):
            if getattr(self, name) not in allowed:
                raise MertoolError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.size < 4:
            raise MertoolError(f"size must be >= 4, got {self.size}")
        if self.flow_size and self.flow_size < 16:
            raise MertoolError(f"flow_size must be 0 (aligned size) or >= 16, got {self.flow_size}")
        try:
            check_backend(self.backend, self.tvl1())
        except ValueError as exc:
            raise MertoolError(str(exc)) from None

    def tvl1(self) -> TVL1Params:
        """The TV-L1 fields as a (validated) :class:`TVL1Params`."""
        return TVL1Params(**{f.name: getattr(self, f.name) for f in dataclasses.fields(TVL1Params)})

    def features(self) -> dict[str, Any]:
        """Keyword arguments of :func:`~mertool.preprocess.strain.flow_features`."""
        names = ("size", "strain", "strain_formula", "normalise", "rescale_flow", "invalid")
        return {name: getattr(self, name) for name in names}


# --- one sample -------------------------------------------------------------------------


def _pair_indices(numbers: list[int], meta: dict[str, Any], pairs: str) -> tuple[int, list[int]]:
    """Index of the onset frame and of the target frames among a clip's frame numbers."""
    onset = int(meta.get("onset", numbers[0]))
    first = numbers.index(onset) if onset in numbers else 0
    if pairs == "all":
        return first, list(range(len(numbers)))
    apex = int(meta["apex"])
    if apex not in numbers:
        raise ValueError(f"apex frame {apex} is not among the aligned frames ({numbers[0]}..{numbers[-1]})")
    return first, [numbers.index(apex)]


def _frame_pairs(
    arrays: dict[str, np.ndarray], meta: dict[str, Any], config: FlowConfig
) -> tuple[np.ndarray, list[np.ndarray], list[int], np.ndarray | None]:
    """``(onset, targets, target frame numbers, validity mask or None)`` of one aligned
    sample, the frames as the solver's gray frames."""
    if "frames" not in arrays or "frame_numbers" not in arrays:
        raise ValueError("aligned.h5 lacks 'frames'/'frame_numbers' (made by another mertool version?)")
    frames, numbers = arrays["frames"], [int(n) for n in arrays["frame_numbers"]]
    if frames.ndim not in (3, 4) or len(frames) != len(numbers) or len(frames) < 1:
        raise ValueError(f"frames array of shape {frames.shape} does not fit {len(numbers)} frame numbers")
    first, idx = _pair_indices(numbers, meta, config.pairs)
    targets = [prepare_frame(frames[i], config.flow_size) for i in idx]
    valid = arrays.get("valid")  # absent in files aligned before validity masks
    return prepare_frame(frames[first], config.flow_size), targets, [numbers[i] for i in idx], valid


def _stored(flows: np.ndarray, numbers: list[int], valid: np.ndarray | None, config: FlowConfig) -> dict[str, np.ndarray]:
    """A sample's flows as the arrays written for it; non-finite maps fail the sample."""
    x = flow_features(flows, **config.features(), valid=valid)
    bad = int((~np.isfinite(x)).sum())
    if bad:
        raise ValueError(f"non-finite values ({bad}) in the flow/strain")
    if config.pairs == "apex":
        return {"flow": x[0]}
    return {"flow": x, "frame_numbers": np.asarray(numbers, np.int64)}


def run_case(case: Case, *, config: FlowConfig, params: TVL1Params, threads: int = 0) -> dict[str, np.ndarray]:
    """One sample with the OpenCV backend (runs in worker processes).

    ``case.inputs`` is :func:`_frame_pairs`'s triple; ``params`` is ``config.tvl1()``,
    made (and validated) once per run; ``threads`` > 0 caps OpenCV's threads so worker
    processes do not oversubscribe the cores.
    """
    if threads:
        cv2.setNumThreads(threads)
    first, targets, numbers, valid = case.inputs
    return _stored(tvl1_many([first] * len(targets), targets, params=params), numbers, valid, config)


def run_batch(
    cases: list[Case], *, config: FlowConfig, params: TVL1Params, device: str, batch_size: int, compile: bool
) -> list[Output | Exception]:
    """Samples with the torch backend: every pair of the cases solved in device batches.

    Cases are grouped by frame size (one solver batch needs one size); a problem with a
    group or a sample becomes that sample's exception.
    """
    out: dict[int, Output | Exception] = {}
    groups: dict[tuple, list[int]] = {}
    for k, case in enumerate(cases):
        groups.setdefault(case.inputs[0].shape, []).append(k)
    for ks in groups.values():
        prevs = [cases[k].inputs[0] for k in ks for _ in cases[k].inputs[1]]
        nexts = [t for k in ks for t in cases[k].inputs[1]]
        try:
            flows = tvl1_many(
                prevs, nexts, params=params, backend="torch", device=device, batch_size=batch_size, compile=compile
            )
        except ValueError as exc:
            out.update({k: exc for k in ks})
            continue
        at = 0
        for k in ks:
            _, targets, numbers, valid = cases[k].inputs
            try:
                out[k] = _stored(flows[at : at + len(targets)], numbers, valid, config)
            except ValueError as exc:
                out[k] = exc
            at += len(targets)
    return [out[k] for k in range(len(cases))]


# --- the stage --------------------------------------------------------------------------


def _open_aligned(path: str | Path) -> StageFile:
    src = open_stage(path, expect="aligned")
    if src.layout != "per-sample" or "frames" not in src.array_names():
        raise MertoolError(f"{path}: aligned file without per-sample 'frames' (made by another mertool version?)")
    return src


def _require_apex(src: StageFile, order: list[str], overrides: dict[str, tuple[int, str]]) -> None:
    unknown = [sid for sid in order if int(case_meta(src, sid, overrides).get("apex", -1)) < 0]
    if unknown:
        raise MertoolError(
            f"sample {unknown[0]}: apex unknown (-1)"
            + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
            + "; estimate it with `mertool keyframes` and pass its samples.csv with --samples"
        )


def run_flow(
    src: str | Path,
    out: str | Path,
    config: FlowConfig | None = None,
    *,
    samples_csv: str | Path | None = None,
    jobs: int = 1,
    overwrite: bool = False,
    preview: str | Path | None = None,
    progress: bool = True,
    device: str = "auto",
    batch_size: int = 64,
    compile: bool = False,
    preview_count: int | None = None,
) -> StageResult:
    """The ``flow`` stage: onset->apex (or onset->every frame) TV-L1 flow and strain.

    Parameters
    ----------
    src : path
        ``aligned.h5`` from ``mertool align``.
    out : path
        ``flow.h5`` to write (see the module docstring).
    config : FlowConfig
        Resolved options (default: the ``offtanet`` preset).
    samples_csv : path, optional
        samples.csv whose apex overrides the aligned file's (``mertool keyframes``
        output); it must have a row for every sample (:func:`._driver.apex_overrides`).
    jobs : int
        Processes for the OpenCV backend (-1 = all cores).
    overwrite : bool
        Replace an output made with other parameters or inputs.
    preview : path, optional
        Folder for ``<sample>.png`` pictures (onset | apex | flow wheel | strain) of
        ``preview_count`` samples spread over classes and subjects (None: enough to show
        every class and subject; :func:`write_previews`).
    progress : bool
        Show a progress bar.
    device, batch_size, compile
        torch backend: device (auto/cpu/cuda/cuda:N), samples per device batch (and
        pairs per solver call), and whether to fuse the solver with ``torch.compile``
        (run options like the device: not recorded; the flows agree with the eager ones
        to ~0.02 px mean EPE).

    Returns
    -------
    StageResult
        Samples that fail (apex frame not aligned, non-finite flow) are listed in its
        ``failed`` and in the file's ``failed`` attribute.

    Raises
    ------
    MertoolError
        Not an aligned file; a sample without a known apex with ``pairs="apex"``; bad
        device or batch size; every sample failed.
    """
    config = config or FlowConfig.resolve()
    aligned = _open_aligned(src)
    order = list(aligned.sample_ids)
    overrides = apex_overrides(samples_csv, order)
    if config.pairs == "apex":
        _require_apex(aligned, order, overrides)
    params = config.tvl1()  # made and validated once for the whole run
    if config.backend == "torch":
        if batch_size < 1:
            raise MertoolError(f"batch_size must be >= 1, got {batch_size}")
        dev = str(resolve_device(device))
        batch = partial(run_batch, config=config, params=params, device=dev, batch_size=batch_size, compile=compile)
        compute = None
    else:
        compute, batch = partial(run_case, config=config, params=params, threads=1 if jobs != 1 else 0), None
    writer = StageWriter(out, "flow", config.to_dict(), upstream=inputs_of(src, samples_csv), overwrite=overwrite)

    def load(sid: str) -> Case:
        meta = case_meta(aligned, sid, overrides)
        return Case(sid, meta, _frame_pairs(aligned.sample(sid), meta, config))

    show = partial(write_previews, aligned, overrides, preview_count, preview) if preview else None
    return run_stage(
        writer, order, load, compute, stacked=config.pairs == "apex", desc="flow", jobs=jobs,
        compute_batch=batch, batch_size=batch_size, preview=show, progress=progress,
    )


def write_previews(
    aligned: StageFile, overrides: dict[str, tuple[int, str]], count: int | None, folder: str | Path, flow_h5: Path
) -> None:
    """Write ``<folder>/<sample>.png`` (onset | apex | flow wheel | strain, titled, with a key)
    for samples spread over classes and subjects (:func:`~.render.spread_samples`; ``count``
    None: every class and subject), all on one scale (:func:`~.render.display_scale`).

    With ``pairs="all"`` the picture shows the frame with the largest mean motion.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dst = open_stage(flow_h5, expect="flow")
    ids = dst.sample_ids
    shown = [ids[i] for i in spread_samples(dst.meta.get("subject", ids), dst.meta.get("label", ids), count)]
    pictures = {}
    for sid in shown:
        arrays = aligned.sample(sid, ["frames", "frame_numbers"])
        flow = dst.sample(sid, ["flow"])["flow"]
        numbers = [int(n) for n in arrays["frame_numbers"]]
        first, targets = _pair_indices(numbers, case_meta(aligned, sid, overrides), "all" if flow.ndim == 4 else "apex")
        if flow.ndim == 4:  # pairs="all": the pair with the largest motion
            k = int(np.argmax(np.abs(flow[:, :2]).reshape(len(flow), -1).mean(1)))
            targets, flow = [targets[k]], flow[k]
        pictures[sid] = (arrays["frames"][first], arrays["frames"][targets[0]], flow, numbers[first], numbers[targets[0]])
    maps = [p[2] for p in pictures.values()]
    flow_max, strain_max = display_scale(maps, edge_band(maps[0].shape[-1]))
    unit = "px" if dst.params.get("normalise", "none") == "none" else f"({dst.params['normalise']} units)"
    for sid, (onset, apex, flow, n0, n1) in pictures.items():
        meta = dst.meta_of(sid)
        title = f"{sid}  |  label {meta.get('label', '?')}  |  subject {meta.get('subject', '?')}"
        panel = flow_preview(onset, apex, flow, title=title, frames=(f"onset (frame {n0})", f"apex (frame {n1})"),
                             flow_max=flow_max, strain_max=strain_max, unit=unit)
        cv2.imwrite(str(folder / f"{safe_name(sid)}.png"), cv2.cvtColor(panel, cv2.COLOR_RGB2BGR))
    logger.info(f"{folder}: previews of {len(shown)} sample(s) over their classes and subjects, one scale "
                f"(flow {flow_max:.3g} {unit}, strain {strain_max:.3g})")
