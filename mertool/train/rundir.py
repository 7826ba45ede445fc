"""The run directory ``runs/<name>/``: every path in it is named, read and written here.

Layout::

    config.yaml         resolved TrainConfig (seed included)
    run.json            provenance: mertool/torch versions, input file key, classes,
                        dropped classes, folds, parameter count, identity hash, times
    folds/<fold>/       log.csv (per-epoch), checkpoint.pt or stack_checkpoint.pt (while unfinished),
                        final.pt (state_dict; load with weights_only=True), result.json
    folds.csv           one line per fold (sizes, epochs, chosen epoch, accuracy, seconds, device, precision)
    predictions.csv     sample_id, subject, dataset, fold, label, prediction, p_<class>...
    metrics.json        see :func:`mertool.train.metrics.compute_metrics` (per_dataset included)
    curves.png, confusion.png, model_log.png
    *_ORACLE.*          only with ``oracle``: best-epoch-on-test results (not honest)

A fold's folder holds ``result.json`` only once the fold is finished, so a killed run
continues from the last finished fold (and that fold's last epoch checkpoint).

Several jobs may write one run directory at once (``mertool train --folds`` /
``--fold-index``, e.g. a SLURM array): a fold's folder is written only by the job holding
its lock (``folds/<fold>.lock``), and the run-level files (``run.json``, ``config.yaml``,
the pooled outputs) only under the run's lock (``<run>.lock`` beside the folder, see
:meth:`RunDir.locked`); every file is written atomically.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import shutil
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..errors import MertoolError
from ..io import atomic_torch_save, atomic_write_text, safe_name
from ..lock import OutputLock

if TYPE_CHECKING:  # only names: reading a run's files (report, predict) needs no torch
    import torch

    from .fold import FoldResult

ORACLE = "ORACLE"
#: Where runs go when no run directory is named.
RUNS_ROOT = Path("runs")


def _csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


class FoldDir:
    """One fold's folder, ``folds/<fold>/``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def checkpoint(self) -> Path:
        """Epoch checkpoint while the fold is unfinished (resume after a kill)."""
        return self.path / "checkpoint.pt"

    @property
    def stack_checkpoint(self) -> Path:
        """Epoch checkpoint of the stacked replica group this fold heads (see :mod:`mertool.train.stacked`)."""
        return self.path / "stack_checkpoint.pt"

    @property
    def final_weights(self) -> Path:
        """The fold's final state_dict (load with ``weights_only=True``)."""
        return self.path / "final.pt"

    @property
    def log(self) -> Path:
        """Per-epoch log (CSV)."""
        return self.path / "log.csv"

    @property
    def result_file(self) -> Path:
        """The fold's :class:`FoldResult` (JSON); present only once the fold is finished."""
        return self.path / "result.json"

    def lock(self, wait: bool = False) -> OutputLock:
        """Hold the fold for this process while it trains (``folds/<fold>.lock``; release it when done).

        Raises
        ------
        MertoolError
            Another job holds the fold and ``wait`` is false, naming that job.
        """
        return OutputLock(self.path, wait=wait)

    def read_result(self) -> FoldResult | None:
        """The finished fold's result, or None while it is unfinished."""
        from .fold import FoldResult

        if not self.result_file.exists():
            return None
        return FoldResult(**json.loads(self.result_file.read_text()))

    def publish(self, result: FoldResult, state: dict[str, torch.Tensor]) -> None:
        """Write the fold's log, final weights and result (last, marking it finished); drop the checkpoint."""
        keys: list[str] = []
        for row in result.history:
            keys.extend(k for k in row if k not in keys)
        atomic_write_text(self.log, _csv_text(keys, ([row.get(k, "") for k in keys] for row in result.history)))
        atomic_torch_save(state, self.final_weights)
        atomic_write_text(self.result_file, json.dumps(dataclasses.asdict(result)))
        self.checkpoint.unlink(missing_ok=True)
        self.stack_checkpoint.unlink(missing_ok=True)


class RunDir:
    """A run directory (see the module docstring for its layout).

    ``run.json`` and ``config.yaml`` are read once and cached; the ``write_*`` methods
    write atomically and keep the cache current.

    Parameters
    ----------
    path : path
        The run directory (it need not exist yet).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._info: dict | None = None
        self._config: dict | None = None

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @classmethod
    def for_model(cls, model: str, oracle: bool = False, root: str | Path = RUNS_ROOT) -> RunDir:
        """The default run directory of a model: ``runs/<model>``, or ``runs/<model>_ORACLE`` in oracle mode."""
        return cls(Path(root) / (model + (f"_{ORACLE}" if oracle else "")))

    @classmethod
    def of(cls, run: str | Path | RunDir) -> RunDir:
        """``run`` itself when it is a RunDir (its cache is kept), else a RunDir of that path."""
        return run if isinstance(run, RunDir) else cls(run)

    # -- names ---------------------------------------------------------------------------
    def _file(self, stem: str, suffix: str, oracle: bool = False) -> Path:
        return self.path / f"{stem}{f'_{ORACLE}' if oracle else ''}{suffix}"

    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    @property
    def config_yaml(self) -> Path:
        return self.path / "config.yaml"

    @property
    def folds_table(self) -> Path:
        return self.path / "folds.csv"

    def fold(self, name: str) -> FoldDir:
        """The folder of the fold called ``name`` (a file-name-safe form of it)."""
        return FoldDir(self.path / "folds" / safe_name(name))

    def final_weights(self, fold: str) -> Path:
        """The final state_dict file of the fold called ``fold``."""
        return self.fold(fold).final_weights

    def predictions(self, oracle: bool = False) -> Path:
        """``predictions.csv`` (or its ORACLE twin)."""
        return self._file("predictions", ".csv", oracle)

    def metrics_file(self, oracle: bool = False) -> Path:
        """``metrics.json`` (or its ORACLE twin)."""
        return self._file("metrics", ".json", oracle)

    def plot(self, kind: str, oracle: bool = False) -> Path:
        """A picture of the run: ``kind`` is ``curves``, ``confusion`` or ``model_log``."""
        return self._file(kind, ".png", oracle)

    # -- reading ---------------------------------------------------------------------------
    @property
    def is_run(self) -> bool:
        """Whether the folder holds a mertool run (finished or not)."""
        return self.run_json.is_file()

    def info(self, fresh: bool = False) -> dict:
        """``run.json`` (read once; ``fresh`` reads it again, e.g. after another job wrote it).

        Raises
        ------
        MertoolError
            Not a run directory.
        """
        if self._info is None or fresh:
            if not self.is_run:
                raise MertoolError(f"{self.path}: not a mertool run directory (no run.json)")
            self._info = json.loads(self.run_json.read_text())
        return self._info

    def config(self) -> dict:
        """``config.yaml``: the resolved training options (read once)."""
        if self._config is None:
            if not self.config_yaml.is_file():
                raise MertoolError(f"{self.path}: not a mertool run directory (no config.yaml)")
            self._config = yaml.safe_load(self.config_yaml.read_text())
        return self._config

    def finished(self) -> dict:
        """``run.json`` of a finished run.

        Raises
        ------
        MertoolError
            Not a run directory, or a run that has not finished.
        """
        if not self.is_run or not self.config_yaml.is_file():
            raise MertoolError(f"{self.path}: not a mertool run directory (no run.json/config.yaml)")
        info = self.info()
        if info.get("status") != "done":
            raise MertoolError(
                f"{self.path}: run is unfinished; re-run `mertool train` with the same options to complete it"
            )
        return info

    def metrics(self, oracle: bool = False) -> dict | None:
        """``metrics.json`` (or ``metrics_ORACLE.json``); None when the file is absent."""
        path = self.metrics_file(oracle)
        return json.loads(path.read_text()) if path.is_file() else None

    # -- writing ---------------------------------------------------------------------------
    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the run's lock (``<run>.lock`` beside the folder; waiting for another job) inside the block.

        Jobs sharing the run hold it while they check the run's identity and write
        ``run.json``/``config.yaml``, and while they pool the folds into the run's outputs.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MertoolError(f"{self.path.parent}: cannot create folder ({exc.strerror})") from None
        lock = OutputLock(self.path.absolute(), wait=True)
        try:
            yield
        finally:
            lock.release()

    def prepare(self, identity: str, overwrite: bool = False, also: Sequence[str] = ()) -> dict:
        """Make the directory ready for the run ``identity``; returns the ``run.json`` being resumed ({} if none).

        A directory holding the same run (its recorded identity is ``identity`` or one of
        ``also``) is resumed; another run is replaced only with ``overwrite``.

        Raises
        ------
        MertoolError
            The folder holds something else, or another run and ``overwrite`` is false, or
            it cannot be created.
        """
        if self.path.exists() and any(self.path.iterdir()):
            if not self.is_run:
                raise MertoolError(f"{self.path}: exists and is not a mertool run directory; choose another -o")
            old = self.info().get("identity")
            if old != identity and old not in also and not overwrite:
                raise MertoolError(
                    f"{self.path}: run directory exists with a different config or input (identity {old}, "
                    f"now {identity}); pass --overwrite to replace it, or choose another -o"
                )
            if overwrite:
                shutil.rmtree(self.path)
                self._info = self._config = None
        try:
            (self.path / "folds").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MertoolError(f"{self.path}: cannot create run directory ({exc.strerror})") from None
        return dict(self.info()) if self.is_run else {}

    def write_info(self, info: dict) -> None:
        """Write ``run.json``."""
        atomic_write_text(self.run_json, json.dumps(info, indent=2))
        self._info = dict(info)

    def write_config(self, config: dict) -> None:
        """Write ``config.yaml`` (the resolved options)."""
        atomic_write_text(self.config_yaml, yaml.safe_dump(config, sort_keys=True))
        self._config = dict(config)

    def write_metrics(self, metrics: dict, oracle: bool = False) -> None:
        """Write ``metrics.json`` (or ``metrics_ORACLE.json``)."""
        atomic_write_text(self.metrics_file(oracle), json.dumps(metrics, indent=2))

    def write_predictions(self, rows: list[dict], oracle: bool = False) -> None:
        """Write ``predictions.csv`` (or its ORACLE twin): one dict per test sample."""
        header = list(rows[0])
        atomic_write_text(self.predictions(oracle), _csv_text(header, ([r[k] for k in header] for r in rows)))

    def write_folds_table(self, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Write ``folds.csv``."""
        atomic_write_text(self.folds_table, _csv_text(header, rows))
