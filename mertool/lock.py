"""An exclusive, crash-safe lock on one output path (a stage file, a run, a fold).

The lock is an ``flock`` on ``PATH.lock``, so the system frees it however its holder dies
(``kill -9`` included); the file records the holder's pid, host and start time, so a
refused writer can name it. A second writer stops with one error naming the holder, or,
with ``MERTOOL_WAIT=1`` (``mertool --wait``), waits for it. POSIX only (``fcntl``).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
import weakref
from pathlib import Path

from .errors import MertoolError
from .io import os_error
from .log import logger

#: Wait for the holder of an output's lock instead of stopping (``mertool --wait``).
WAIT_ENV = "MERTOOL_WAIT"


def wait_for_lock() -> bool:
    """Whether a writer waits for the holder of its output's lock (``MERTOOL_WAIT``)."""
    return os.environ.get(WAIT_ENV, "") not in ("", "0")


class OutputLock:
    """An exclusive lock on one output path (see the module docstring).

    Parameters
    ----------
    target : Path
        The output; the lock file is ``target`` + ``.lock``.
    wait : bool
        Wait for a holder to finish instead of stopping.

    Raises
    ------
    MertoolError
        Another process holds the lock (and ``wait`` is false), naming it; or the lock
        file cannot be created (the folder is not writable).
    """

    _held: weakref.WeakValueDictionary[str, OutputLock] = weakref.WeakValueDictionary()

    def __init__(self, target: Path, *, wait: bool = False) -> None:
        self.target = target
        self.path = target.with_name(target.name + ".lock")
        ident = str(self.path.resolve())
        older = OutputLock._held.pop(ident, None)
        if older is not None:
            older.release()
        fd = self._acquire(wait)
        self._release = weakref.finalize(self, _release_lock, fd, self.path)
        OutputLock._held[ident] = self

    @property
    def held(self) -> bool:
        return self._release.alive

    def release(self) -> None:
        """Give the lock up (removing the lock file); safe to call twice."""
        self._release()

    def _acquire(self, wait: bool) -> int:
        announced = False
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise os_error(exc, self.path) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _describe_holder(_read_holder(fd))
                if not wait:
                    os.close(fd)
                    raise MertoolError(
                        f"{self.target}: being written by {holder}; wait for it to finish, "
                        f"or queue behind it with `mertool --wait ...` (or {WAIT_ENV}=1)"
                    ) from None
                if not announced:
                    logger.info(f"{self.target}: waiting for {holder} to finish")
                    announced = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            if not _same_file(fd, self.path):  # released and removed while we waited: try again
                os.close(fd)
                continue
            left = _read_holder(fd)
            if left:
                logger.warning(
                    f"{self.target}: taking over the lock of {_describe_holder(left)}, which ended without releasing it"
                )
            record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode(), 0)
            return fd


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (ValueError, OSError):
        return {}


def _describe_holder(record: dict) -> str:
    if not record.get("pid"):
        return "another process"
    return f"process {record['pid']} on {record.get('host', '?')} (since {record.get('since', '?')})"


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _release_lock(fd: int, path: Path) -> None:
    try:
        if _same_file(fd, path):
            path.unlink()
    finally:
        os.close(fd)
