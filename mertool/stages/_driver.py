"""The one per-sample stage loop, and the conventions every stage shares.

:func:`run_stage` owns what every stage used to write for itself: pending samples ->
compute (in this process, in worker processes, on a dask cluster with ``MERTOOL_SCHEDULER``
(:mod:`mertool.cluster`), or in device batches) -> the sample's shard written by the
process that computed it (:class:`~.stagefile.ShardSink`: arrays never travel back), or
its failure -> finish -> previews, returning one :class:`StageResult`.

Failure convention: pure code raises ``ValueError`` / ``LookupError`` (or a
:class:`~mertool.errors.MertoolError` about one sample's input, e.g. an unreadable
frame; or an ``OSError`` / ``EOFError`` from reading a missing or cut-short input file);
the driver records it as that sample's failure, logs one warning line, and goes
on with the others. A stage that fails for every sample publishes nothing and stops with
one error line. Problems with the options or with the input file as a whole are checked
by the stage before the loop starts and stop it with a ``MertoolError``.

``--samples`` policy (:func:`apex_overrides`), the same for every verb that takes it:
the CSV must have a row for every sample of the input file (else one error naming the
missing ids: it is probably not the CSV the clips were aligned from); a row whose apex is
known (not -1) replaces the input file's apex and ``apex_source``; a row with apex -1
leaves the input file's values as they are.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..errors import MertoolError
from ..log import logger, progress_bar
from ..parallel import parallel_map
from .stagefile import ShardSink, StageFile, StageWriter, open_stage

#: What a per-sample compute function returns: its arrays, or (arrays, meta updates).
Output = Union[dict[str, np.ndarray], tuple[dict[str, np.ndarray], dict[str, Any]]]

#: Exceptions that mean "this sample cannot be processed" (the others are bugs).
SAMPLE_ERRORS = (ValueError, LookupError, MertoolError, OSError, EOFError)


@dataclasses.dataclass(frozen=True)
class StageResult:
    """What a stage run produced.

    Attributes
    ----------
    path : Path
        The finished stage file.
    done : int
        Samples in the file.
    failed : dict
        sample_id -> reason, for samples left out.
    up_to_date : bool
        The file already held this exact result; nothing was computed.
    """

    path: Path
    done: int
    failed: dict[str, str]
    up_to_date: bool = False

    @property
    def total(self) -> int:
        return self.done + len(self.failed)

    def summary(self, what: str = "") -> str:
        """One line for the console: ``OUT: 7 of 8 samples, <what>`` (+ up to date)."""
        text = f"{self.path}: {self.done} of {self.total} samples"
        text += f", {what}" if what else ""
        return text + (" (up to date)" if self.up_to_date else "")


@dataclasses.dataclass
class Case:
    """One sample's work: its id, the meta written with it, and the compute inputs."""

    sample_id: str
    meta: dict[str, Any]
    inputs: Any


def clean_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """Per-sample meta as stage files store it: JSON scalars only, ``sample_id`` dropped."""
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if key == "sample_id":
            continue
        if isinstance(value, bytes):
            value = value.decode()
        elif hasattr(value, "item"):  # numpy scalar
            value = value.item()
        out[key] = value if isinstance(value, (str, int, float, bool)) else str(value)
    return out


def apex_overrides(samples_csv: str | Path | None, sample_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
    """The ``--samples`` apex of each sample that has a known one (see the module docstring).

    Returns
    -------
    dict
        sample_id -> (apex, apex_source), for rows whose apex is not -1.

    Raises
    ------
    MertoolError
        The CSV lacks a row for some sample of the input file.
    """
    if samples_csv is None:
        return {}
    from ..samples import read_samples

    rows = {s.sample_id: s for s in read_samples(samples_csv)}
    missing = [sid for sid in sample_ids if sid not in rows]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise MertoolError(
            f"{samples_csv}: no row for sample(s) {', '.join(missing[:5])}{more} of the input file; "
            "pass the samples.csv the clips were aligned from (or `mertool keyframes` output made from it)"
        )
    return {sid: (int(rows[sid].apex), rows[sid].apex_source) for sid in sample_ids if int(rows[sid].apex) != -1}


def case_meta(src: StageFile, sample_id: str, overrides: dict[str, tuple[int, str]]) -> dict[str, Any]:
    """A sample's meta from its input file, with the ``--samples`` apex applied."""
    meta = clean_meta(src.meta_of(sample_id))
    if sample_id in overrides:
        meta["apex"], meta["apex_source"] = overrides[sample_id]
    return meta


def inputs_of(src: str | Path, samples_csv: str | Path | None) -> list[str | Path]:
    """The upstream files of a stage that reads ``src`` (and optionally a samples.csv)."""
    return [src] + ([samples_csv] if samples_csv is not None else [])


def _guarded(job: tuple[Callable[[Case], Output], Case, ShardSink]) -> tuple[str, str]:
    """Run one case and write its shard where it ran (picklable: runs in workers).

    Returns ``(sample_id, reason)``: reason "" when the shard is written; a sample error
    becomes the reason. Errors writing the shard (disk full) are raised.
    """
    compute, case, sink = job
    try:
        output = compute(case)
    except SAMPLE_ERRORS as exc:
        return case.sample_id, _reason(exc)
    _store(sink, case, output)
    return case.sample_id, ""


def _lost(job: tuple[Callable[[Case], Output], Case, ShardSink], reason: str) -> tuple[str, str]:
    """A sample whose task crashed every cluster worker it ran on fails like any other."""
    return job[1].sample_id, reason


def _store(sink: ShardSink, case: Case, output: Output) -> None:
    arrays, update = output if isinstance(output, tuple) else (output, {})
    sink.add(arrays, clean_meta({**case.meta, **update}))


def _reason(exc: Exception) -> str:
    """A failure's one-line reason (an input cut short says so: numpy's EOFError does not)."""
    text = str(exc) or type(exc).__name__
    return f"input file cut short ({text})" if isinstance(exc, EOFError) else text


def _loaded(load: Callable[[str], Case], ids: Sequence[str], failures: dict[str, str]) -> Iterator[Case]:
    for sid in ids:
        try:
            yield load(sid)
        except SAMPLE_ERRORS as exc:
            failures[sid] = _reason(exc)


def _batched(
    cases: Iterator[Case], compute_batch: Callable[[list[Case]], list[Output | Exception]], size: int,
    writer: StageWriter,
) -> Iterator[tuple[str, str]]:
    """``compute_batch`` over batches of ``size`` in this process, writing each shard: ``(sample_id, reason)``."""
    batch: list[Case] = []
    for case in [*cases, None]:
        if case is not None:
            batch.append(case)
        if batch and (case is None or len(batch) >= size):
            for c, out in zip(batch, compute_batch(batch)):
                if not isinstance(out, Exception):
                    _store(writer.sink(c.sample_id), c, out)
                yield c.sample_id, _reason(out) if isinstance(out, Exception) else ""
            batch = []


def run_stage(
    writer: StageWriter,
    order: Sequence[str],
    load: Callable[[str], Case],
    compute: Callable[[Case], Output] | None = None,
    *,
    stacked: bool,
    desc: str,
    jobs: int = 1,
    compute_batch: Callable[[list[Case]], list[Output | Exception]] | None = None,
    batch_size: int = 64,
    preview: Callable[[Path], Any] | None = None,
    progress: bool = True,
) -> StageResult:
    """Run a per-sample stage to its finished file (resumable; see the module docstring).

    Parameters
    ----------
    writer : StageWriter
        The output, opened with the stage's parameters and inputs.
    order : sequence of str
        Every sample id, in the order the file lists them.
    load : callable
        ``load(sample_id) -> Case``, in this process. Keep it light (meta, frame numbers,
        where to read): every pending case is loaded before the first is computed, so
        pixels belong in ``compute``, which reads them in the worker.
    compute : callable
        ``compute(case) -> arrays | (arrays, meta updates)``; a module-level function,
        since with ``jobs > 1`` it runs in worker processes.
    stacked : bool
        Stack arrays over samples (``/data``) or keep per-sample groups.
    desc : str
        Progress-bar label.
    jobs : int
        Worker processes for ``compute`` (-1 = all cores).
    compute_batch : callable, optional
        Instead of ``compute``: ``compute_batch(cases) -> [output or exception]``, called in
        this process with up to ``batch_size`` cases (device batches).
    preview : callable, optional
        ``preview(path)`` once the file is finished (or found up to date).
    progress : bool
        Show a progress bar.

    Raises
    ------
    MertoolError
        Every sample failed (nothing is published; a re-run retries them), or writing
        failed (disk full: finished samples are kept for the re-run).

    Notes
    -----
    The writer's lock on the output is released when this returns or raises.
    """
    try:
        if writer.complete:
            logger.info(f"{writer.out}: up to date, nothing to do")
            sf = open_stage(writer.out)
            result = StageResult(writer.out, len(sf), sf.failed, up_to_date=True)
        else:
            failures: dict[str, str] = {}
            pending = writer.pending(order)
            cases = _loaded(load, pending, failures)
            with contextlib.ExitStack() as finished:  # progress bars end before any error line
                if compute_batch is not None:
                    bar = finished.enter_context(
                        progress_bar(cases, total=len(pending), desc=desc, unit="sample", progress=progress and bool(pending))
                    )
                    results = _batched(iter(bar), compute_batch, batch_size, writer)
                else:
                    work = ((compute, c, writer.sink(c.sample_id)) for c in cases)
                    results = parallel_map(_guarded, work, jobs=jobs, desc=desc, progress=progress, lost=_lost)
                finished.enter_context(contextlib.closing(results))
                result = _record(writer, order, results, failures, stacked)
    finally:
        writer.close()
    if preview is not None:
        preview(result.path)
    return result


def _record(
    writer: StageWriter,
    order: Sequence[str],
    results: Iterable[tuple[str, str]],
    failures: dict[str, str],
    stacked: bool,
) -> StageResult:
    """Collect each sample's failure (its shard is written where it ran), then finish the file."""
    for sample_id, reason in results:
        if reason:
            failures[sample_id] = reason
    for sid, reason in failures.items():
        logger.warning(f"sample {sid}: {reason}")
        writer.fail(sid, reason)
    failed = writer.failures()
    if order and len(failed) == len(order):
        reasons = "; ".join(f"{k}: {v}" for k, v in list(failed.items())[:3])
        raise MertoolError(f"{writer.out}: no sample could be processed ({reasons})")
    path = writer.finish(order, stacked=stacked)
    if failed:
        logger.warning(f"{path}: {len(failed)} of {len(order)} sample(s) failed (listed by `mertool info {path}`)")
    return StageResult(path, len(order) - len(failed), failed)
