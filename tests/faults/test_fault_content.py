"""Faults: changed pixels. A clip's key covers its frame files, so an output made from
other pixels is refused (naming the clip), ``--overwrite`` recomputes only the changed
clips, a resume never mixes shards of old and new pixels, and a later stage sees the
change; ``--verify-content`` tells a touched file from a changed one."""

from __future__ import annotations

import hashlib
import os

import cv2
import numpy as np

from fault_fixtures import ALIGN, assert_same_stage_files, frame_files, make_clips, one_error_line
from mertool.cli.main import cli
from mertool.samples import VERIFY_CONTENT_ENV, Sample, fingerprint, same_content
from mertool.stages import align as align_mod
from mertool.stages.stagefile import open_stage


def _repaint(root, clip: str) -> None:
    """New pixels for every frame of ``clip`` (a little darker: the face stays findable)."""
    for path in frame_files(root, clip):
        img = cv2.imread(str(path))
        cv2.imwrite(str(path), (img * 0.85).astype(np.uint8))


def _count_aligned(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = align_mod.align_case

    def counted(case, **kw):
        calls.append(case.sample_id)
        return real(case, **kw)

    monkeypatch.setattr(align_mod, "align_case", counted)
    return calls


def test_changed_pixels_are_refused_then_only_that_clip_is_recomputed(tmp_path, capsys, monkeypatch):
    samples = make_clips(tmp_path, n=3)
    out = tmp_path / "aligned.h5"
    assert cli(["align", str(samples), "-o", str(out), *ALIGN]) == 0
    before = open_stage(out).key
    _repaint(tmp_path, "c1")
    capsys.readouterr()
    assert cli(["align", str(samples), "-o", str(out), *ALIGN]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "the frames of 1 clip(s) changed since it was made (c1)" in line and "--overwrite" in line
    assert open_stage(out).key == before  # untouched
    calls = _count_aligned(monkeypatch)
    assert cli(["align", str(samples), "-o", str(out), *ALIGN, "--overwrite"]) == 0
    assert calls == ["c1"]  # the unchanged clips are never recomputed
    fresh = tmp_path / "fresh" / "aligned.h5"
    assert cli(["align", str(samples), "-o", str(fresh), *ALIGN]) == 0
    assert_same_stage_files(out, fresh)
    assert open_stage(out).key != before


def test_a_resume_never_mixes_shards_of_old_and_new_pixels(tmp_path, capsys, monkeypatch):
    samples = make_clips(tmp_path, n=3)
    out = tmp_path / "aligned.h5"
    real = align_mod.align_case

    def interrupted(case, **kw):
        if case.sample_id == "c2":
            raise KeyboardInterrupt
        return real(case, **kw)

    monkeypatch.setattr(align_mod, "align_case", interrupted)
    assert cli(["align", str(samples), "-o", str(out), *ALIGN]) == 130
    assert len(list((tmp_path / "aligned.h5.parts").glob("*.npz"))) == 2
    _repaint(tmp_path, "c0")  # c0's shard now holds the old pixels
    monkeypatch.setattr(align_mod, "align_case", real)
    calls = _count_aligned(monkeypatch)
    capsys.readouterr()
    assert cli(["align", str(samples), "-o", str(out), *ALIGN]) == 0
    assert sorted(calls) == ["c0", "c2"]
    assert "sample c0: its frames changed since its shard was made; computing it again" in capsys.readouterr().err
    fresh = tmp_path / "fresh" / "aligned.h5"
    assert cli(["align", str(samples), "-o", str(fresh), *ALIGN]) == 0
    assert_same_stage_files(out, fresh)


def test_verify_content_tells_a_touched_file_from_a_changed_one(tmp_path, capsys):
    samples = make_clips(tmp_path, n=2)
    out = tmp_path / "aligned.h5"
    assert cli(["--verify-content", "align", str(samples), "-o", str(out), *ALIGN]) == 0
    assert VERIFY_CONTENT_ENV not in os.environ
    frame = frame_files(tmp_path, "c0")[1]
    os.utime(frame, ns=(frame.stat().st_atime_ns, frame.stat().st_mtime_ns + 10**9))  # touched, same bytes
    capsys.readouterr()
    assert cli(["align", str(samples), "-o", str(out), *ALIGN]) == 1  # sizes and times: it looks changed
    assert "(c0)" in one_error_line(capsys.readouterr().err)
    assert cli(["--verify-content", "align", str(samples), "-o", str(out), *ALIGN]) == 0
    assert "up to date" in capsys.readouterr().err  # the bytes are the same
    _repaint(tmp_path, "c1")
    assert cli(["--verify-content", "align", str(samples), "-o", str(out), *ALIGN]) == 1
    assert "(c1)" in one_error_line(capsys.readouterr().err)


def test_a_later_stage_sees_the_change(tmp_path, capsys):
    samples = make_clips(tmp_path, n=2)
    aligned, flow = tmp_path / "aligned.h5", tmp_path / "flow.h5"
    assert cli(["align", str(samples), "-o", str(aligned), *ALIGN]) == 0
    assert cli(["flow", str(aligned), "-o", str(flow), "--size", "32"]) == 0
    frame = frame_files(tmp_path, "c0")[0]
    os.utime(frame, ns=(frame.stat().st_atime_ns, frame.stat().st_mtime_ns + 10**9))
    assert cli(["align", str(samples), "-o", str(aligned), *ALIGN, "--overwrite"]) == 0
    assert cli(["flow", str(aligned), "-o", str(flow), "--size", "32"]) == 0  # same pixels: same key, up to date
    _repaint(tmp_path, "c0")
    assert cli(["align", str(samples), "-o", str(aligned), *ALIGN, "--overwrite"]) == 0
    capsys.readouterr()
    assert cli(["flow", str(aligned), "-o", str(flow), "--size", "32"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert f"input {aligned.resolve()} changed" in line and "--overwrite" in line


def test_fingerprint_is_names_sizes_and_times_or_the_bytes(tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    for i in (1, 2):
        (folder / f"f{i}.png").write_bytes(bytes([i]) * (10 + i))
    sample = Sample("x", "s", 1, 2, 2, "l", frames=str(folder))
    lines = "".join(f"{p.name}\0{p.stat().st_size}\0{p.stat().st_mtime_ns}\n" for p in sorted(folder.iterdir()))
    by_hand = hashlib.sha256(lines.encode()).hexdigest()[:16]
    assert fingerprint(sample, content=False) == by_hand
    body = b"".join(p.name.encode() + b"\0" + p.read_bytes() for p in sorted(folder.iterdir()))
    assert fingerprint(sample, content=True) == f"{by_hand}/{hashlib.sha256(body).hexdigest()[:32]}"
    cheap, full = fingerprint(sample, content=False), fingerprint(sample, content=True)
    f1 = folder / "f1.png"
    os.utime(f1, ns=(f1.stat().st_atime_ns, f1.stat().st_mtime_ns + 5))
    assert not same_content(cheap, fingerprint(sample, content=False))
    assert same_content(full, fingerprint(sample, content=True))  # the bytes decide when both have them
    f1.write_bytes(b"\2" * 11)  # same size, other bytes
    assert not same_content(full, fingerprint(sample, content=True))
    assert fingerprint(Sample("y", "s", 1, 2, 2, "l", frames=str(tmp_path / "gone"))) == ""
    assert same_content("", cheap) and same_content(cheap, "")  # unknown cannot be checked
