"""Small file helpers shared by every stage and the trainer: atomic writes, safe names.

A file written through these helpers appears complete at its final path or not at all:
the content goes to a temporary sibling first, which is then renamed into place.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any], *, fsync: bool = False) -> Path:
    """Write ``path`` through ``write(fh)`` on a temporary sibling, then rename it into place.

    Parameters
    ----------
    path : path
        Final location.
    write : callable
        Receives a binary file handle and writes the content.
    fsync : bool
        Flush the data to disk before the rename (for files a crash must not lose).
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        write(fh)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write text atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda fh: fh.write(text.encode()))


def atomic_savez(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """``np.savez`` atomically and durably (a per-sample shard survives ``kill -9``)."""
    return atomic_write(path, lambda fh: np.savez(fh, **arrays), fsync=True)


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` atomically (checkpoints and final weights)."""
    import torch

    return atomic_write(path, lambda fh: torch.save(obj, fh))


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
