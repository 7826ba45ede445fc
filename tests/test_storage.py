"""Storage of stage files: chunking, compression (a storage choice, not content), compressed
shards, re-packing, and assembly one shard at a time."""

from __future__ import annotations

import os
import tracemalloc
import zipfile

import h5py
import numpy as np
import pytest

from conftest import astronaut_face, shifted
from mertool.cli.main import cli
from mertool.errors import UsageError
from mertool.stages.stagefile import StageWriter, chunk_shape, open_stage, parse_compression

COMPRESSIONS = ("none", "lzf", "gzip:1", "gzip:4")


def _clip(n: int, seed: int) -> np.ndarray:
    """n frames (T x 96 x 96 x 3 uint8) of a real face moving by a sub-pixel step per frame."""
    face = astronaut_face(96)
    rng = np.random.default_rng(seed)
    dx, dy = rng.uniform(-0.8, 0.8, 2)
    return np.stack([shifted(face, dx * k, dy * k) for k in range(n)])


def _arrays(sid: str) -> dict[str, np.ndarray]:
    seed = sum(map(ord, sid))
    frames = _clip(3 + seed % 4, seed)  # clips of different lengths
    return {"frames": frames, "numbers": np.arange(len(frames), dtype=np.int64), "landmarks": np.full((68, 2), seed / 7)}


def _write(path, compression, ids=("a", "b", "c"), stacked=False, fail=()):
    w = StageWriter(path, "aligned", {"size": 96}, compression=compression)
    for sid in w.pending(list(ids)):
        if sid in fail:
            w.fail(sid, "no face")
        else:
            arrays = _arrays(sid)
            if stacked:
                arrays["frames"] = arrays["frames"][:3]
                arrays.pop("numbers")
            w.add(sid, arrays, {"subject": "s1", "label": "L"})
    return w.finish(list(ids), stacked=stacked)


def test_parse_compression_canonical_forms_and_refusal():
    assert [parse_compression(t) for t in ("lzf", " LZF", "none", "gzip", "gzip:1", "GZIP:9", "gzip:07")] == [
        "lzf", "lzf", "none", "gzip:4", "gzip:1", "gzip:9", "gzip:7"
    ]
    for bad in ("zstd", "gzip:0", "gzip:10", "gzip:x", "lzf:2", ""):
        with pytest.raises(UsageError, match="choose lzf, gzip"):
            parse_compression(bad)


def test_chunk_shape_hand_worked():
    # a clip of colour frames: one frame per chunk; a mask or small array: one chunk
    assert chunk_shape((30, 224, 224, 3), 1, stacked=False) == (1, 224, 224, 3)
    assert chunk_shape((224, 224), 1, stacked=False) == (224, 224)
    assert chunk_shape((68, 2), 8, stacked=False) == (68, 2)
    # stacked: one sample per chunk (3*112*112*4 bytes = 147 kB >= 64 KiB) ...
    assert chunk_shape((442, 3, 112, 112), 4, stacked=True) == (1, 3, 112, 112)
    # ... clips of frames stacked: one frame of one sample
    assert chunk_shape((10, 2, 64, 64, 3), 1, stacked=True) == (1, 1, 64, 64, 3)
    # ... small rows share a chunk: 65536 // (68*2*8 = 1088 bytes) = 60 rows, fewer if fewer samples
    assert chunk_shape((1000, 68, 2), 8, stacked=True) == (60, 68, 2)
    assert chunk_shape((7, 68, 2), 8, stacked=True) == (7, 68, 2)
    assert chunk_shape((7,), 8, stacked=True) == (7,)
    assert chunk_shape((), 8, stacked=False) is None and chunk_shape((0, 5), 4, stacked=True) is None


@pytest.mark.parametrize("stacked", [False, True])
def test_round_trip_identical_and_key_independent_of_compression(tmp_path, stacked):
    files = {c: open_stage(_write(tmp_path / f"{c.replace(':', '')}.h5", c, stacked=stacked)) for c in COMPRESSIONS}
    ref = files["none"]
    for comp, sf in files.items():
        assert sf.compression == comp and sf.attrs["compression"] == comp
        assert sf.key == ref.key and sf.checksums == ref.checksums and not sf.verify()
        for sid in sf.sample_ids:
            want = _arrays(sid)
            got = sf.sample(sid)
            n = len(got["frames"])
            assert np.array_equal(got["frames"], want["frames"][:n]) and np.array_equal(got["landmarks"], want["landmarks"])
            assert np.array_equal(np.concatenate(list(sf.iter_frames(sid, chunk=2))), want["frames"][:n])
        if stacked:
            assert np.array_equal(sf.array("frames"), ref.array("frames"))
        with h5py.File(sf.path) as h5:
            ds = h5["data/frames"] if stacked else h5["samples/0/frames"]
            assert ds.chunks == ((1, 1, 96, 96, 3) if stacked else (1, 96, 96, 3))  # one frame
            assert ds.compression == (None if comp == "none" else comp.split(":")[0])
            assert ds.compression_opts == (int(comp[5:]) if comp.startswith("gzip") else None)
    sizes = {c: os.path.getsize(sf.path) for c, sf in files.items()}
    # real face frames compress, and gzip more than lzf
    assert sizes["gzip:4"] <= sizes["gzip:1"] < sizes["lzf"] < sizes["none"]


def test_default_compression_is_lzf(tmp_path):
    sf = open_stage(_write(tmp_path / "x.h5", None))
    assert sf.compression == "lzf"
    with h5py.File(sf.path) as h5:
        assert h5["samples/0/frames"].compression == "lzf"


@pytest.mark.parametrize("compression, deflated", [("lzf", True), ("gzip:9", True), ("none", False)])
def test_shards_are_deflated_unless_none(tmp_path, compression, deflated):
    w = StageWriter(tmp_path / "x.h5", "aligned", {"size": 96}, compression=compression)
    w.add("a", _arrays("a"), {"subject": "s1"})
    shard = next((tmp_path / "x.h5.parts").glob("*.npz"))
    with zipfile.ZipFile(shard) as zf:
        kinds = {info.compress_type for info in zf.infolist()}
    assert kinds == {zipfile.ZIP_DEFLATED if deflated else zipfile.ZIP_STORED}
    with np.load(shard) as npz:
        assert np.array_equal(npz["frames"], _arrays("a")["frames"])
    w.close()


def test_other_compression_repacks_without_recomputing_none_keeps(tmp_path):
    path = _write(tmp_path / "x.h5", "lzf", ids=("a", "b", "c", "d"), fail=("c",))
    before = open_stage(path)
    stat = os.stat(path)
    kept = StageWriter(path, "aligned", {"size": 96})  # no compression asked: kept as it is
    same = StageWriter(path, "aligned", {"size": 96}, compression="lzf")
    assert kept.complete and same.complete and os.stat(path).st_ino == stat.st_ino
    repacked = StageWriter(path, "aligned", {"size": 96}, compression="gzip:6")
    assert repacked.complete and repacked.pending(["a", "e"]) == []
    after = open_stage(path)
    assert after.compression == "gzip:6" and os.stat(path).st_ino != stat.st_ino
    assert after.key == before.key == repacked.key and after.failed == before.failed == {"c": "no face"}
    assert after.sample_ids == before.sample_ids and after.meta == before.meta and not after.verify()
    for sid in after.sample_ids:
        assert all(np.array_equal(a, b) for a, b in zip(after.sample(sid).values(), before.sample(sid).values()))
    assert not (tmp_path / "x.h5.parts").exists() and not list(tmp_path.glob("*.tmp"))


def test_assembly_holds_about_one_shard_in_memory(tmp_path):
    """12 shards of 30 frames at 224 x 224 (4.5 MB each): a finish that held the file
    (54 MB), or two shards at once, in memory would fail."""
    frame = astronaut_face(224)
    w = StageWriter(tmp_path / "x.h5", "aligned", {"size": 224}, compression="lzf")
    ids = [f"s{i:02d}" for i in range(12)]
    for i, sid in enumerate(ids):
        w.add(sid, {"frames": np.stack([np.roll(frame, i + k, axis=1) for k in range(30)])}, {"subject": sid})
    shard_bytes = 30 * frame.nbytes
    tracemalloc.start()
    try:
        w.finish(ids, stacked=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * shard_bytes, (peak, shard_bytes)
    assert len(open_stage(tmp_path / "x.h5")) == 12


def test_cli_compression_option_key_and_info(face_clip, tmp_path, capsys):
    samples = tmp_path / "samples.csv"
    assert cli(["index", "--dataset", "manifest", "--sheet", str(face_clip["manifest"]), "-o", str(samples)]) == 0
    assert cli(["align", str(samples), "-o", str(tmp_path / "d.h5"), "--size", "64"]) == 0
    assert cli(["align", str(samples), "-o", str(tmp_path / "n.h5"), "--size", "64", "--compression", "none"]) == 0
    default, plain = open_stage(tmp_path / "d.h5"), open_stage(tmp_path / "n.h5")
    assert (default.compression, plain.compression) == ("lzf", "none") and default.key == plain.key
    with h5py.File(default.path) as h5:
        assert h5["samples/0/frames"].chunks == (1, 64, 64, 3)
    capsys.readouterr()
    assert cli(["info", str(default.path)]) == 0
    assert "storage:   lzf compression" in capsys.readouterr().out
    assert cli(["align", str(samples), "-o", str(tmp_path / "n.h5"), "--size", "64", "--compression", "gzip"]) == 0
    assert open_stage(tmp_path / "n.h5").compression == "gzip:4" and open_stage(tmp_path / "n.h5").key == plain.key
    capsys.readouterr()
    assert cli(["align", str(samples), "-o", str(tmp_path / "z.h5"), "--compression", "zstd"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: compression 'zstd': choose lzf, gzip, gzip:LEVEL (LEVEL 1-9) or none"]
    assert not (tmp_path / "z.h5").exists() and not (tmp_path / "z.h5.parts").exists()
