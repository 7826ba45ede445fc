"""HDF5 stage files: provenance, resume and crash safety.

One stage writes one ``.h5`` file. While it runs, each finished sample is written as its
own shard (``OUT.h5.parts/<id>.npz``, published by atomic rename), so ``kill -9`` loses at
most the samples in flight and a re-run resumes. When every sample is done the shards are
assembled into ``OUT.h5.tmp`` and renamed onto ``OUT.h5``: a file at the final path is
always complete.

Every file carries attributes: ``stage``, ``params`` (JSON), ``config_hash``, ``key`` (a
hash of stage + params + upstream keys, so a later stage can detect a changed input),
``upstream`` (JSON list of ``{path, key}``), ``mertool_version``, ``created``,
``n_samples`` and ``failed`` (JSON ``{sample_id: reason}``).

Layout: per-sample meta as ``/meta/<field>`` (one entry per sample, in file order);
arrays either stacked as ``/data/<name>`` (N x ...) when shapes agree, or per sample as
``/samples/<row>/<name>`` when they do not (e.g. clips of different lengths).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .. import __version__
from ..config import config_hash
from ..errors import MertoolError
from ..io import atomic_savez, atomic_write_text, safe_name

_META_KEY = "__meta__"


def file_key(path: str | Path) -> str:
    """Identity of an input file: a stage file's ``key`` attribute, else a content hash."""
    path = Path(path)
    if not path.is_file():
        raise MertoolError(f"{path}: file not found")
    if path.suffix in (".h5", ".hdf5"):
        return open_stage(path).key
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


class StageWriter:
    """Write one stage's output with resume and atomic publication.

    Parameters
    ----------
    out : path
        Final ``.h5`` path.
    stage : str
        Stage name (``"aligned"``, ``"flow"``, ...).
    params : dict
        Resolved parameters; recorded and hashed.
    upstream : sequence of paths
        Input files; their keys enter this file's key, so a changed input is detected.
    overwrite : bool
        Discard an existing output or unfinished shards made with other parameters.

    Raises
    ------
    MertoolError
        If ``out`` (or unfinished shards) exist from different parameters or inputs and
        ``overwrite`` is false, or the output folder is not writable.

    Notes
    -----
    ``complete`` is true when ``out`` already holds this exact result; the caller then
    has nothing to do.
    """

    def __init__(
        self,
        out: str | Path,
        stage: str,
        params: dict,
        upstream: Sequence[str | Path] = (),
        overwrite: bool = False,
    ) -> None:
        self.out = Path(out)
        self.stage = stage
        self.params = params
        # absolute paths: the provenance walk must not depend on the working directory
        self.upstream = [{"path": str(Path(p).resolve()), "key": file_key(p)} for p in upstream]
        self.config_hash = config_hash(params)
        self.key = config_hash(
            {"stage": stage, "params": params, "upstream": [u["key"] for u in self.upstream]}
        )
        self.parts = self.out.with_name(self.out.name + ".parts")
        self.complete = False
        self._check_writable()

        if self.out.exists() and not overwrite:
            existing = open_stage(self.out)
            if existing.key == self.key:
                self.complete = True
                return
            raise MertoolError(
                f"{self.out}: exists from different parameters or inputs "
                f"(stage {existing.stage!r}, config {existing.config_hash}, now {self.config_hash}); "
                "pass --overwrite to replace it or choose another -o"
            )
        if self.parts.exists():
            manifest = self.parts / "manifest.json"
            old_key = json.loads(manifest.read_text()).get("key") if manifest.exists() else None
            if old_key != self.key:
                if not overwrite:
                    raise MertoolError(
                        f"{self.parts}: unfinished work from different parameters or inputs; "
                        "pass --overwrite to discard it"
                    )
                shutil.rmtree(self.parts)
            elif overwrite:
                shutil.rmtree(self.parts)
        self.parts.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            self.parts / "manifest.json",
            json.dumps({"stage": stage, "key": self.key, "params": params}),
        )

    def _check_writable(self) -> None:
        folder = self.out.parent if str(self.out.parent) else Path(".")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MertoolError(f"{folder}: cannot create output folder ({exc.strerror})") from None
        if not os.access(folder, os.W_OK):
            raise MertoolError(f"{folder}: output folder is not writable")

    def _shard(self, sample_id: str) -> Path:
        return self.parts / (safe_name(sample_id, unique=True) + ".npz")

    def is_done(self, sample_id: str) -> bool:
        return self.complete or self._shard(sample_id).exists()

    def pending(self, sample_ids: Iterable[str]) -> list[str]:
        """The ids not yet finished (all of them after a fresh start)."""
        return [s for s in sample_ids if not self.is_done(s)]

    def add(self, sample_id: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Record one finished sample atomically.

        ``meta`` values must be str, int, float or bool (JSON-able); arrays any dtype.
        """
        payload = {name: np.asarray(a) for name, a in arrays.items()}
        payload[_META_KEY] = np.array(json.dumps({"sample_id": sample_id, **meta}))
        self._failed_marker(sample_id).unlink(missing_ok=True)
        atomic_savez(self._shard(sample_id), payload)

    def _failed_marker(self, sample_id: str) -> Path:
        return self.parts / (safe_name(sample_id, unique=True) + ".failed")

    def fail(self, sample_id: str, reason: str) -> None:
        """Record that a sample could not be processed (it is retried on a re-run)."""
        atomic_write_text(self._failed_marker(sample_id), json.dumps({sample_id: reason}))

    def failures(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for marker in sorted(self.parts.glob("*.failed")):
            out.update(json.loads(marker.read_text()))
        return out

    def finish(self, order: Sequence[str], stacked: bool) -> Path:
        """Assemble finished samples (in ``order``; missing ones skipped) and publish.

        Parameters
        ----------
        order : sequence of str
            Sample ids in the order they should appear.
        stacked : bool
            Stack each array over samples into ``/data/<name>`` (shapes must agree);
            else keep per-sample groups.
        """
        if self.complete:
            return self.out
        done = [s for s in order if self._shard(s).exists()]
        failed = self.failures()
        tmp = self.out.with_name(self.out.name + ".tmp")
        metas: list[dict] = []
        with h5py.File(tmp, "w") as h5:
            data_sets: dict[str, h5py.Dataset] = {}
            for row, sid in enumerate(done):
                with np.load(self._shard(sid)) as npz:
                    metas.append(json.loads(str(npz[_META_KEY])))
                    for name in npz.files:
                        if name == _META_KEY:
                            continue
                        arr = npz[name]
                        if not stacked:
                            h5.create_dataset(f"samples/{row}/{name}", data=arr)
                            continue
                        if name not in data_sets:
                            data_sets[name] = h5.create_dataset(
                                f"data/{name}", shape=(len(done), *arr.shape), dtype=arr.dtype
                            )
                        if data_sets[name].shape[1:] != arr.shape:
                            raise MertoolError(
                                f"sample {sid}: array {name!r} has shape {arr.shape}, "
                                f"others {data_sets[name].shape[1:]}"
                            )
                        data_sets[name][row] = arr
            _write_meta(h5, metas)
            h5.attrs.update(
                {
                    "stage": self.stage,
                    "params": json.dumps(self.params, sort_keys=True),
                    "config_hash": self.config_hash,
                    "key": self.key,
                    "upstream": json.dumps(self.upstream),
                    "mertool_version": __version__,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "n_samples": len(done),
                    "failed": json.dumps(failed),
                    "layout": "stacked" if stacked else "per-sample",
                }
            )
        os.replace(tmp, self.out)
        shutil.rmtree(self.parts, ignore_errors=True)
        self.complete = True
        return self.out


def _write_meta(h5: h5py.File, metas: list[dict]) -> None:
    fields: list[str] = []
    for m in metas:
        fields.extend(k for k in m if k not in fields)
    group = h5.create_group("meta")
    for field in fields:
        values = [m.get(field) for m in metas]
        if all(isinstance(v, (bool, np.bool_)) for v in values):
            group.create_dataset(field, data=np.array(values, dtype=bool))
        elif all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
            group.create_dataset(field, data=np.array(values, dtype=np.int64))
        elif all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values):
            group.create_dataset(field, data=np.array(values, dtype=np.float64))
        else:
            text = ["" if v is None else str(v) for v in values]
            group.create_dataset(field, data=np.array(text, dtype=object), dtype=h5py.string_dtype())


class StageFile:
    """A finished stage file, opened for reading.

    Attributes
    ----------
    path, stage, params, key, config_hash, attrs, meta
        ``meta`` maps field -> list of per-sample values (str/int/float), in file order.
    """

    def __init__(self, path: Path, attrs: dict, meta: dict[str, list], layout: str) -> None:
        self.path = path
        self.attrs = attrs
        self.meta = meta
        self.layout = layout
        self.stage = attrs["stage"]
        self.key = attrs["key"]
        self.config_hash = attrs.get("config_hash", "")
        self.params = json.loads(attrs.get("params", "{}"))
        self.failed: dict[str, str] = json.loads(attrs.get("failed", "{}"))
        self.sample_ids: list[str] = list(meta.get("sample_id", []))
        self._row = {sid: i for i, sid in enumerate(self.sample_ids)}

    def __len__(self) -> int:
        return len(self.sample_ids)

    def row(self, sample_id: str) -> int:
        try:
            return self._row[sample_id]
        except KeyError:
            raise MertoolError(f"{self.path}: no sample {sample_id!r}") from None

    def array_names(self) -> list[str]:
        with h5py.File(self.path, "r") as h5:
            if "data" in h5:
                return list(h5["data"].keys())
            return list(h5["samples/0"].keys()) if "samples/0" in h5 else []

    def array(self, name: str) -> np.ndarray:
        """A stacked array (N x ...) in one contiguous read."""
        with h5py.File(self.path, "r") as h5:
            if f"data/{name}" not in h5:
                raise MertoolError(
                    f"{self.path}: no stacked array {name!r} (has {self.array_names()})"
                )
            return h5[f"data/{name}"][...]

    def sample(self, sample_id: str, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """All (or the named) arrays of one sample."""
        row = self.row(sample_id)
        with h5py.File(self.path, "r") as h5:
            if self.layout == "stacked":
                keys = names or list(h5["data"].keys())
                return {k: h5[f"data/{k}"][row] for k in keys}
            group = h5[f"samples/{row}"]
            keys = names or list(group.keys())
            return {k: group[k][...] for k in keys}

    def meta_of(self, sample_id: str) -> dict[str, Any]:
        row = self.row(sample_id)
        return {k: v[row] for k, v in self.meta.items()}

    def upstream(self) -> list[dict[str, Any]]:
        """The input files this one was made from: ``[{"path": Path, "key": str}, ...]``.

        Paths are absolute since files record them resolved; a relative path (files of
        older versions) is tried against the working directory, then this file's folder.
        """
        out = []
        for entry in json.loads(self.attrs.get("upstream", "[]")):
            path = Path(entry["path"])
            if not path.is_absolute() and not path.exists():
                path = self.path.parent / path
            out.append({"path": path, "key": entry.get("key", "")})
        return out

    def iter_frames(self, sample_id: str, chunk: int = 64) -> Iterator[np.ndarray]:
        """Stream one sample's ``frames`` array, ``chunk`` frames (T x H x W x C) at a time.

        Works for both layouts, so a long clip is never read whole.
        """
        row = self.row(sample_id)
        with h5py.File(self.path, "r") as h5:
            stacked = self.layout == "stacked"
            name = "data/frames" if stacked else f"samples/{row}/frames"
            if name not in h5:
                raise MertoolError(f"{self.path}: sample {sample_id} has no frames (is it an aligned.h5?)")
            ds = h5[name]
            length = ds.shape[1] if stacked else ds.shape[0]
            for i in range(0, length, chunk):
                block = ds[row, i : i + chunk] if stacked else ds[i : i + chunk]
                yield block if block.ndim == 4 else block[..., None]

    def shapes(self) -> dict[str, tuple]:
        with h5py.File(self.path, "r") as h5:
            if "data" in h5:
                return {k: h5[f"data/{k}"].shape for k in h5["data"]}
            if "samples/0" in h5:
                return {k: ("per-sample", *h5[f"samples/0/{k}"].shape) for k in h5["samples/0"]}
            return {}


def open_stage(path: str | Path, expect: str | Sequence[str] | None = None) -> StageFile:
    """Open a finished stage file, checking it is one (and of the expected stage).

    Raises
    ------
    MertoolError
        Missing, corrupt or foreign file, or a stage other than ``expect``.
    """
    path = Path(path)
    if not path.is_file():
        hint = " (unfinished: re-run the stage to complete it)" if Path(str(path) + ".parts").exists() else ""
        raise MertoolError(f"{path}: file not found{hint}")
    try:
        with h5py.File(path, "r") as h5:
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in h5.attrs.items()}
            if "stage" not in attrs or "key" not in attrs:
                raise MertoolError(f"{path}: an HDF5 file, but not a mertool stage file (no provenance)")
            meta = {}
            for field, ds in h5.get("meta", {}).items():
                values = ds.asstr()[...] if h5py.check_string_dtype(ds.dtype) else ds[...]
                meta[field] = values.tolist()
    except MertoolError:
        raise
    except (OSError, KeyError) as exc:
        raise MertoolError(f"{path}: not a readable HDF5 file ({exc})") from None
    if expect is not None:
        allowed = [expect] if isinstance(expect, str) else list(expect)
        if attrs["stage"] not in allowed:
            raise MertoolError(
                f"{path}: is a {attrs['stage']!r} stage file; expected {' or '.join(map(repr, allowed))}"
            )
    return StageFile(path, attrs, meta, str(attrs.get("layout", "stacked")))


def pipeline_of(path: str | Path, depth: int = 4) -> list[dict]:
    """Stage and parameters of a stage file and its upstream stage files, nearest first.

    The walk follows each file's recorded inputs as far as they can still be read; it is
    what ``mertool predict`` replays on a new clip.
    """
    chain: list[dict] = []
    todo = [Path(path)]
    while todo and len(chain) < depth:
        p = todo.pop(0)
        if p.suffix not in (".h5", ".hdf5") or not p.is_file():
            continue
        try:
            sf = open_stage(p)
        except MertoolError:
            continue
        chain.append({"path": str(p), "stage": sf.stage, "key": sf.key, "params": sf.params})
        todo += [u["path"] for u in sf.upstream()]
    return chain
