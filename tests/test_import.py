import csv

import cv2
import numpy as np
import pytest

from mertool.cli.main import cli
from mertool.errors import MertoolError
from mertool.stages.importer import import_flow, match_key, parse_channels
from mertool.stages.stagefile import open_stage


def _csv(path, rows, header=("Sample ID", "Subj", "Emotion")):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def _planes(seed, h=6, w=5):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(3, h, w)).astype(np.float32)  # u, v, strain


def test_arrays_tolerant_matching_and_unmatched(tmp_path, capsys):
    src = tmp_path / "arrays"
    src.mkdir()
    ref = {k: _planes(k) for k in range(3)}
    np.save(src / "Sub01_EP02.NPY", ref[0])                               # C x H x W, upper-case name/extension
    np.save(src / "sub02_ep05.npy", np.moveaxis(ref[1], 0, -1))           # H x W x C
    np.savez(src / "sub03_ep01.npz", u=ref[2][0], v=ref[2][1], strain=ref[2][2])
    np.save(src / "orphan.npy", ref[0])
    labels = _csv(tmp_path / "labels.csv", [["sub01_ep02 ", "s1", "negative"], ["sub02_EP05.npy", "s2", "positive"],
                                            ["sub03_ep01", "s3", "surprise"], ["sub09_ep09", "s9", "negative"]])
    out = tmp_path / "flow.h5"
    rc = cli(["import", str(src), "--labels", str(labels), "-o", str(out), "--sample-col", "sample id",
              "--subject-col", "SUBJ", "--label-col", "emotion"])
    captured = capsys.readouterr()
    err = captured.err
    assert rc == 0, err
    assert "1 CSV row(s) without a file: sub09_ep09" in err and "1 file(s) without a CSV row: orphan.npy" in err
    assert f"{out}: 3 of 3 samples" in captured.out
    sf = open_stage(out, expect="flow")
    flow = sf.array("flow")
    assert flow.shape == (3, 3, 6, 5) and flow.dtype == np.float32
    for k in range(3):
        np.testing.assert_array_equal(flow[k], ref[k])
    assert sf.meta["label"] == ["negative", "positive", "surprise"] and sf.meta["subject"] == ["s1", "s2", "s3"]
    assert sf.sample_ids == ["sub01_ep02", "sub02_EP05.npy", "sub03_ep01"]


def test_images_bgr_channels_and_resize(tmp_path):
    src = tmp_path / "imgs"
    src.mkdir()
    rng = np.random.default_rng(0)
    planes = rng.integers(0, 256, size=(2, 3, 28, 28), dtype=np.uint8)  # (u, v, strain) per sample
    for k in range(2):
        bgr = np.stack([planes[k][2], planes[k][1], planes[k][0]], axis=-1)  # B=strain, G=v, R=u
        cv2.imwrite(str(src / f"s{k}.png"), bgr)
    labels = _csv(tmp_path / "l.csv", [["s0", "a", "x"], ["s1", "b", "y"]], header=("sample", "subject", "label"))
    result = import_flow(src, labels, tmp_path / "f.h5", channels="strain,v,u", size=12)
    assert (result.done, result.failed) == (2, {})  # both rows matched both files
    flow = open_stage(result.path, expect="flow").array("flow")
    for k in range(2):
        expected = np.stack([cv2.resize(p.astype(np.float32) / 255, (12, 12), interpolation=cv2.INTER_CUBIC) for p in planes[k]])
        np.testing.assert_allclose(flow[k], expected, atol=1e-6)


def test_train_reads_import_unchanged(tmp_path):
    from mertool.models import get_entry
    from mertool.train.data import load_train_data

    src = tmp_path / "a"
    src.mkdir()
    for k in range(4):
        np.save(src / f"c{k}.npy", _planes(k, 28, 28))
    labels = _csv(tmp_path / "l.csv", [[f"c{k}", f"s{k % 2}", "ab"[k % 2]] for k in range(4)], header=("sample", "subject", "label"))
    result = import_flow(src, labels, tmp_path / "f.h5", size=112)
    data = load_train_data(result.path, get_entry("offtanet").input, model="offtanet")
    assert data.inputs["flow"].shape == (4, 3, 112, 112)


def test_bad_input(tmp_path, capsys):
    src = tmp_path / "a"
    src.mkdir()
    np.save(src / "c0.npy", _planes(0))
    np.save(src / "c1.npy", _planes(1, 8, 8))
    good = _csv(tmp_path / "l.csv", [["c0", "s", "x"], ["c1", "s", "y"]], header=("sample", "subject", "label"))
    with pytest.raises(MertoolError, match="name each of u, v, strain"):
        parse_channels("u,v,v")
    assert parse_channels("os,-,v,u") == ["strain", "-", "v", "u"]
    assert match_key(" Sub01.PNG ") == "sub01"
    with pytest.raises(MertoolError, match="pass --size"):
        import_flow(src, good, tmp_path / "o.h5")
    bad = _csv(tmp_path / "b.csv", [["c0", "s", "x"]], header=("id", "subject", "label"))
    rc = cli(["import", str(src), "--labels", str(bad), "-o", str(tmp_path / "o2.h5")])
    assert rc == 2 and "missing column(s) sample; expected sample, subject, label" in capsys.readouterr().err
    none = _csv(tmp_path / "n.csv", [["zz", "s", "x"]], header=("sample", "subject", "label"))
    with pytest.raises(MertoolError, match="no CSV row matches"):
        import_flow(src, none, tmp_path / "o3.h5")
    np.save(src / "C0 .npy", _planes(0))
    with pytest.raises(MertoolError, match="both match sample 'c0'"):
        import_flow(src, good, tmp_path / "o4.h5")
    with pytest.raises(MertoolError, match="input folder not found"):
        import_flow(tmp_path / "nope", good, tmp_path / "o5.h5")


def test_unreadable_file_is_a_failed_sample_and_params_are_stable(tmp_path):
    src = tmp_path / "a"
    src.mkdir()
    for k in range(3):
        np.save(src / f"c{k}.npy", _planes(k))
    (src / "c3.png").write_bytes(b"not a png")
    labels = _csv(tmp_path / "l.csv", [[f"c{k}", "s", "x"] for k in range(4)], header=("sample", "subject", "label"))
    result = import_flow(src, labels, tmp_path / "f.h5", progress=False)
    assert result.done == 3 and list(result.failed) == ["c3"] and "unreadable image" in result.failed["c3"]
    sf = open_stage(result.path, expect="flow")
    assert sf.sample_ids == ["c0", "c1", "c2"] and sf.failed == result.failed
    assert set(sf.params) == {"source", "folder", "channels", "size", "files"}
    assert (sf.params["source"], sf.params["channels"], sf.params["size"]) == ("import", ["u", "v", "strain"], 0)
    assert sf.meta["apex_source"] == ["import"] * 3 and sf.meta["clip"] == ["c0.npy", "c1.npy", "c2.npy"]
    again = import_flow(src, labels, tmp_path / "f.h5", progress=False)
    assert again.up_to_date and again.done == 3
