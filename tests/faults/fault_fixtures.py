"""Helpers of the fault-injection suite (no tests here): small real-face clips, a mertool
subprocess, a read-only folder and a small disk where the machine allows them.

Clips are the astronaut face (scikit-image, public domain) moving by a fraction of a
pixel per frame, written as PNG or JPEG in the generic manifest format; ``mertool index``
turns them into samples.csv as a user would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import astronaut_face, shifted, write_clip, write_manifest
from mertool.cli.main import cli
from mertool.stages.stagefile import open_stage

ROOT = Path(__file__).resolve().parents[2]
ALIGN = ["--size", "64"]  # small crops: the suite is about files, not pixels


def make_clips(root: Path, n: int = 3, frames: int = 6, pattern: str = "img{:03d}.png") -> Path:
    """``n`` clips of ``frames`` frames under ``root``, indexed; returns samples.csv."""
    face = astronaut_face(160)
    rows = []
    for i in range(n):
        clip = [shifted(face, 0.4 * k + 0.1 * i, -0.3 * k) for k in range(frames)]
        write_clip(root / f"c{i}", clip, pattern=pattern)
        rows.append({"sample_id": f"c{i}", "subject": f"s{i % 2}", "frames": f"c{i}", "onset": 1, "apex": 3,
                     "offset": frames, "label": "happy" if i % 2 else "sad"})
    manifest = write_manifest(root / "manifest.csv", rows)
    samples = root / "samples.csv"
    assert cli(["index", "--dataset", "manifest", "--sheet", str(manifest), "-o", str(samples)]) == 0
    return samples


def frame_files(root: Path, clip: str) -> list[Path]:
    return sorted((root / clip).iterdir())


def assert_same_stage_files(a: Path, b: Path) -> None:
    """Two stage files hold the same samples, meta and arrays, array by array."""
    fa, fb = open_stage(a), open_stage(b)
    assert fa.sample_ids == fb.sample_ids and fa.meta == fb.meta and fa.failed == fb.failed
    assert fa.key == fb.key and fa.checksums == fb.checksums
    for sid in fa.sample_ids:
        xa, xb = fa.sample(sid), fb.sample(sid)
        assert sorted(xa) == sorted(xb), sid
        for name in xa:
            assert xa[name].dtype == xb[name].dtype and np.array_equal(xa[name], xb[name]), (sid, name)


def mertool_process(args: list[str], **kw) -> subprocess.Popen:
    """``python -m mertool ARGS`` in a subprocess (stdout and stderr piped, text)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "mertool", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def wait_for(condition, timeout: float = 60.0, step: float = 0.005) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(step)
    return False


def children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def kill(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
    proc.communicate(timeout=30)


@contextlib.contextmanager
def read_only_folder(path: Path) -> Iterator[Path]:
    """``path`` as a folder nobody may write into: by its mode for a normal user, by a
    read-only mount (or the immutable attribute) for root; skips where neither works."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    for make, undo in ((["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)], ["umount", str(path)]),
                       (["chattr", "+i", str(path)], ["chattr", "-i", str(path)])):
        if subprocess.run(make, capture_output=True).returncode == 0:
            try:
                yield path
            finally:
                subprocess.run(undo, capture_output=True)
            return
    pytest.skip("cannot make a read-only folder here (root without mount or chattr)")


@contextlib.contextmanager
def small_disk(path: Path, size_kb: int) -> Iterator[Path]:
    """A tmpfs of ``size_kb`` mounted at ``path`` (root on Linux); skips elsewhere."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (the patched-ENOSPC tests cover this)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def grow_disk(path: Path, size_kb: int) -> None:
    """Free space on a :func:`small_disk`: remount it larger, keeping its files."""
    subprocess.run(["mount", "-o", f"remount,size={size_kb}k", str(path)], check=True, capture_output=True)


def one_error_line(err: str) -> str:
    """The single ``error:`` line of stderr (asserting there is exactly one and no traceback)."""
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]
