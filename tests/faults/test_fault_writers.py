"""Faults: one writer per output. A lock names its holder or is waited for, a dead
holder's lock is taken over, two real runs on one output give one valid file or a clean
refusal, temporaries never collide, and what is published is verified (also later, by
``mertool info --verify``)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from fault_fixtures import ALIGN, assert_same_stage_files, make_clips, mertool_process, one_error_line
from mertool.cli.main import cli
from mertool.errors import MertoolError
from mertool.io import atomic_write_text
from mertool.lock import WAIT_ENV
from mertool.stages.stagefile import StageWriter, open_stage


def _toy(out: Path, ids=("a", "b", "c"), **kw) -> Path:
    w = StageWriter(out, "toy", {"n": len(ids)}, **kw)
    for i, sid in enumerate(w.pending(list(ids))):
        w.add(sid, {"v": np.full((3, 2), i, np.float32)}, {"subject": "s", "label": "x"})
    return w.finish(list(ids), stacked=True)


class _Holder:
    """Another mertool holding ``lock``: the file with its record, flock'ed."""

    def __init__(self, lock: Path, record: dict) -> None:
        self.lock = lock
        self.fd: int | None = os.open(lock, os.O_RDWR | os.O_CREAT)
        os.write(self.fd, json.dumps(record).encode())
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def finish(self) -> None:
        """As mertool finishes: remove the lock file, then unlock."""
        if self.fd is not None:
            self.lock.unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = None


@contextlib.contextmanager
def _held(lock: Path, record: dict):
    holder = _Holder(lock, record)
    try:
        yield holder
    finally:
        holder.finish()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_second_writer_stops_at_once_naming_the_holder(tmp_path, capsys):
    samples = make_clips(tmp_path, n=1)
    out = tmp_path / "aligned.h5"
    holder = {"pid": 4242, "host": "labserver", "since": "2024-05-01 10:00:00"}
    with _held(tmp_path / "aligned.h5.lock", holder):
        with pytest.raises(MertoolError, match="being written by process 4242 on labserver"):
            StageWriter(out, "toy", {})
        capsys.readouterr()
        assert cli(["align", str(samples), "-o", str(out), *ALIGN]) == 1
        line = one_error_line(capsys.readouterr().err)
    assert "process 4242 on labserver (since 2024-05-01 10:00:00)" in line and "--wait" in line
    assert not out.exists() and not (tmp_path / "aligned.h5.parts").exists()


def test_wait_queues_behind_the_holder(tmp_path, capsys):
    samples = make_clips(tmp_path, n=1)
    out = tmp_path / "aligned.h5"
    lock = tmp_path / "aligned.h5.lock"
    with _held(lock, {"pid": 4242, "host": socket.gethostname(), "since": "now"}) as holder:
        thread = threading.Thread(target=lambda: (time.sleep(0.5), holder.finish()))
        start = time.time()
        thread.start()
        assert cli(["--wait", "align", str(samples), "-o", str(out), *ALIGN]) == 0
        thread.join()
    assert time.time() - start >= 0.5
    assert "waiting for process 4242" in capsys.readouterr().err
    assert open_stage(out).verify() == [] and not lock.exists()
    assert WAIT_ENV not in os.environ  # the global option does not leak past the command


def test_the_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path, capsys):
    samples = make_clips(tmp_path, n=2)
    out = tmp_path / "aligned.h5"
    pid = _dead_pid()
    (tmp_path / "aligned.h5.lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "since": "then"}))
    assert cli(["align", str(samples), "-o", str(out), *ALIGN]) == 0
    err = capsys.readouterr().err
    assert f"warning: {out}: taking over the lock of process {pid}" in err and "ended without releasing it" in err
    assert len(open_stage(out)) == 2 and not (tmp_path / "aligned.h5.lock").exists()


def test_two_concurrent_runs_give_one_valid_file_or_a_clean_refusal(tmp_path):
    samples = make_clips(tmp_path, n=3)
    reference = tmp_path / "ref" / "aligned.h5"
    assert cli(["align", str(samples), "-o", str(reference), *ALIGN]) == 0
    out = tmp_path / "race" / "aligned.h5"
    procs = [mertool_process(["align", str(samples), "-o", str(out), *ALIGN]) for _ in range(2)]
    results = [(p.communicate(timeout=300)[1], p.returncode) for p in procs]
    assert sorted(rc for _, rc in results) in ([0, 0], [0, 1]), results
    for err, rc in results:
        if rc == 1:
            assert "being written by" in one_error_line(err)
    assert_same_stage_files(out, reference)
    assert open_stage(out).verify() == []
    assert sorted(p.name for p in out.parent.iterdir()) == ["aligned.h5"]  # no temporaries, lock or shards left


@pytest.mark.slow
def test_many_racing_runs_never_publish_a_corrupt_file(tmp_path):
    samples = make_clips(tmp_path, n=8, frames=8)
    reference = tmp_path / "ref" / "aligned.h5"
    assert cli(["align", str(samples), "-o", str(reference), *ALIGN]) == 0
    rng = np.random.default_rng(16)
    for attempt in range(4):
        out = tmp_path / f"race{attempt}" / "aligned.h5"
        procs = []
        for delay in rng.uniform(0, 1.5, size=3):
            procs.append(mertool_process(["align", str(samples), "-o", str(out), *ALIGN]))
            time.sleep(delay)
        results = [(p.communicate(timeout=600)[1], p.returncode) for p in procs]
        assert all(rc in (0, 1) for _, rc in results) and any(rc == 0 for _, rc in results), results
        assert all("being written by" in one_error_line(err) for err, rc in results if rc == 1)
        assert_same_stage_files(out, reference)


def test_temporary_names_never_collide_with_another_writers_file(tmp_path):
    target = tmp_path / "samples.csv"
    theirs = tmp_path / "samples.csv.tmp"  # the one fixed temporary name of older versions
    theirs.write_text("another process's half-written file")
    atomic_write_text(target, "mine\n")
    assert target.read_text() == "mine\n" and theirs.read_text() == "another process's half-written file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples.csv", "samples.csv.tmp"]


def test_the_assembled_file_is_verified_before_it_is_published(tmp_path, monkeypatch):
    real = StageWriter._assemble

    def assemble_wrongly(self, tmp, *args):
        checksums = real(self, tmp, *args)
        with h5py.File(tmp, "r+") as h5:  # one value lost between shard and file
            h5["data/v"][1, 0, 0] += 1
        return checksums

    monkeypatch.setattr(StageWriter, "_assemble", assemble_wrongly)
    with pytest.raises(MertoolError, match=r"does not match its shards \(sample b: data differ"):
        _toy(tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists() and len(list((tmp_path / "x.h5.parts").glob("*.npz"))) == 3
    assert not list(tmp_path.glob("x.h5.*tmp"))
    monkeypatch.setattr(StageWriter, "_assemble", real)
    assert open_stage(_toy(tmp_path / "x.h5")).verify() == []  # the shards were kept


def test_info_verify_rechecks_a_published_file(tmp_path, capsys):
    path = _toy(tmp_path / "x.h5")
    assert cli(["info", str(path), "--verify"]) == 0
    assert "verified:  every sample matches its checksum (3 samples)" in capsys.readouterr().out
    with h5py.File(path, "r+") as h5:
        h5["data/v"][2, 1, 1] = 99.0  # bit rot, a bad copy, a hand edit
    assert cli(["info", str(path), "--verify"]) == 1
    captured = capsys.readouterr()
    assert "sample c: data differ from its checksum" in captured.out
    assert f"{path}: verification failed (1 problem(s)" in one_error_line(captured.err)
