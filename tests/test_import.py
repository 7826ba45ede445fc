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
              "--subject-col", "SUBJ", "--label-col", "emotion", "--allow-missing"])
    captured = capsys.readouterr()
    err = captured.err
    assert rc == 0, err
    assert f"{labels}: 1 of 4 CSV row(s) match no file in {src}: sub09_ep09" in err
    assert "1 file(s) in" in err and "without a CSV row (not imported): orphan.npy" in err
    assert f"{out}: 3 of 3 samples, flow (u, v, strain), encoding signed" in captured.out
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
    result = import_flow(src, labels, tmp_path / "f.h5", channels="strain,v,u", size=12, scale="unit")
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
    assert rc == 1 and "missing column(s) sample; expected sample, subject, label" in capsys.readouterr().err
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
    with pytest.raises(MertoolError, match="both images and arrays; say how they are encoded with --encoding"):
        import_flow(src, labels, tmp_path / "f.h5", progress=False)
    result = import_flow(src, labels, tmp_path / "f.h5", encoding="signed", progress=False)
    assert result.done == 3 and list(result.failed) == ["c3"] and "unreadable image" in result.failed["c3"]
    sf = open_stage(result.path, expect="flow")
    assert sf.sample_ids == ["c0", "c1", "c2"] and sf.failed == result.failed
    assert set(sf.params) == {"source", "folder", "channels", "size", "scale", "encoding", "files"}
    assert (sf.params["source"], sf.params["channels"], sf.params["size"]) == ("import", ["u", "v", "strain"], 0)
    assert sf.meta["apex_source"] == ["import"] * 3 and sf.meta["clip"] == ["c0.npy", "c1.npy", "c2.npy"]
    again = import_flow(src, labels, tmp_path / "f.h5", encoding="signed", progress=False)
    assert again.up_to_date and again.done == 3


def _png_folder(folder, planes, bits=8):
    """Write (u, v, strain) planes per sample as B,G,R = strain, v, u PNGs (as the composite images are)."""
    folder.mkdir()
    for k, p in enumerate(planes):
        cv2.imwrite(str(folder / f"s{k}.png"), np.stack([p[2], p[1], p[0]], axis=-1).astype(np.uint16 if bits == 16 else np.uint8))
    return folder


def test_scale_round_trip_and_recorded_encoding(tmp_path):
    from mertool.stages.contents import flow_encoding

    planes = np.random.default_rng(1).integers(0, 256, size=(2, 3, 7, 7), dtype=np.uint8)
    src = _png_folder(tmp_path / "imgs", planes)
    labels = _csv(tmp_path / "l.csv", [["s0", "a", "x"], ["s1", "b", "y"]], header=("sample", "subject", "label"))
    raw = import_flow(src, labels, tmp_path / "raw.h5", channels="strain,v,u", progress=False)  # --scale raw is the default
    unit = import_flow(src, labels, tmp_path / "unit.h5", channels="strain,v,u", scale="unit", progress=False)
    raw_sf, unit_sf = open_stage(raw.path), open_stage(unit.path)
    np.testing.assert_array_equal(raw_sf.array("flow"), planes.astype(np.float32))  # 0..255, as OpenCV reads them
    np.testing.assert_allclose(unit_sf.array("flow"), planes / 255.0, rtol=0, atol=1e-7)
    assert (flow_encoding(raw_sf), flow_encoding(unit_sf)) == ("minmax-byte", "minmax-unit")
    assert (raw_sf.params["scale"], unit_sf.params["scale"]) == ("raw", "unit")
    assert raw_sf.key != unit_sf.key  # the scale is part of what is computed

    # arrays keep their values and are signed displacement unless told otherwise
    arrays = tmp_path / "arrays"
    arrays.mkdir()
    ref = [_planes(k) for k in range(2)]
    for k in range(2):
        np.save(arrays / f"s{k}.npy", ref[k])
    signed = import_flow(arrays, labels, tmp_path / "signed.h5", scale="unit", progress=False)
    np.testing.assert_array_equal(open_stage(signed.path).array("flow"), np.stack(ref))
    assert flow_encoding(signed.path) == "signed"
    assert cli(["import", str(arrays), "--labels", str(labels), "-o", str(tmp_path / "u.h5"), "--encoding", "minmax-unit"]) == 0
    assert flow_encoding(tmp_path / "u.h5") == "minmax-unit"
    with pytest.raises(MertoolError, match="encoding must be one of signed, minmax-unit, minmax-byte"):
        import_flow(arrays, labels, tmp_path / "bad.h5", encoding="0..255")
    with pytest.raises(MertoolError, match="scale must be one of raw, unit"):
        import_flow(arrays, labels, tmp_path / "bad.h5", scale="byte")


def test_sixteen_bit_images_need_unit_scale(tmp_path):
    planes = np.random.default_rng(2).integers(0, 65536, size=(2, 3, 5, 5)).astype(np.uint16)
    src = _png_folder(tmp_path / "imgs", planes, bits=16)
    cv2.imwrite(str(src / "s1.png"), np.full((5, 5, 3), 7, np.uint8))  # one 8-bit image among them
    labels = _csv(tmp_path / "l.csv", [["s0", "a", "x"], ["s1", "b", "y"]], header=("sample", "subject", "label"))
    raw = import_flow(src, labels, tmp_path / "raw.h5", channels="strain,v,u", progress=False)
    assert raw.done == 1 and "uint16 image; --scale raw keeps 0..255 of 8-bit images only" in raw.failed["s0"]
    unit = import_flow(src, labels, tmp_path / "unit.h5", channels="strain,v,u", scale="unit", progress=False)
    flow = open_stage(unit.path).array("flow")
    np.testing.assert_allclose(flow[0], planes[0] / 65535.0, rtol=0, atol=1e-7)
    np.testing.assert_allclose(flow[1], np.full((3, 5, 5), 7 / 255.0), rtol=0, atol=1e-7)


def test_strict_import_stops_on_rows_without_a_file(tmp_path, capsys):
    src = tmp_path / "a"
    src.mkdir()
    for k in range(3):
        np.save(src / f"casme_{k}.npy", _planes(k))
    missing = [f"samm_{k:02d}" for k in range(25)]  # e.g. one source's names in another column
    rows = [[f"casme_{k}", f"s{k}", "x"] for k in range(3)] + [[m, "t", "y"] for m in missing]
    labels = _csv(tmp_path / "l.csv", rows, header=("sample", "subject", "label"))
    out = tmp_path / "f.h5"
    rc = cli(["import", str(src), "--labels", str(labels), "-o", str(out)])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert rc == 1 and len(errors) == 1 and not out.exists()
    assert f"{labels}: 25 of 28 CSV row(s) match no file in {src}: " + ", ".join(missing[:20]) + " ...;" in errors[0]
    assert "samm_20" not in errors[0] and "check --sample-col" in errors[0]
    assert "pass --allow-missing to import the 3 that match" in errors[0]
    rc = cli(["import", str(src), "--labels", str(labels), "-o", str(out), "--allow-missing"])
    err = capsys.readouterr().err
    assert rc == 0 and "25 of 28 CSV row(s) match no file" in err and "error:" not in err
    assert open_stage(out).sample_ids == ["casme_0", "casme_1", "casme_2"]


def test_flow_encoding_of_flow_stage_files_and_dataset_counts(tmp_path):
    from mertool.stages.contents import dataset_counts, flow_encoding
    from mertool.stages.stagefile import StageWriter

    def stage_file(name, stage, params, datasets=("casme2", "samm", "casme2")):
        w = StageWriter(tmp_path / f"{name}.h5", stage, params)
        for i, ds in enumerate(datasets):
            w.add(f"c{i}", {"flow": np.zeros((3, 4, 4), np.float32)}, {"dataset": ds, "label": "x", "subject": "s"})
        return w.finish([f"c{i}" for i in range(len(datasets))], stacked=True)

    expect = {"none": "signed", "magnitude": "signed", "minmax": "minmax-unit", "minmax255": "minmax-byte",
              "zscore": "unknown"}
    for mode, encoding in expect.items():
        assert flow_encoding(stage_file(mode, "flow", {"normalise": mode, "size": 4})) == encoding, mode
    assert flow_encoding(stage_file("old_import", "flow", {"source": "import", "size": 0})) == "unknown"
    with pytest.raises(MertoolError, match="'dynimg' stage file holds no flow"):
        flow_encoding(stage_file("d", "dynimg", {}))
    assert dataset_counts(tmp_path / "none.h5") == {"casme2": 2, "samm": 1}

    # import carries the labels file's dataset column
    src = tmp_path / "a"
    src.mkdir()
    for k in range(3):
        np.save(src / f"c{k}.npy", _planes(k))
    labels = _csv(tmp_path / "l.csv", [["c0", "s", "x", "smic"], ["c1", "s", "y", "samm"], ["c2", "t", "x", "smic"]],
                  header=("sample", "subject", "label", "dataset"))
    assert dataset_counts(import_flow(src, labels, tmp_path / "f.h5", progress=False).path) == {"samm": 1, "smic": 2}
