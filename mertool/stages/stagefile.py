"""HDF5 stage files: provenance, resume, one writer per output, verified publication.

One stage writes one ``.h5`` file. While it runs, each finished sample is written as its
own shard (``OUT.h5.parts/<id>.npz``, published by atomic rename), so ``kill -9`` loses at
most the samples in flight and a re-run resumes. When every sample is done the shards are
assembled into a uniquely named temporary file beside ``OUT.h5``, which is read back and
checked against the shards before it is renamed onto ``OUT.h5``: a file at the final path
is always complete and equal to its shards.

One writer per output: a :class:`StageWriter` holds an exclusive lock on ``OUT.h5.lock``
(an ``flock``, so the system frees it however its holder dies; the file records the
holder's pid, host and start time). A second writer stops at once with one line naming
the holder, or waits for it with ``MERTOOL_WAIT=1`` (``mertool --wait``). A lock left by a
process that died is taken over with a warning. Within one process a newer writer of the
same output replaces an older one left open (an abandoned run in a notebook or a test).

Content-aware keys: a stage that reads clips passes per-sample ``fingerprints`` (see
:func:`mertool.samples.fingerprint`). Each shard records its sample's fingerprint; a
shard whose clip has changed is computed again, and a finished file whose clips changed
is refused (naming them) until ``--overwrite``, which recomputes only those clips.

Every file carries attributes: ``stage``, ``params`` (JSON), ``config_hash``,
``plan_key`` (a hash of stage + params + upstream keys: what was asked), ``key`` (a hash
of ``plan_key`` and every sample's checksum: what was made, so a later stage detects a
changed input, and equal keys mean equal content), ``upstream`` (JSON list of ``{path,
key}``), ``mertool_version``, ``created``, ``n_samples``, ``failed`` (JSON ``{sample_id:
reason}``) and ``checksum`` (how the per-sample checksums are made).

Layout: per-sample meta as ``/meta/<field>`` (one entry per sample, in file order);
arrays either stacked as ``/data/<name>`` (N x ...) when shapes agree, or per sample as
``/samples/<row>/<name>`` when they do not (e.g. clips of different lengths);
``/checksums`` (one per sample, :func:`array_checksum`) and, for stages with
fingerprints, ``/fingerprints`` (JSON ``{sample_id: fingerprint}``).

Storage (:func:`chunk_shape`, :func:`parse_compression`): arrays are chunked, a chunk
holding one frame of a clip or one sample's array, and compressed with the writer's
``compression`` (``lzf`` by default, ``gzip:LEVEL``, or ``none``), recorded in the
``compression`` attribute. Compression is a storage choice, not content: the ``key``
does not depend on it. A finished file asked for with another compression is re-packed
(its samples copied into a new file, nothing recomputed, the key kept); asked for with
none given (``compression=None``) it is kept as it is. Shards are deflate-compressed
(zip level 1) unless the compression is ``none``. The final file is assembled one
shard at a time, so its memory stays about one shard, whatever the file's size; the
disk holds the shards and the final file together until the file is verified.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import time
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np

from .. import __version__
from ..config import config_hash
from ..errors import MertoolError, UsageError
from ..io import atomic_savez, atomic_write_text, os_error, safe_name, temp_sibling, writable_folder
from ..lock import OutputLock, wait_for_lock
from ..log import logger
from ..samples import same_content

_META_KEY = "__meta__"
_SUM_KEY = "__checksum__"
_FP_KEY = "__fingerprint__"
_RESERVED = (_META_KEY, _SUM_KEY, _FP_KEY)
#: Set (to anything but "" or "0") to wait for another writer of the same output.
#: How ``/checksums`` are made (recorded in the ``checksum`` attribute).
CHECKSUM = "sha256 over each array sorted by name: name, dtype, shape, C-order bytes"
#: Errors that mean a shard file cannot be read (zero bytes, cut short, not a zip).
_SHARD_ERRORS = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile)
#: A new stage file's compression when none is asked for (see :func:`parse_compression`).
DEFAULT_COMPRESSION = "lzf"
#: The level of a plain ``gzip`` compression.
GZIP_LEVEL = 4
#: Deflate level of compressed shards (level 1: nearly the ratio of 6 at twice the speed).
SHARD_LEVEL = 1
#: Stacked arrays whose rows are smaller than this share chunks (many tiny chunks read slowly).
MIN_CHUNK_BYTES = 1 << 16


def parse_compression(text: str) -> str:
    """The canonical form of a compression: ``lzf``, ``gzip:LEVEL`` (``gzip`` = level
    :data:`GZIP_LEVEL`) or ``none``.

    Raises
    ------
    UsageError
        Any other value.
    """
    value = str(text).strip().lower()
    name, _, level = value.partition(":")
    if value in ("lzf", "none"):
        return value
    if name == "gzip" and not level:
        return f"gzip:{GZIP_LEVEL}"
    if name == "gzip" and level.isdigit() and 1 <= int(level) <= 9:
        return f"gzip:{int(level)}"
    raise UsageError(f"compression {text!r}: choose lzf, gzip, gzip:LEVEL (LEVEL 1-9) or none")


def chunk_shape(shape: Sequence[int], itemsize: int, stacked: bool) -> tuple[int, ...] | None:
    """The HDF5 chunk of an array of a stage file.

    A sample's array of 4 or more axes (a clip of images, T x H x W x C) is chunked one
    frame at a time; any other sample's array is one chunk. Stacked arrays (N x ...)
    hold one sample per chunk, or as many as fit in :data:`MIN_CHUNK_BYTES` when a
    sample's array is smaller.

    Returns
    -------
    tuple or None
        None for a scalar or empty array (stored contiguous, uncompressed).
    """
    shape = tuple(int(n) for n in shape)
    if not shape or 0 in shape:
        return None
    lead = 1 if stacked else 0  # the sample axis
    if len(shape) - lead >= 4:
        return (1,) * (lead + 1) + shape[lead + 1 :]
    if not stacked:
        return shape
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * itemsize
    return (max(1, min(shape[0], MIN_CHUNK_BYTES // max(row_bytes, 1))), *shape[1:])


def _create_array(h5: h5py.Group, name: str, shape: tuple, dtype: Any, compression: str, stacked: bool, data: Any = None) -> h5py.Dataset:
    """A dataset of a stage file, chunked (:func:`chunk_shape`) and compressed."""
    chunks = chunk_shape(shape, np.dtype(dtype).itemsize, stacked)
    options: dict[str, Any] = {}
    if chunks is not None and compression != "none":
        name_, _, level = compression.partition(":")
        options = {"compression": name_, "compression_opts": int(level) if level else None}
    return h5.create_dataset(name, shape=shape, dtype=dtype, data=data, chunks=chunks, **options)


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


def array_checksum(arrays: Mapping[str, np.ndarray]) -> str:
    """Checksum of one sample's arrays (see :data:`CHECKSUM`), 32 hex digits."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}\0{arr.dtype.str}\0{arr.shape}\0".encode())
        digest.update(arr.reshape(-1).view(np.uint8))  # the C-order bytes, without a copy
    return digest.hexdigest()[:32]


def content_key(plan_key: str, sample_ids: Sequence[str], checksums: Sequence[str], failed: Iterable[str]) -> str:
    """A finished file's ``key``: its plan, and each sample's checksum, in file order."""
    return config_hash({"plan": plan_key, "samples": [list(p) for p in zip(sample_ids, checksums)], "failed": sorted(failed)})


class StageWriter:
    """Write one stage's output with resume, one writer at a time, and verified publication.

    Parameters
    ----------
    out : path
        Final ``.h5`` path.
    stage : str
        Stage name (``"aligned"``, ``"flow"``, ...).
    params : dict
        Resolved parameters; recorded and hashed.
    upstream : sequence of paths
        Input files; their keys enter this file's plan, so a changed input is detected.
    overwrite : bool
        Discard an existing output or unfinished shards made with other parameters or
        inputs; when only some clips' frames changed, recompute those clips only.
    fingerprints : mapping, optional
        ``{sample_id: fingerprint}`` of the clips the stage reads
        (:func:`mertool.samples.clip_fingerprints`), for content-aware resume and reuse.
    wait : bool, optional
        Wait for another writer of ``out`` to finish (default: ``MERTOOL_WAIT``).
    compression : str, optional
        ``lzf``, ``gzip``, ``gzip:LEVEL`` or ``none`` (:func:`parse_compression`); None:
        :data:`DEFAULT_COMPRESSION` for a new file, and a finished file kept as it is.
        A finished file stored otherwise than asked is re-packed (see the module
        docstring).
    revision : int
        Part of the key when not 0: a stage passes a higher number for parameters whose
        computation changed, so that files made before with the same parameters are not
        taken as up to date.

    Raises
    ------
    UsageError
        An unknown ``compression``.
    MertoolError
        ``out`` (or unfinished shards) exist from different parameters or inputs, or
        clips changed, and ``overwrite`` is false; ``out`` is a folder; the output folder
        is not writable; another process is writing ``out``.

    Notes
    -----
    ``complete`` is true when ``out`` already holds this exact result; the caller then
    has nothing to do (and the lock is already released). Otherwise the writer holds the
    output's lock until :meth:`finish` or :meth:`close`.
    """

    def __init__(
        self,
        out: str | Path,
        stage: str,
        params: dict,
        upstream: Sequence[str | Path] = (),
        overwrite: bool = False,
        fingerprints: Mapping[str, str] | None = None,
        wait: bool | None = None,
        compression: str | None = None,
        revision: int = 0,
    ) -> None:
        self.out = Path(out)
        self._asked = None if compression is None else parse_compression(compression)
        self.compression = self._asked or DEFAULT_COMPRESSION
        self.stage = stage
        self.params = params
        # absolute paths: the provenance walk must not depend on the working directory
        self.upstream = [{"path": str(Path(p).resolve()), "key": file_key(p)} for p in upstream]
        self.config_hash = config_hash(params)
        self.plan_key = config_hash(
            {"stage": stage, "params": params, "upstream": [u["key"] for u in self.upstream],
             **({"revision": revision} if revision else {})}
        )
        self.fingerprints = dict(fingerprints or {})
        self.key: str | None = None  # known once the file is finished
        self.parts = self.out.with_name(self.out.name + ".parts")
        self.complete = False
        self._check_writable()
        self._lock = OutputLock(self.out, wait=wait_for_lock() if wait is None else wait)
        try:
            self._prepare(overwrite)
        except BaseException:
            self.close()
            raise
        if self.complete:
            self.close()

    def close(self) -> None:
        """Release the output's lock (unfinished shards stay for a re-run)."""
        self._lock.release()

    def __enter__(self) -> StageWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_writable(self) -> None:
        folder = self.out.parent if str(self.out.parent) else Path(".")
        if self.out.is_dir():
            raise MertoolError(f"{self.out}: is a folder; give the .h5 file to write (e.g. {self.out / (self.stage + '.h5')})")
        writable_folder(folder, "output folder")

    def _prepare(self, overwrite: bool) -> None:
        """Decide, under the lock, what is reused: the finished file, shards, or nothing."""
        existing = self._existing(overwrite)
        changed: list[str] = []
        if existing is not None:
            same_plan = existing.plan_key == self.plan_key
            changed = self._changed_clips(existing) if same_plan else []
            if same_plan and not changed and not overwrite:
                if self._asked not in (None, existing.compression):
                    self._repack(existing)
                self.complete, self.key = True, existing.key
                return
            if not overwrite:
                raise MertoolError(self._stale_message(existing, changed))
        self._open_parts(overwrite, keep=bool(changed))
        if changed:
            self._salvage(existing, changed)

    def _existing(self, overwrite: bool) -> StageFile | None:
        """The finished file at ``out``, if any (an unreadable one only matters without ``overwrite``)."""
        if not self.out.exists():
            return None
        try:
            return open_stage(self.out)
        except MertoolError as exc:
            if overwrite:
                return None
            raise MertoolError(f"{exc}; pass --overwrite to replace it or choose another -o") from None

    def _changed_clips(self, existing: StageFile) -> list[str]:
        stored = existing.fingerprints()
        if self.fingerprints and not stored:
            logger.info(f"{self.out}: made without clip fingerprints (an older mertool); frames not re-checked")
        return [sid for sid, fp in self.fingerprints.items() if stored and not same_content(stored.get(sid, ""), fp)]

    def _stale_message(self, existing: StageFile, changed: list[str]) -> str:
        if changed:
            more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
            return (
                f"{self.out}: the frames of {len(changed)} clip(s) changed since it was made "
                f"({', '.join(changed[:5])}{more}); pass --overwrite to recompute them (the other clips are kept)"
            )
        before = {u["path"]: u["key"] for u in json.loads(existing.attrs.get("upstream", "[]"))}
        what = ["parameters"] if existing.config_hash != self.config_hash else []
        what += [f"input {u['path']}" for u in self.upstream if before.get(u["path"], u["key"]) != u["key"]]
        config = f"; config {existing.config_hash}, now {self.config_hash}" if what[:1] == ["parameters"] else ""
        return (
            f"{self.out}: exists from different parameters or inputs ({', '.join(what) or 'inputs'} changed; "
            f"stage {existing.stage!r}{config}); pass --overwrite to replace it or choose another -o"
        )

    def _open_parts(self, overwrite: bool, keep: bool) -> None:
        """Resume shards of this plan (with ``overwrite``, only if ``keep``); clear temporaries."""
        if self.parts.exists():
            same_plan = _parts_plan(self.parts) == self.plan_key
            if not same_plan and not overwrite:
                raise MertoolError(
                    f"{self.parts}: unfinished work from different parameters or inputs; pass --overwrite to discard it"
                )
            if not same_plan or (overwrite and not keep):
                shutil.rmtree(self.parts)
        # the lock is held: temporaries left beside the output or in the shards are dead
        for leftover in self.out.parent.glob(glob.escape(self.out.name) + ".*tmp"):
            leftover.unlink(missing_ok=True)
        self.parts.mkdir(parents=True, exist_ok=True)
        for leftover in self.parts.glob("*.tmp"):
            leftover.unlink(missing_ok=True)
        atomic_write_text(
            self.parts / "manifest.json",
            json.dumps({"stage": self.stage, "plan_key": self.plan_key, "params": self.params}),
        )

    def _repack(self, existing: StageFile) -> None:
        """Copy a finished file into a new one stored with ``compression`` (same samples,
        failures and key; nothing recomputed): through shards, as a run would."""
        logger.info(f"{self.out}: up to date; re-packing it from {existing.compression} to {self.compression} compression")
        self._open_parts(overwrite=False, keep=True)
        self._salvage(existing, [])
        for sid, reason in existing.failed.items():
            self.fail(sid, reason)
        self.finish(existing.sample_ids, stacked=existing.layout == "stacked")
        if self.key != existing.key:
            raise MertoolError(f"{self.out}: re-packing changed the key ({existing.key} -> {self.key}); re-run with --overwrite")

    def _salvage(self, existing: StageFile, changed: list[str]) -> None:
        """Shards, from the finished file, of every sample whose clip did not change."""
        kept, checksums = 0, existing.checksums
        for row, sid in enumerate(existing.sample_ids):
            if sid in changed or self._shard(sid).exists():
                continue
            arrays = existing.sample(sid)
            if checksums and array_checksum(arrays) != checksums[row]:
                continue  # damaged in the old file: compute it again
            self.add(sid, arrays, {k: v for k, v in existing.meta_of(sid).items() if k != "sample_id"})
            kept += 1
        if changed:
            logger.info(f"{self.out}: recomputing {len(changed)} changed clip(s), keeping {kept}")

    def _shard(self, sample_id: str) -> Path:
        return self.parts / (safe_name(sample_id, unique=True) + ".npz")

    def pending(self, sample_ids: Iterable[str]) -> list[str]:
        """The ids not yet finished (all of them after a fresh start).

        A shard that cannot be read (zero bytes, cut short) or whose clip changed since it
        was made is removed, with a warning, and its sample counts as pending.
        """
        if self.complete:
            return []
        return [sid for sid in sample_ids if not self._shard_current(sid)]

    def _shard_current(self, sample_id: str) -> bool:
        shard = self._shard(sample_id)
        if not shard.exists():
            return False
        try:
            with np.load(shard) as npz:
                made_from = str(npz[_FP_KEY]) if _FP_KEY in npz.files else ""
                json.loads(str(npz[_META_KEY]))
        except _SHARD_ERRORS as exc:
            logger.warning(f"sample {sample_id}: its shard {shard} is unreadable ({exc or type(exc).__name__}); computing it again")
            shard.unlink(missing_ok=True)
            return False
        if not same_content(made_from, self.fingerprints.get(sample_id, "")):
            logger.warning(f"sample {sample_id}: its frames changed since its shard was made; computing it again")
            shard.unlink()
            return False
        return True

    def _check_lock(self) -> None:
        if not self._lock.held:
            raise MertoolError(f"{self.out}: this writer no longer holds the output's lock (closed, or replaced by a newer one)")

    def add(self, sample_id: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Record one finished sample atomically, with its checksum (and fingerprint).

        ``meta`` values must be str, int, float or bool (JSON-able); arrays any dtype.
        """
        self._check_lock()
        self.sink(sample_id).add(arrays, meta)

    def sink(self, sample_id: str) -> ShardSink:
        """Where ``sample_id``'s result goes: a picklable :class:`ShardSink`, for a worker
        process (or a cluster worker sharing the folder) to write the shard itself."""
        level = None if self.compression == "none" else SHARD_LEVEL
        fingerprint = self.fingerprints.get(sample_id)
        return ShardSink(sample_id, self._shard(sample_id), self._failed_marker(sample_id), self.plan_key, fingerprint, level)

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
        """Assemble finished samples (in ``order``; missing ones skipped), verify, publish.

        Parameters
        ----------
        order : sequence of str
            Sample ids in the order they should appear.
        stacked : bool
            Stack each array over samples into ``/data/<name>`` (shapes must agree);
            else keep per-sample groups.

        Raises
        ------
        MertoolError
            A shard is unreadable or damaged (it is removed: a re-run computes it again),
            shapes disagree in a stacked layout, the assembled file differs from the
            shards, or the disk is full. Nothing is published then; shards are kept.
        """
        if self.complete:
            return self.out
        self._check_lock()
        done = [s for s in order if self._shard(s).exists()]
        failed = self.failures()
        tmp = temp_sibling(self.out)
        try:
            checksums = self._assemble(tmp, order, done, failed, stacked)
            problems = open_stage(tmp).verify(dict(zip(done, checksums)))
            if problems:
                raise MertoolError(f"{self.out}: the assembled file does not match its shards ({problems[0]}); re-run")
            os.replace(tmp, self.out)
        except OSError as exc:
            raise os_error(exc, self.out) from None
        finally:
            tmp.unlink(missing_ok=True)
        shutil.rmtree(self.parts, ignore_errors=True)
        self.complete = True
        self.close()
        return self.out

    def _assemble(self, tmp: Path, order: Sequence[str], done: list[str], failed: dict, stacked: bool) -> list[str]:
        """Write the finished samples into ``tmp``; returns their checksums (file order)."""
        metas: list[dict] = []
        checksums: list[str] = []
        with h5py.File(tmp, "w-") as h5:
            data_sets: dict[str, h5py.Dataset] = {}
            for row, sid in enumerate(done):
                meta, checksum = self._copy_shard(h5, data_sets, sid, row, len(done) if stacked else None)
                metas.append(meta)
                checksums.append(checksum)
            _write_meta(h5, metas)
            h5.create_dataset("checksums", data=np.array(checksums, dtype=object), dtype=h5py.string_dtype())
            if self.fingerprints:
                made_from = {sid: self.fingerprints[sid] for sid in order if sid in self.fingerprints}
                h5.create_dataset("fingerprints", data=json.dumps(made_from), dtype=h5py.string_dtype())
            self.key = content_key(self.plan_key, done, checksums, failed)
            h5.attrs.update(self._attrs(len(done), failed, stacked))
        return checksums

    def _copy_shard(self, h5: h5py.File, data_sets: dict, sample_id: str, row: int, stacked: int | None) -> tuple[dict, str]:
        """Write one shard's arrays into the file being assembled (``stacked``: the number of
        rows of ``/data``; None: per-sample groups); returns its meta and checksum.

        One shard is in memory at a time: its arrays are freed when this returns.
        """
        arrays, meta, checksum = self._read_shard(sample_id)
        for name, arr in arrays.items():
            if stacked is None:
                _create_array(h5, f"samples/{row}/{name}", arr.shape, arr.dtype, self.compression, False, arr)
                continue
            if name not in data_sets:
                data_sets[name] = _create_array(h5, f"data/{name}", (stacked, *arr.shape), arr.dtype, self.compression, True)
            if data_sets[name].shape[1:] != arr.shape:
                raise MertoolError(f"sample {sample_id}: array {name!r} has shape {arr.shape}, others {data_sets[name].shape[1:]}")
            data_sets[name][row] = arr
        return meta, checksum

    def _attrs(self, n_samples: int, failed: dict, stacked: bool) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "params": json.dumps(self.params, sort_keys=True),
            "config_hash": self.config_hash,
            "plan_key": self.plan_key,
            "key": self.key,
            "upstream": json.dumps(self.upstream),
            "mertool_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "n_samples": n_samples,
            "failed": json.dumps(failed),
            "layout": "stacked" if stacked else "per-sample",
            "compression": self.compression,
            "checksum": CHECKSUM,
        }

    def _read_shard(self, sample_id: str) -> tuple[dict[str, np.ndarray], dict, str]:
        """A shard's arrays, meta and checksum, checked against the checksum it was written with."""
        shard = self._shard(sample_id)
        try:
            with np.load(shard) as npz:
                meta = json.loads(str(npz[_META_KEY]))
                arrays = {name: npz[name] for name in npz.files if name not in _RESERVED}
                stored = str(npz[_SUM_KEY]) if _SUM_KEY in npz.files else ""
        except _SHARD_ERRORS as exc:
            shard.unlink(missing_ok=True)
            raise MertoolError(f"sample {sample_id}: its shard is unreadable ({exc}); removed it, re-run to compute it again") from None
        checksum = array_checksum(arrays)
        if stored and stored != checksum:
            shard.unlink()
            raise MertoolError(f"sample {sample_id}: its shard is damaged (checksum mismatch); removed it, re-run to compute it again")
        return arrays, meta, checksum


class ShardSink(NamedTuple):
    """One sample's shard in ``OUT.h5.parts/``, written by whichever process computed it.

    Made by :meth:`StageWriter.sink`. It holds no lock (the writer that made it does);
    before writing it checks that the shard folder still belongs to its writer's plan, so
    a task that outlives its run (a cluster worker, after its driver was killed) cannot
    leave a shard in a later run of other parameters or inputs.
    """

    sample_id: str
    shard: Path
    failed_marker: Path
    plan_key: str
    fingerprint: str | None
    compresslevel: int | None

    def add(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Write the sample atomically, with its checksum (and fingerprint); see :meth:`StageWriter.add`.

        Raises
        ------
        MertoolError
            The shard folder is gone or now holds work of other parameters or inputs.
        """
        if _parts_plan(self.shard.parent) != self.plan_key:
            raise MertoolError(f"{self.shard.parent}: no longer this run's shard folder; sample {self.sample_id} not written")
        payload = {name: np.asarray(a) for name, a in arrays.items()}
        payload[_META_KEY] = np.array(json.dumps({"sample_id": self.sample_id, **meta}))
        payload[_SUM_KEY] = np.array(array_checksum(arrays))
        if self.fingerprint is not None:
            payload[_FP_KEY] = np.array(self.fingerprint)
        self.failed_marker.unlink(missing_ok=True)
        atomic_savez(self.shard, payload, compresslevel=self.compresslevel)


def _parts_plan(parts: Path) -> str | None:
    """The plan an unfinished shard folder was made for (``key`` in older versions)."""
    try:
        manifest = json.loads((parts / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return manifest.get("plan_key", manifest.get("key"))


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
        self.plan_key = attrs.get("plan_key", attrs["key"])  # files of older versions: key was the plan
        self.config_hash = attrs.get("config_hash", "")
        self.params = json.loads(attrs.get("params", "{}"))
        #: How the arrays are stored (:func:`parse_compression`; files of older versions: none).
        self.compression = str(attrs.get("compression", "none"))
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
        with h5py.File(self.path, "r") as h5:
            return self._arrays(h5, self.row(sample_id), names)

    def _arrays(self, h5: h5py.File, row: int, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        if self.layout == "stacked":
            keys = names or (list(h5["data"].keys()) if "data" in h5 else [])
            return {k: h5[f"data/{k}"][row] for k in keys}
        group = h5[f"samples/{row}"]
        return {k: group[k][...] for k in (names or list(group.keys()))}

    @property
    def checksums(self) -> list[str] | None:
        """Each sample's :func:`array_checksum`, in file order (None for files of older versions)."""
        with h5py.File(self.path, "r") as h5:
            return h5["checksums"].asstr()[...].tolist() if "checksums" in h5 else None

    def fingerprints(self) -> dict[str, str]:
        """``{sample_id: fingerprint}`` of the clips the file was made from ({} if not recorded)."""
        with h5py.File(self.path, "r") as h5:
            return json.loads(h5["fingerprints"].asstr()[()]) if "fingerprints" in h5 else {}

    def verify(self, expect: Mapping[str, str] | None = None) -> list[str]:
        """Re-read every sample and compare it with its stored checksum.

        Parameters
        ----------
        expect : mapping, optional
            ``{sample_id: checksum}`` the file must hold exactly (its shards').

        Returns
        -------
        list of str
            The problems found (empty: the file is intact): a sample whose data differ
            from its checksum, missing or extra samples, a count or key that does not
            match the content, or no checksums at all (files of older versions).
        """
        sums = self.checksums
        if sums is None:
            return ["no per-sample checksums (written by an older mertool; re-run the stage with --overwrite)"]
        problems = []
        if not len(sums) == len(self) == int(self.attrs.get("n_samples", -1)):
            problems.append(f"{len(self)} samples, {len(sums)} checksums, n_samples {self.attrs.get('n_samples')}")
        with h5py.File(self.path, "r") as h5:
            for row, (sid, stored) in enumerate(zip(self.sample_ids, sums)):
                got = array_checksum(self._arrays(h5, row))
                if got != stored or (expect is not None and expect.get(sid) != got):
                    problems.append(f"sample {sid}: data differ from its {'checksum' if got != stored else 'shard'}")
        if expect is not None and set(expect) != set(self.sample_ids):
            missing = sorted(set(expect) - set(self.sample_ids))
            problems.append(f"samples missing: {', '.join(missing[:5]) or '-'}; unexpected: {len(set(self.sample_ids) - set(expect))}")
        if "plan_key" in self.attrs and content_key(self.plan_key, self.sample_ids, sums, self.failed) != self.key:
            problems.append("the key does not match the content")
        return problems

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


def open_stage(path: "str | Path | StageFile", expect: str | Sequence[str] | None = None) -> StageFile:
    """Open a finished stage file, checking it is one (and of the expected stage).

    An already open :class:`StageFile` is returned as it is (after the ``expect`` check),
    so functions can take either a path or an open file.

    Raises
    ------
    MertoolError
        Missing, corrupt or foreign file, or a stage other than ``expect``.
    """
    if isinstance(path, StageFile):
        _check_stage(path.path, path.stage, expect)
        return path
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
    _check_stage(path, attrs["stage"], expect)
    return StageFile(path, attrs, meta, str(attrs.get("layout", "stacked")))


def _check_stage(path: Path, stage: str, expect: str | Sequence[str] | None) -> None:
    if expect is None:
        return
    allowed = [expect] if isinstance(expect, str) else list(expect)
    if stage not in allowed:
        raise MertoolError(f"{path}: is a {stage!r} stage file; expected {' or '.join(map(repr, allowed))}")


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
