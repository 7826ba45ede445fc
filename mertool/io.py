"""Small file helpers shared by every stage and the trainer: atomic writes, safe names.

A file written through these helpers appears complete at its final path or not at all:
the content goes to a temporary sibling with a name no other process uses (pid and a
random token), created exclusively (an existing file is never truncated), which is then
renamed into place. A failed write removes its temporary file and raises one
:class:`~mertool.errors.MertoolError` naming the path (disk full, read-only folder, a
folder where the file should be) instead of an ``OSError`` traceback.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import MertoolError

_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


def os_error(exc: OSError, path: str | Path) -> MertoolError:
    """The one-line error for an ``OSError`` met while writing ``path``.

    Disk full reads ``disk full writing PATH; free space and re-run: finished work is
    kept``; a read-only or forbidden folder, a missing folder and a folder in the file's
    place name the folder; anything else names the path and the system's reason.
    """
    path = Path(path)
    reason = exc.strerror or str(exc)
    if exc.errno in _DISK_FULL:
        return MertoolError(f"disk full writing {path}; free space and re-run: finished work is kept")
    if exc.errno in _NOT_WRITABLE:
        return MertoolError(f"{path.parent}: folder is not writable ({reason})")
    if exc.errno == errno.ENOENT and not path.parent.is_dir():
        return MertoolError(f"{path.parent}: folder not found")
    if exc.errno == errno.EISDIR or path.is_dir():
        return MertoolError(f"{path}: is a folder; give a file name")
    return MertoolError(f"{path}: cannot write ({reason})")


def temp_sibling(path: str | Path) -> Path:
    """A temporary name beside ``path`` that no other process uses: ``NAME.<pid>-<token>.tmp``."""
    path = Path(path)
    return path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def writable_folder(folder: str | Path, what: str = "output folder") -> Path:
    """Create ``folder`` if needed and prove it writable by creating a file in it.

    A real write, not ``os.access``: it also catches read-only mounts and runs as root.

    Raises
    ------
    MertoolError
        The folder cannot be created or written, naming it and ``what`` it is for.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except FileExistsError:
        raise MertoolError(f"{folder}: {what} is a file, not a folder") from None
    except OSError as exc:
        raise MertoolError(f"{folder}: cannot write the {what} ({exc.strerror or exc})") from None
    return folder


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any], *, fsync: bool = False) -> Path:
    """Write ``path`` through ``write(fh)`` on a temporary sibling, then rename it into place.

    Parameters
    ----------
    path : path
        Final location (its folder must exist).
    write : callable
        Receives a binary file handle and writes the content.
    fsync : bool
        Flush the data to disk before the rename (for files a crash must not lose).

    Raises
    ------
    MertoolError
        The write failed for a reason of the file system (see :func:`os_error`); the
        temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    if path.is_dir():
        raise MertoolError(f"{path}: is a folder; give a file name")
    tmp = temp_sibling(path)
    try:
        with open(tmp, "xb") as fh:
            write(fh)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise os_error(exc, path) from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write text atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda fh: fh.write(text.encode()))


def atomic_savez(path: str | Path, arrays: dict[str, np.ndarray], *, compresslevel: int | None = None) -> Path:
    """``np.savez`` atomically and durably (a per-sample shard survives ``kill -9``).

    ``compresslevel`` (1-9) deflates each array as ``np.savez_compressed`` does, at that
    level (``np.load`` reads both); None stores them uncompressed.
    """
    if compresslevel is None:
        return atomic_write(path, lambda fh: np.savez(fh, **arrays), fsync=True)

    def write(fh: IO[bytes]) -> None:
        with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as zf:
            for name, arr in arrays.items():
                with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)

    return atomic_write(path, write, fsync=True)


class _Remembering:
    """A write-only file handle that keeps the ``OSError`` of a failed write.

    ``torch.save`` turns it into a ``RuntimeError`` ("unexpected pos"), losing the errno
    that tells a full disk from a bug.
    """

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self._fh.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self._fh.flush()


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` atomically (checkpoints and final weights); disk full is one clear error."""
    import torch

    def write(fh: IO[bytes]) -> None:
        sink = _Remembering(fh)
        try:
            torch.save(obj, sink)
        except RuntimeError:
            if sink.error is None:
                raise
            raise sink.error from None

    return atomic_write(path, write)


def safe_name(text: str, unique: bool = False) -> str:
    """A file-name-safe form of a sample id (or other label).

    Characters other than letters, digits, ``_``, ``.`` and ``-`` become ``_``. With
    ``unique`` the name is cut to 60 characters and a hash of the full text is appended,
    so two ids that differ only in replaced characters never share a file.
    """
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", text)
    if not unique:
        return safe
    return f"{safe[:60]}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"
