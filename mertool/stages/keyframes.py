"""The ``keyframes`` stage: samples.csv in, samples.csv out, with estimated apex frames.

Where the sheet's apex is missing or invalid (:func:`needs_repair`), or everywhere with
``respot``, the apex is spotted on the clip's aligned frames (``aligned.h5`` written with
``frames="all"``) by :func:`mertool.preprocess.keyframes.spot_apex`, and recorded with
``apex_source = "estimated:<method>"``. ``evaluate`` compares every spotting method with
the sheet's apex on the clips that have one.

The output is a CSV, not a stage file, so of the stage driver only the failure
convention applies: a clip that cannot be spotted (not in the aligned file, too few
aligned frames, landmarks off the frame) gets the midpoint instead, recorded as
``estimated:midpoint`` and listed in one warning; in an evaluation it is left out.
Problems with the options or the input files stop with a :class:`MertoolError`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..config import StageConfig
from ..errors import MertoolError, UsageError
from ..log import logger
from ..preprocess.keyframes import DEFAULT_METHOD, METHODS, spot_apex
from ..samples import Sample, read_samples, write_samples
from ..table import format_table as render_table
from ._driver import SAMPLE_ERRORS
from .stagefile import StageFile, open_stage


@dataclasses.dataclass
class KeyframesConfig(StageConfig):
    """Options of the ``keyframes`` stage.

    Attributes
    ----------
    method : {"flowpeak", "regions", "lbp", "midpoint"}
        Apex spotting method (see :mod:`mertool.preprocess.keyframes`).
    smooth : int
        Moving-average window (frames) applied to the difference curve.
    respot : bool
        Re-estimate every apex, not only missing or invalid ones.
    """

    method: str = DEFAULT_METHOD
    smooth: int = 3
    respot: bool = False

    def validate(self) -> None:
        if self.method not in METHODS:
            raise MertoolError(f"unknown apex method {self.method!r}: method must be one of {', '.join(METHODS)}")
        if self.smooth < 1:
            raise MertoolError(f"smooth must be >= 1, got {self.smooth}")


def needs_repair(sample: Sample) -> str:
    """Why the sample's apex must be estimated ('' when the sheet's apex is usable)."""
    s = sample
    if s.apex == -1 or s.apex_source in ("missing", "invalid"):
        return "missing"
    if not s.onset <= s.apex <= s.offset:
        return "outside onset..offset"
    if s.apex == s.onset and s.offset > s.onset:
        return "apex == onset"
    return ""


@dataclasses.dataclass
class SpotError:
    """Absolute apex errors (frames) of one method over clips with a sheet apex."""

    method: str
    errors: list[int]

    def summary(self, within: int) -> dict[str, float]:
        e = np.asarray(self.errors, dtype=np.float64)
        if not len(e):
            return {"n": 0, "mean": float("nan"), "median": float("nan"), "within": float("nan")}
        return {"n": len(e), "mean": float(e.mean()), "median": float(np.median(e)), "within": float((e <= within).mean())}


# NOTE: to move onto the shared table renderer (mertool.table.format_table) once it lands.
def format_table(results: list[SpotError], within: int) -> str:
    """Plain-text table: method, clips, mean/median absolute error, share within N frames."""
    rows = [[r.method, s["n"], f"{s['mean']:.2f}", f"{s['median']:.1f}", f"{100 * s['within']:.1f}%"]
            for r in results for s in [r.summary(within)]]
    return render_table(rows, ["method", "clips", "mean", "median", f"<={within} fr"],
                        align="lrrrr", sep=" ", widths=(10, 5, 7, 7, 7))


def _clip(stage: StageFile, sample: Sample) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames, landmarks, frame numbers) from onset to offset.

    Raises
    ------
    LookupError
        The sample is not in the aligned file.
    ValueError
        The aligned file holds too few of its frames.
    """
    if sample.sample_id not in stage.sample_ids:
        raise LookupError("not in the aligned file")
    data = stage.sample(sample.sample_id, ["frames", "frame_numbers", "landmarks"])
    numbers = np.asarray(data["frame_numbers"])
    keep = (numbers >= sample.onset) & (numbers <= sample.offset)
    if keep.sum() < 3 or numbers[keep][0] != sample.onset:
        raise ValueError(f"aligned file holds only frames {numbers.tolist()[:4]} (align with --frames all)")
    return data["frames"][keep], data["landmarks"], numbers[keep]


def _midpoint(sample: Sample) -> int:
    return (sample.onset + sample.offset + 1) // 2 if sample.offset > sample.onset else sample.onset


def repair_apex(
    samples: list[Sample], aligned: str | Path | None = None, config: KeyframesConfig | None = None
) -> tuple[list[Sample], dict[str, str], dict[str, str]]:
    """Estimate the apex where the sheet's is missing/invalid (or everywhere with ``respot``).

    Parameters
    ----------
    samples : list of Sample
    aligned : path, optional
        aligned.h5 with every frame of the clips (needed unless the method is ``midpoint``).
    config : KeyframesConfig, optional

    Returns
    -------
    samples : list of Sample
        Copies; estimated apexes carry ``apex_source = "estimated:<method>"``.
    repaired : dict
        sample_id -> why its apex was estimated.
    fallback : dict
        sample_id -> why the method could not be used (estimated by midpoint instead).

    Raises
    ------
    MertoolError
        Bad options, no or unreadable aligned file for a spotting method.
    """
    config = config or KeyframesConfig()
    config.validate()
    if config.method != "midpoint" and aligned is None:
        raise UsageError(f"method {config.method} needs aligned (an aligned.h5 from `mertool align`); or use method midpoint")
    stage = open_stage(aligned, expect="aligned") if aligned is not None else None
    out, repaired, fallback = [], {}, {}
    for s in samples:
        why = "requested" if config.respot else needs_repair(s)
        if not why:
            out.append(s)
            continue
        apex, used = _midpoint(s), "midpoint"
        if config.method != "midpoint":
            try:
                frames, landmarks, numbers = _clip(stage, s)
                apex, used = int(numbers[spot_apex(frames, landmarks, config.method, config.smooth)]), config.method
            except SAMPLE_ERRORS as exc:
                fallback[s.sample_id] = str(exc)
        repaired[s.sample_id] = why
        out.append(dataclasses.replace(s, apex=apex, apex_source=f"estimated:{used}"))
    if fallback:
        listed = "; ".join(f"{sid} ({why})" for sid, why in list(fallback.items())[:10])
        logger.warning(f"{len(fallback)} clip(s) estimated by midpoint instead of {config.method}: {listed}")
    return out, repaired, fallback


def evaluate_apex(
    samples: list[Sample], aligned: str | Path, methods: tuple[str, ...] = METHODS, smooth: int = 3
) -> list[SpotError]:
    """Spot the apex with each method on clips that have a usable sheet apex; absolute errors.

    Clips that cannot be spotted (not aligned, too few frames) are left out of every
    method, so the methods are compared on the same clips.

    Raises
    ------
    MertoolError
        Unreadable aligned file, or no clip to evaluate.
    """
    stage = open_stage(aligned, expect="aligned")
    results = [SpotError(m, []) for m in methods]
    for s in samples:
        if needs_repair(s) or s.apex_source != "sheet":
            continue
        try:
            frames, landmarks, numbers = _clip(stage, s)
            found = [int(numbers[spot_apex(frames, landmarks, r.method, smooth)]) for r in results]
        except SAMPLE_ERRORS:
            continue
        for r, apex in zip(results, found):
            r.errors.append(abs(apex - s.apex))
    if not results or not results[0].errors:
        raise MertoolError(f"no clip with a sheet apex found in {aligned}; nothing to evaluate")
    return results


@dataclasses.dataclass(frozen=True)
class KeyframesResult:
    """What ``mertool keyframes`` did.

    Attributes
    ----------
    path : Path or None
        The samples.csv written (None: evaluation only).
    samples : int
        Rows written.
    repaired : dict
        sample_id -> why its apex was estimated.
    fallback : dict
        sample_id -> why the method could not be used (midpoint instead).
    evaluation : list of SpotError
        Per-method errors (empty unless asked for).
    within : int
        Frame tolerance of the evaluation table.
    """

    path: Path | None
    samples: int
    repaired: dict[str, str]
    fallback: dict[str, str]
    evaluation: list[SpotError]
    within: int = 3

    def summary(self) -> str:
        """The evaluation table (if any), then ``OUT: N apex(es) estimated, M kept from the sheet``."""
        lines = [format_table(self.evaluation, self.within)] if self.evaluation else []
        if self.path is not None:
            kept = self.samples - len(self.repaired)
            lines.append(f"{self.path}: {len(self.repaired)} apex(es) estimated, {kept} kept from the sheet")
        return "\n".join(lines)


def run_keyframes(
    samples_csv: str | Path,
    out: str | Path | None = None,
    config: KeyframesConfig | None = None,
    *,
    aligned: str | Path | None = None,
    evaluate: bool = False,
    within: int = 3,
) -> KeyframesResult:
    """The ``keyframes`` stage: repair apexes into ``out`` and/or evaluate the spotting methods.

    Parameters
    ----------
    samples_csv : path
        samples.csv from ``mertool index``.
    out : path, optional
        samples.csv to write (may be ``samples_csv`` itself).
    config : KeyframesConfig, optional
    aligned : path, optional
        aligned.h5 from ``mertool align`` with every frame; needed by every method but
        ``midpoint`` and by ``evaluate``.
    evaluate : bool
        Compare every method with the sheet's apex (:func:`evaluate_apex`).
    within : int
        Frame tolerance for the evaluation's "share within" column.

    Raises
    ------
    MertoolError
        Nothing asked for (neither ``out`` nor ``evaluate``), an aligned file missing
        where needed or unreadable, bad options, or nothing to evaluate.
    """
    config = config or KeyframesConfig()
    config.validate()
    if out is None and not evaluate:
        raise UsageError("nothing to do: give out (the samples.csv to write) or evaluate")
    if evaluate and aligned is None:
        raise UsageError("evaluate needs aligned (an aligned.h5 from `mertool align` with every frame)")
    samples = read_samples(samples_csv)
    evaluation = evaluate_apex(samples, aligned, METHODS, config.smooth) if evaluate else []
    repaired: dict[str, str] = {}
    fallback: dict[str, str] = {}
    if out is not None:
        fixed, repaired, fallback = repair_apex(samples, aligned, config)
        write_samples(fixed, out)
    return KeyframesResult(
        None if out is None else Path(out), len(samples) if out else 0, repaired, fallback, evaluation, within
    )
