"""Faults: bad input and a hostile file system give one ``error:`` line naming the file,
line or sample and what to do, with exit 1 for bad data, 2 for a wrong command and 130
only for Ctrl-C: nan/inf frame numbers, duplicate ids, read-only and missing output
folders, ``-o`` a folder, a full disk (shards, assembly, checkpoints), zero-byte shards
and ``.npy`` files, YAML values of the wrong type."""

from __future__ import annotations

import builtins
import errno
import io as pyio
import os
from pathlib import Path

import numpy as np
import pytest

from fault_fixtures import ALIGN, assert_same_stage_files, grow_disk, make_clips, one_error_line, read_only_folder, small_disk
from mertool.cli.main import cli
from mertool.io import atomic_savez, safe_name
from mertool.stages import align as align_mod
from mertool.stages.stagefile import StageWriter, open_stage

DISK_FULL = "free space and re-run: finished work is kept"


def _run(capsys, argv: list[str]) -> tuple[int, str]:
    capsys.readouterr()
    rc = cli(argv)
    return rc, capsys.readouterr().err


def _edit_csv(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400", "2.5"])
def test_frame_numbers_that_are_not_whole_numbers_in_samples_csv(tmp_path, capsys, value):
    samples = make_clips(tmp_path, n=2)
    lines = samples.read_text().splitlines(keepends=True)
    fields = lines[2].split(",")
    onset = lines[0].split(",").index("onset")
    fields[onset] = value
    lines[2] = ",".join(fields)
    samples.write_text("".join(lines))
    rc, err = _run(capsys, ["align", str(samples), "-o", str(tmp_path / "a.h5"), *ALIGN])
    assert rc == 1 and f"{samples}:3: onset {value!r} is not a whole frame number" in one_error_line(err)


def test_duplicate_sample_ids_are_refused_wherever_samples_csv_is_read(tmp_path, capsys):
    samples = make_clips(tmp_path, n=2)
    aligned = tmp_path / "aligned.h5"
    assert cli(["align", str(samples), "-o", str(aligned), *ALIGN]) == 0
    twice = tmp_path / "twice.csv"
    lines = samples.read_text().splitlines(keepends=True)
    twice.write_text("".join(lines + [lines[1]]))
    for argv in (
        ["align", str(twice), "-o", str(tmp_path / "b.h5"), *ALIGN],
        ["keyframes", str(twice), "--aligned", str(aligned), "-o", str(tmp_path / "k.csv")],
        ["flow", str(aligned), "-o", str(tmp_path / "f.h5"), "--size", "32", "--samples", str(twice)],
        ["dynimg", str(aligned), "-o", str(tmp_path / "d.h5"), "--size", "32", "--samples", str(twice)],
        ["pairs", str(aligned), "-o", str(tmp_path / "p.h5"), "--size", "32", "--samples", str(twice)],
    ):
        rc, err = _run(capsys, argv)
        assert rc == 1, argv
        assert f"{twice}: sample_id 'c0' is listed twice (lines 2, 4)" in one_error_line(err), argv
    assert sorted(p.name for p in tmp_path.glob("*.h5")) == ["aligned.h5"]


def test_read_only_output_folders(tmp_path, capsys):
    samples = make_clips(tmp_path, n=1)
    aligned = tmp_path / "aligned.h5"
    assert cli(["align", str(samples), "-o", str(aligned), *ALIGN]) == 0
    with read_only_folder(tmp_path / "ro") as ro:
        for argv, what in (
            (["index", "--dataset", "manifest", "--sheet", str(tmp_path / "manifest.csv"), "-o", str(ro / "s.csv")], "output folder"),
            (["keyframes", str(samples), "--method", "midpoint", "-o", str(ro / "s.csv")], "output folder"),
            (["align", str(samples), "-o", str(tmp_path / "b.h5"), *ALIGN, "--preview", str(ro)], "preview folder"),
            (["pairs", str(aligned), "-o", str(tmp_path / "p.h5"), "--size", "32", "--preview", str(ro / "sub")], "preview folder"),
            (["align", str(samples), "-o", str(ro / "a.h5"), *ALIGN], "cannot write the output folder"),
        ):
            rc, err = _run(capsys, argv)
            line = one_error_line(err)
            assert rc == 1 and str(ro) in line and what in line, (argv, line)
        assert not list(ro.iterdir())
    assert not (tmp_path / "b.h5").exists() and not (tmp_path / "p.h5").exists()  # refused before any work


def test_missing_output_folders_are_made_or_named(tmp_path, capsys):
    samples = make_clips(tmp_path, n=1)
    deep = tmp_path / "new" / "deeper" / "samples.csv"
    assert cli(["index", "--dataset", "manifest", "--sheet", str(tmp_path / "manifest.csv"), "-o", str(deep)]) == 0
    assert deep.is_file()
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    for argv in (
        ["index", "--dataset", "manifest", "--sheet", str(tmp_path / "manifest.csv"), "-o", str(blocker / "s.csv")],
        ["keyframes", str(samples), "--method", "midpoint", "-o", str(blocker / "s.csv")],
        ["align", str(samples), "-o", str(tmp_path / "a.h5"), *ALIGN, "--preview", str(blocker / "p")],
        ["align", str(samples), "-o", str(tmp_path / "a.h5"), *ALIGN, "--preview", str(blocker)],
    ):
        rc, err = _run(capsys, argv)
        assert rc == 1 and str(blocker) in one_error_line(err), argv


def test_an_output_that_is_a_folder(tmp_path, capsys):
    samples = make_clips(tmp_path, n=1)
    folder = tmp_path / "work"
    folder.mkdir()
    rc, err = _run(capsys, ["align", str(samples), "-o", str(folder), *ALIGN])
    assert rc == 1 and f"{folder}: is a folder; give the .h5 file to write (e.g. {folder / 'aligned.h5'})" in one_error_line(err)
    rc, err = _run(capsys, ["index", "--dataset", "manifest", "--sheet", str(tmp_path / "manifest.csv"), "-o", str(folder)])
    assert rc == 1 and f"{folder}: is a folder; give a file name" in one_error_line(err)


def _fail_writes_after(monkeypatch, allowed: int, match: str = "") -> None:
    """Files whose name contains ``match`` fail with ENOSPC once ``allowed`` of them were written."""
    real_open = builtins.open
    count = {"n": 0}

    class Full(pyio.BufferedWriter):
        def write(self, data):  # type: ignore[override]
            raise OSError(errno.ENOSPC, "No space left on device")

    def open_(file, mode="r", *args, **kwargs):
        if "x" in mode and match in str(file):
            count["n"] += 1
            if count["n"] > allowed:
                return Full(pyio.FileIO(file, mode))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("mertool.io.open", open_, raising=False)


def test_disk_full_while_writing_shards_keeps_finished_samples(tmp_path, capsys, monkeypatch):
    samples = make_clips(tmp_path, n=3)
    out = tmp_path / "aligned.h5"
    _fail_writes_after(monkeypatch, allowed=1, match=".npz")  # the shard of the second sample fails
    rc, err = _run(capsys, ["align", str(samples), "-o", str(out), *ALIGN])
    line = one_error_line(err)
    assert rc == 1 and line.startswith("error: disk full writing ") and ".npz" in line and DISK_FULL in line
    assert len(list((tmp_path / "aligned.h5.parts").glob("*.npz"))) == 1 and not list(tmp_path.rglob("*.tmp"))
    monkeypatch.undo()
    assert cli(["align", str(samples), "-o", str(out), *ALIGN]) == 0
    fresh = tmp_path / "fresh" / "aligned.h5"
    assert cli(["align", str(samples), "-o", str(fresh), *ALIGN]) == 0
    assert_same_stage_files(out, fresh)


def test_disk_full_while_assembling(tmp_path, capsys, monkeypatch):
    samples = make_clips(tmp_path, n=2)
    out = tmp_path / "aligned.h5"

    def full(self, tmp, *args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))

    monkeypatch.setattr(StageWriter, "_assemble", full)
    rc, err = _run(capsys, ["align", str(samples), "-o", str(out), *ALIGN])
    assert rc == 1 and f"disk full writing {out}; {DISK_FULL}" in one_error_line(err)
    assert not out.exists() and len(list((tmp_path / "aligned.h5.parts").glob("*.npz"))) == 2
    monkeypatch.undo()
    calls = []
    real = align_mod.align_case
    monkeypatch.setattr(align_mod, "align_case", lambda case, **kw: calls.append(case) or real(case, **kw))
    assert cli(["align", str(samples), "-o", str(out), *ALIGN]) == 0
    assert calls == [] and len(open_stage(out)) == 2  # assembled from the kept shards


def test_a_real_full_disk(tmp_path, capsys):
    """On a small tmpfs (root on Linux): the stage stops with one line, and after space is
    freed a re-run finishes from the kept shards, equal to a run that never failed."""
    samples = make_clips(tmp_path, n=4)
    reference = tmp_path / "ref" / "aligned.h5"
    assert cli(["align", str(samples), "-o", str(reference), *ALIGN]) == 0
    shard = os.path.getsize(next(iter(reference.parent.glob("*.h5")))) // 4
    with small_disk(tmp_path / "disk", size_kb=max(4, int(shard * 2.5) // 1024)) as disk:
        out = disk / "aligned.h5"
        rc, err = _run(capsys, ["align", str(samples), "-o", str(out), *ALIGN])
        assert rc == 1 and "disk full writing" in one_error_line(err) and DISK_FULL in err
        assert not out.exists() and not list(disk.rglob("*.tmp"))
        grow_disk(disk, 64 * 1024)
        assert cli(["align", str(samples), "-o", str(out), *ALIGN]) == 0
        assert_same_stage_files(out, reference)


def test_disk_full_while_saving_a_checkpoint(tmp_path, capsys, monkeypatch):
    from train_fixtures import ensure_tiny, synthetic_flow, write_flow_h5

    ensure_tiny()
    x, labels, subjects = synthetic_flow(n_subjects=2, per_subject=4)
    flow = write_flow_h5(tmp_path / "flow.h5", x, labels, subjects)
    _fail_writes_after(monkeypatch, allowed=0, match=".pt")
    rc, err = _run(capsys, ["train", str(flow), "--model", "tinyflow", "--epochs", "2", "-q", "--device", "cpu", "-o", str(tmp_path / "run")])
    line = one_error_line(err)
    assert rc == 1 and line.startswith("error: disk full writing ") and ".pt;" in line and DISK_FULL in line


def _interrupted_align(tmp_path, monkeypatch, stop_at: str) -> Path:
    """Align until ``stop_at`` (as if killed there); returns samples.csv."""
    samples = make_clips(tmp_path, n=3)
    real = align_mod.align_case

    def stop(case, **kw):
        if case.sample_id == stop_at:
            raise KeyboardInterrupt
        return real(case, **kw)

    monkeypatch.setattr(align_mod, "align_case", stop)
    assert cli(["align", str(samples), "-o", str(tmp_path / "aligned.h5"), *ALIGN]) == 130
    monkeypatch.undo()
    return samples


def test_zero_byte_and_cut_short_shards_are_computed_again(tmp_path, capsys, monkeypatch):
    samples = _interrupted_align(tmp_path, monkeypatch, stop_at="c2")
    parts = tmp_path / "aligned.h5.parts"
    c0, c1 = (parts / (safe_name(s, unique=True) + ".npz") for s in ("c0", "c1"))
    c0.write_bytes(b"")  # zero bytes, as a full disk or a crashed copy leaves it
    c1.write_bytes(c1.read_bytes()[:100])
    out = tmp_path / "aligned.h5"
    rc, err = _run(capsys, ["align", str(samples), "-o", str(out), *ALIGN])
    assert rc == 0 and "warning: sample c0: its shard" in err and "is unreadable" in err and "sample c1: its shard" in err
    fresh = tmp_path / "fresh" / "aligned.h5"
    assert cli(["align", str(samples), "-o", str(fresh), *ALIGN]) == 0
    assert_same_stage_files(out, fresh)


def test_a_damaged_shard_is_caught_by_its_checksum(tmp_path, capsys, monkeypatch):
    samples = _interrupted_align(tmp_path, monkeypatch, stop_at="c2")
    shard = tmp_path / "aligned.h5.parts" / (safe_name("c1", unique=True) + ".npz")
    with np.load(shard) as npz:
        payload = {k: npz[k] for k in npz.files}
    payload["frames"] = payload["frames"].copy()
    payload["frames"][0, 0, 0, 0] ^= 1  # one bit, a valid zip still
    atomic_savez(shard, payload)
    out = tmp_path / "aligned.h5"
    rc, err = _run(capsys, ["align", str(samples), "-o", str(out), *ALIGN])
    assert rc == 1 and "sample c1: its shard is damaged (checksum mismatch); removed it, re-run" in one_error_line(err)
    assert not out.exists()
    assert cli(["align", str(samples), "-o", str(out), *ALIGN]) == 0 and open_stage(out).verify() == []


def test_zero_byte_npy_is_a_failed_sample_not_an_abort(tmp_path, capsys):
    src = tmp_path / "inputs"
    src.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        np.save(src / f"s{k}.npy", rng.normal(size=(3, 8, 8)).astype(np.float32))
    (src / "s1.npy").write_bytes(b"")
    labels = tmp_path / "labels.csv"
    labels.write_text("sample,subject,label\n" + "".join(f"s{k},p{k},x\n" for k in range(3)))
    rc, err = _run(capsys, ["import", str(src), "--labels", str(labels), "-o", str(tmp_path / "f.h5")])
    assert rc == 0 and "warning: sample s1:" in err and "s1.npy" in err and "aborted" not in err
    assert open_stage(tmp_path / "f.h5").sample_ids == ["s0", "s2"]
    for k in (0, 2):
        (src / f"s{k}.npy").write_bytes(b"")
    rc, err = _run(capsys, ["import", str(src), "--labels", str(labels), "-o", str(tmp_path / "g.h5")])
    assert rc == 1 and "no sample could be processed" in one_error_line(err)


def test_yaml_values_are_coerced_where_safe_else_named(tmp_path, capsys):
    samples = make_clips(tmp_path, n=1)
    cfg = tmp_path / "align.yaml"
    cfg.write_text("size: '64'\nmargin: '0.2'\n")  # quoted numbers: safe to read as numbers
    assert cli(["align", str(samples), "-o", str(tmp_path / "a.h5"), "--config", str(cfg)]) == 0
    assert open_stage(tmp_path / "a.h5").params["size"] == 64 and open_stage(tmp_path / "a.h5").params["margin"] == 0.2
    for text, message in (
        ("size: abc\n", "option size must be int, got 'abc'"),
        ("size: 64.5\n", "option size must be int, got 64.5"),
        ("margin: [1, 2]\n", "option margin must be float, got [1, 2]"),
        ("detector: true\n", "option detector must be str, got True"),
    ):
        cfg.write_text(text)
        rc, err = _run(capsys, ["align", str(samples), "-o", str(tmp_path / "b.h5"), "--config", str(cfg)])
        assert rc == 2 and f"{cfg}: {message}" in one_error_line(err), text


def test_exit_codes(tmp_path, capsys, monkeypatch):
    samples = make_clips(tmp_path, n=1)
    out = str(tmp_path / "a.h5")
    assert _run(capsys, ["align", str(samples), "-o", out, "--size", "abc"])[0] == 2  # typer's usage error
    assert _run(capsys, ["align", str(samples), "-o", out, "--detector", "magic"])[0] == 2  # a bad option value
    assert _run(capsys, ["align", str(tmp_path / "none.csv"), "-o", out])[0] == 1  # bad data

    def interrupt(case, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(align_mod, "align_case", interrupt)
    rc, err = _run(capsys, ["align", str(samples), "-o", out, *ALIGN])
    assert rc == 130 and "interrupted; re-run the same command to resume" in err

    def cut_short(*args, **kwargs):
        raise EOFError("No data left in file")

    monkeypatch.setattr("mertool.cli.info.open_stage", cut_short)
    rc, err = _run(capsys, ["info", out])
    assert rc == 1 and "ends early" in one_error_line(err) and "aborted" not in err
