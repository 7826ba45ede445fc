"""Stage files: provenance, resume after kill -9, refusing stale outputs, bad files."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from conftest import astronaut_face, run_and_kill, shifted, write_clip, write_manifest
from mertool.stages.stagefile import StageWriter, file_key, open_stage
from mertool.cli.main import cli
from mertool.config import config_hash
from mertool.errors import MertoolError


def test_config_hash_is_order_independent_and_canonical():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1.0})
    assert config_hash({"a": 0.1}) != config_hash({"a": 0.1000001})
    assert config_hash({"x": {"p": 1, "q": 2}}) == config_hash({"x": {"q": 2, "p": 1}})


def _write(tmp_path, params, ids=("a", "b", "c"), **kw):
    w = StageWriter(tmp_path / "x.h5", "toy", params, **kw)
    for i, sid in enumerate(w.pending(list(ids))):
        w.add(sid, {"v": np.full((2, 2), ord(sid[0]), np.float32)}, {"subject": f"s{i}", "label": "L", "onset": i})
    return w.finish(list(ids), stacked=True)


def test_roundtrip_provenance_and_contiguous_read(tmp_path):
    path = _write(tmp_path, {"size": 2})
    sf = open_stage(path, expect="toy")
    assert sf.sample_ids == ["a", "b", "c"]
    assert sf.array("v").shape == (3, 2, 2) and sf.array("v")[1, 0, 0] == ord("b")
    assert sf.meta["onset"] == [0, 1, 2] and sf.meta["subject"] == ["s0", "s1", "s2"]
    assert sf.params == {"size": 2} and sf.attrs["n_samples"] == 3 and sf.attrs["mertool_version"]
    assert not (tmp_path / "x.h5.parts").exists()


def test_same_params_reused_changed_params_refused(tmp_path):
    _write(tmp_path, {"size": 2})
    again = StageWriter(tmp_path / "x.h5", "toy", {"size": 2})
    assert again.complete and again.pending(["a"]) == []
    with pytest.raises(MertoolError, match="--overwrite"):
        StageWriter(tmp_path / "x.h5", "toy", {"size": 3})
    _write(tmp_path, {"size": 3}, overwrite=True)
    assert open_stage(tmp_path / "x.h5").params == {"size": 3}


def test_changed_upstream_refused(tmp_path):
    up = tmp_path / "up.csv"
    up.write_text("a\n")
    _write(tmp_path, {"size": 2}, upstream=[up])
    up.write_text("b\n")
    with pytest.raises(MertoolError, match="different parameters or inputs"):
        StageWriter(tmp_path / "x.h5", "toy", {"size": 2}, upstream=[up])


def test_unfinished_shards_from_other_params_refused(tmp_path):
    w = StageWriter(tmp_path / "x.h5", "toy", {"size": 2})
    w.add("a", {"v": np.zeros(2)}, {})
    with pytest.raises(MertoolError, match="unfinished work"):
        StageWriter(tmp_path / "x.h5", "toy", {"size": 5})
    resumed = StageWriter(tmp_path / "x.h5", "toy", {"size": 2})
    assert resumed.pending(["a", "b"]) == ["b"]


def test_foreign_and_corrupt_files(tmp_path):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as h5:
        h5["x"] = np.zeros(3)
    with pytest.raises(MertoolError, match="not a mertool stage file"):
        open_stage(foreign)
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\ngarbage" * 10)
    with pytest.raises(MertoolError, match="not a readable HDF5"):
        open_stage(corrupt)
    _write(tmp_path, {"size": 2})
    with pytest.raises(MertoolError, match="expected 'aligned'"):
        open_stage(tmp_path / "x.h5", expect="aligned")


def test_cli_rejects_corrupt_input_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"nope")
    assert cli(["info", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.h5" in err and "Traceback" not in err


def test_unwritable_output_folder_as_file(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(MertoolError, match="cannot write the output folder"):
        StageWriter(blocker / "sub" / "x.h5", "toy", {})


def test_info_shows_provenance(tmp_path, capsys):
    up = tmp_path / "up.csv"
    up.write_text("a\n")
    path = _write(tmp_path, {"size": 2}, upstream=[up])
    assert cli(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "stage:     toy" in out and "samples:   3" in out and "up.csv" in out and file_key(up) in out
    assert json.dumps({"size": 2}) in out


def test_checksum_is_sha256_of_name_dtype_shape_and_bytes(tmp_path):
    """The stored checksum, against hashlib by hand: arrays sorted by name, each as
    name NUL dtype NUL shape NUL, then its C-order bytes; 32 hex digits kept."""
    import hashlib

    path = _write(tmp_path, {"size": 2})
    v = np.full((2, 2), ord("b"), np.float32)
    by_hand = hashlib.sha256(b"v\0<f4\0(2, 2)\0" + v.tobytes()).hexdigest()[:32]
    sf = open_stage(path)
    assert sf.checksums[1] == by_hand and len(set(sf.checksums)) == 3
    assert sf.attrs["checksum"].startswith("sha256") and sf.verify() == []


def test_key_is_the_plan_and_the_content(tmp_path):
    """``plan_key`` is what was asked (stage, params, inputs); ``key`` also covers every
    sample's checksum, so equal keys mean equal content."""
    a = open_stage(_write(tmp_path / "a", {"size": 2}))
    b = open_stage(_write(tmp_path / "b", {"size": 2}))
    assert a.plan_key == b.plan_key == config_hash({"stage": "toy", "params": {"size": 2}, "upstream": []})
    assert a.key == b.key != a.plan_key
    w = StageWriter(tmp_path / "c" / "x.h5", "toy", {"size": 2})
    for sid in ("a", "b", "c"):
        w.add(sid, {"v": np.full((2, 2), 7 if sid == "c" else ord(sid[0]), np.float32)}, {"subject": "s", "label": "L", "onset": 0})
    c = open_stage(w.finish(["a", "b", "c"], stacked=True))
    assert c.plan_key == a.plan_key and c.key != a.key


def test_files_of_older_versions_stay_valid(tmp_path):
    """A file without plan_key / checksums (made before them) is reused as it is: its key was the plan."""
    path = _write(tmp_path, {"size": 2})
    plan = open_stage(path).plan_key
    with h5py.File(path, "r+") as h5:
        del h5.attrs["plan_key"], h5["checksums"]
        h5.attrs["key"] = plan
    assert StageWriter(path, "toy", {"size": 2}).complete
    assert open_stage(path).key == plan and "older mertool" in open_stage(path).verify()[0]


def _many_clips(tmp_path, n=24):
    face = astronaut_face(220)
    rows = []
    for i in range(n):
        frames = [shifted(face, 0.3 * k + 0.05 * i, 0.2 * k) for k in range(8)]
        write_clip(tmp_path / f"c{i:02d}", frames)
        rows.append({"sample_id": f"c{i:02d}", "subject": f"s{i % 4}", "frames": f"c{i:02d}", "onset": 1, "apex": 4, "offset": 8, "label": "x"})
    manifest = write_manifest(tmp_path / "m.csv", rows)
    samples = tmp_path / "samples.csv"
    assert cli(["index", "--dataset", "manifest", "--sheet", str(manifest), "-o", str(samples)]) == 0
    return samples


def test_align_resumes_after_kill(tmp_path):
    samples = _many_clips(tmp_path)
    killed_out = tmp_path / "killed" / "aligned.h5"
    killed = run_and_kill(["align", str(samples), "-o", str(killed_out)], killed_out.with_name("aligned.h5.parts"), min_shards=3)
    assert killed, "the stage finished before it could be killed; make the fixture bigger"
    assert not killed_out.exists()  # nothing half-written at the final path
    assert cli(["align", str(samples), "-o", str(killed_out)]) == 0
    clean_out = tmp_path / "clean" / "aligned.h5"
    assert cli(["align", str(samples), "-o", str(clean_out)]) == 0
    a, b = open_stage(killed_out), open_stage(clean_out)
    assert a.sample_ids == b.sample_ids and len(a) == 24 and a.key == b.key
    for sid in a.sample_ids:
        for name, arr in a.sample(sid).items():
            assert np.array_equal(arr, b.sample(sid)[name]), (sid, name)


def test_a_changed_input_is_named_and_unchanged_parameters_are_not_blamed(tmp_path):
    """Editing samples.csv in place: the refusal names that file, and shows no config hashes."""
    csv = tmp_path / "samples.csv"
    csv.write_text("sample_id,label\na,x\n")
    w = StageWriter(tmp_path / "out.h5", "aligned", {"size": 8}, upstream=[csv])
    w.add("a", {"x": np.zeros(2)}, {"label": "x"})
    w.finish(["a"], stacked=True)
    csv.write_text("sample_id,label\na,y\n")
    with pytest.raises(MertoolError, match=r"input .*samples\.csv changed") as err:
        StageWriter(tmp_path / "out.h5", "aligned", {"size": 8}, upstream=[csv])
    assert "config" not in str(err.value)
    csv.write_text("sample_id,label\na,x\n")  # the input as it was: now only the parameters differ
    with pytest.raises(MertoolError, match=r"\(parameters changed; stage 'aligned'; config "):
        StageWriter(tmp_path / "out.h5", "aligned", {"size": 16}, upstream=[csv])
