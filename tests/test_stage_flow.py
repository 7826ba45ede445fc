"""The ``flow`` stage and ``mertool flow``: config, stage file, --samples, failures, resume."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from flow_fixtures import face_clip, write_aligned

import mertool.stages.flow as stage
from mertool.cli.main import cli
from mertool.config import config_hash
from mertool.errors import MertoolError
from mertool.preprocess.tvl1 import TVL1Params
from mertool.stages.flow import FlowConfig, run_flow
from mertool.stages.stagefile import StageWriter, open_stage

# --- config ---------------------------------------------------------------------------------


def test_config_presets_and_overrides(tmp_path: Path) -> None:
    assert FlowConfig.resolve().size == 112
    st = FlowConfig.resolve(preset="ststnet")
    assert st.size == 28 and st.preset == "ststnet"
    assert FlowConfig.resolve(preset="ststnet", size=32).size == 32
    y = tmp_path / "f.yaml"
    y.write_text("preset: ststnet\nlambda: 0.2\ninner-iterations: 20\n")
    c = FlowConfig.resolve(y, warps=3)
    assert (c.size, c.lambda_, c.inner_iterations, c.warps) == (28, 0.2, 20, 3)
    with pytest.raises(MertoolError, match="preset"):
        FlowConfig.resolve(preset="nope")
    with pytest.raises(MertoolError, match="normalise"):
        FlowConfig.resolve(normalise="zscore")
    with pytest.raises(MertoolError, match="gamma"):
        FlowConfig.resolve(backend="torch", gamma=0.1)
    with pytest.raises(MertoolError, match="median_filtering must be 1"):
        FlowConfig.resolve(median_filtering=4)


def test_config_tvl1_fields_are_the_tvl1_record() -> None:
    record = TVL1Params()
    cfg = FlowConfig()
    for field in dataclasses.fields(TVL1Params):
        assert getattr(cfg, field.name) == getattr(record, field.name), field.name
    assert FlowConfig.resolve(warps=3, lambda_=0.2).tvl1() == TVL1Params(warps=3, lambda_=0.2)


def test_default_stage_key_is_unchanged(tmp_path: Path) -> None:
    # the parameters a default run records, spelled out: a refactor must not change
    # them (flow.h5 files made before it stay valid) unless a change is intended.
    # Intended change (issue 15): the offtanet preset's strain is raw cv2.Sobel
    # ("sobel-raw", was "sobel" = /8), and strain_formula and invalid are recorded,
    # so default flow.h5 files made before it are refused (their key differs).
    params = {
        "preset": "offtanet", "size": 112, "flow_size": 112, "pairs": "apex", "normalise": "none",
        "strain": "sobel-raw", "strain_formula": "eq4", "rescale_flow": True, "invalid": "zero",
        "backend": "opencv", "tau": 0.25, "lambda_": 0.15, "theta": 0.3, "nscales": 5, "warps": 5,
        "epsilon": 0.01, "inner_iterations": 30, "outer_iterations": 10, "scale_step": 0.8, "gamma": 0.0,
        "median_filtering": 5,
    }
    assert FlowConfig.resolve().to_dict() == params
    assert config_hash(params) == "58eb0b772ab86553"  # "08cbb04807f1448d" before issue 15
    assert FlowConfig.resolve(preset="ststnet").hash() == "8fc8b2ffe0a12aae"  # was "9d8bff67dd6b2648"
    aligned = write_aligned(tmp_path / "aligned.h5", [{"id": "a", "frames": face_clip(48, 3)}])
    run_flow(aligned, tmp_path / "flow.h5", progress=False)
    sf = open_stage(tmp_path / "flow.h5")
    assert sf.params == params and sf.config_hash == "58eb0b772ab86553"
    assert open_stage(aligned).key == "2994b65632e17b5d" and sf.key == "e598e37828fa1543"


def test_help_states_defaults_and_conventions(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    try:
        cli(["flow", "--help"])
    except SystemExit:
        pass
    text = " ".join(capsys.readouterr().out.split())
    assert "TV-L1 time step [default: 0.25]" in text and "[default: per preset: offtanet 112, ststnet 28]" in text
    assert "3x3 Sobel divided by 8" in text and "dimensionless" in text and "magnitude: u, v divided by the largest flow magnitude" in text
    assert "sobel-raw: cv2.Sobel's raw 3x3 output (8x the" in text
    assert "[default: per preset: offtanet sobel-raw, ststnet sobel]" in text
    assert "minmax255: each channel to 0..255" in text and "[default: per preset: offtanet none, ststnet minmax255]" in text
    assert "published: the authors' released code, u_y^2 in place of v_y^2" in text and "--invalid" in text


# --- the stage ------------------------------------------------------------------------------


def test_stage_writes_flow_h5_with_meta_and_previews(tmp_path: Path, capsys) -> None:
    clip = face_clip(96, 3, (0.5, -0.3))
    aligned = write_aligned(tmp_path / "aligned.h5", [
        {"id": "a", "frames": clip, "apex": 3, "aus": "4+L10"},
        {"id": "b", "frames": clip[::-1].copy(), "apex": 3, "subject": "s2"},
    ])
    rc = cli(["flow", str(aligned), "-o", str(tmp_path / "flow.h5"), "--flow-size", "64", "--size", "32", "--preview", str(tmp_path / "pv")])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "2 of 2 samples, flow 32x32 (opencv)" in out.out
    sf = open_stage(tmp_path / "flow.h5", expect="flow")
    flow = sf.array("flow")
    assert flow.shape == (2, 3, 32, 32) and flow.dtype == np.float32
    assert sf.sample_ids == ["a", "b"] and sf.meta["aus"][0] == "4+L10" and sf.meta["subject"] == ["s1", "s2"]
    assert sf.params["size"] == 32 and sf.params["flow_size"] == 64 and sf.params["preset"] == "offtanet"
    # onset->apex is 2 steps of (0.5, -0.3) px at 96 px = (0.67, -0.4) px at 64 = (0.33, -0.2) at 32
    inner = flow[:, :, 4:-4, 4:-4].mean(axis=(2, 3))
    assert np.allclose(inner[0, :2], [1 / 3, -0.2], atol=0.04)
    assert np.allclose(inner[1, :2], [-1 / 3, 0.2], atol=0.04)  # reversed clip, reversed flow
    assert (flow[:, 2] >= 0).all()
    pngs = sorted(p.name for p in (tmp_path / "pv").iterdir())
    assert pngs == ["a.png", "b.png"]
    panel = cv2.imread(str(tmp_path / "pv" / "a.png"))
    assert panel.shape == (265, 920, 3) and panel[60:240, 400:560].std() > 1  # a visible flow wheel (3rd panel)
    # a second run finds the file up to date
    rc = cli(["flow", str(aligned), "-o", str(tmp_path / "flow.h5"), "--flow-size", "64", "--size", "32"])
    assert rc == 0 and "(up to date)" in capsys.readouterr().out


def test_stage_apex_from_samples_csv_and_missing_apex(tmp_path: Path, capsys) -> None:
    clip = face_clip(64, 4, (0.5, 0.0))
    aligned = write_aligned(tmp_path / "aligned.h5", [{"id": "a", "frames": clip, "apex": -1}])
    rc = cli(["flow", str(aligned), "-o", str(tmp_path / "flow.h5"), "--flow-size", "0", "--size", "64"])
    err = capsys.readouterr().err
    assert rc == 1 and "sample a: apex unknown" in err and "mertool keyframes" in err
    assert not (tmp_path / "flow.h5").exists() and not (tmp_path / "flow.h5.parts").exists()
    csv = tmp_path / "samples.csv"
    csv.write_text("sample_id,subject,onset,apex,offset,label,apex_source\na,s1,1,3,4,surprise,estimated:test\n")
    rc = cli(["flow", str(aligned), "-o", str(tmp_path / "flow.h5"), "--flow-size", "0", "--size", "64", "--samples", str(csv)])
    assert rc == 0, capsys.readouterr().err
    sf = open_stage(tmp_path / "flow.h5")
    assert sf.meta["apex"] == [3] and sf.meta["apex_source"] == ["estimated:test"]
    assert abs(float(sf.array("flow")[0, 0, 6:-6, 6:-6].mean()) - 1.0) < 0.1  # 2 steps of 0.5 px


def test_samples_policy(tmp_path: Path, capsys) -> None:
    # the one --samples policy: a row per sample, a known apex overrides, apex -1 keeps the file's
    clip = face_clip(48, 4, (0.5, 0.0))
    aligned = write_aligned(tmp_path / "aligned.h5", [
        {"id": "a", "frames": clip, "apex": 4}, {"id": "b", "frames": clip, "apex": 3},
    ])
    head = "sample_id,subject,onset,apex,offset,label,apex_source\n"
    csv = tmp_path / "samples.csv"
    csv.write_text(head + "a,s1,1,2,4,surprise,estimated:test\n")
    args = ["flow", str(aligned), "-o", str(tmp_path / "flow.h5"), "--flow-size", "0", "--size", "16", "--samples", str(csv)]
    rc = cli(args)
    err = capsys.readouterr().err
    assert rc == 1 and err.count("error:") == 1 and "no row for sample(s) b" in err
    assert not (tmp_path / "flow.h5").exists()
    csv.write_text(head + "a,s1,1,2,4,surprise,estimated:test\nb,s1,1,-1,4,surprise,estimated:none\n")
    rc = cli(args)
    assert rc == 0, capsys.readouterr().err
    sf = open_stage(tmp_path / "flow.h5")
    assert sf.meta["apex"] == [2, 3] and sf.meta["apex_source"] == ["estimated:test", "sheet"]
    # onset->apex: 1 step of 0.5 px for a (the CSV's apex), 2 steps for b (the file's)
    u = sf.array("flow")[:, 0, 3:-3, 3:-3].mean(axis=(1, 2)) * 48 / 16
    assert np.allclose(u, [0.5, 1.0], atol=0.1)


def test_stage_pairs_all_and_normalise(tmp_path: Path) -> None:
    clip = face_clip(48, 3, (0.5, 0.0))
    aligned = write_aligned(tmp_path / "aligned.h5", [{"id": "a", "frames": clip}])
    cfg = FlowConfig.resolve(pairs="all", flow_size=0, size=48, normalise="magnitude", backend="torch")
    result = run_flow(aligned, tmp_path / "flow.h5", cfg, progress=False, preview=tmp_path / "pv")
    assert (result.done, result.failed) == (1, {})
    x = open_stage(result.path).sample("a")
    assert x["flow"].shape == (3, 3, 48, 48) and list(x["frame_numbers"]) == [1, 2, 3]
    assert np.allclose(x["flow"][0], 0, atol=1e-3)  # onset -> onset
    assert np.isclose(np.hypot(x["flow"][2, 0], x["flow"][2, 1]).max(), 1.0)
    assert [p.name for p in (tmp_path / "pv").iterdir()] == ["a.png"]


def test_torch_batches_fail_only_their_bad_samples(tmp_path: Path) -> None:
    clip = face_clip(48, 3, (0.5, 0.0))
    aligned = write_aligned(tmp_path / "aligned.h5", [
        {"id": "a", "frames": clip, "apex": 3},
        {"id": "b", "frames": clip, "apex": 9},  # fails while loading
        {"id": "c", "frames": clip[:, :6, :6].copy(), "apex": 2},  # fails in the solver
        {"id": "d", "frames": clip[:, :40, :40].copy(), "apex": 2},  # another size, same batch
    ])
    cfg = FlowConfig.resolve(flow_size=0, size=16, backend="torch")
    result = run_flow(aligned, tmp_path / "flow.h5", cfg, device="cpu", batch_size=4, progress=False)
    assert result.done == 2 and set(result.failed) == {"b", "c"}
    assert "apex frame 9 is not among the aligned frames" in result.failed["b"]
    assert "too small" in result.failed["c"]
    assert open_stage(result.path).sample_ids == ["a", "d"]


def test_stage_bad_inputs(tmp_path: Path, capsys, monkeypatch) -> None:
    clip = face_clip(48, 2)
    aligned = write_aligned(tmp_path / "aligned.h5", [{"id": "a", "frames": clip}, {"id": "b", "frames": clip}])
    # a file from another stage
    rc = cli(["flow", str(aligned), "-o", str(tmp_path / "f.h5"), "--flow-size", "0"])
    assert rc == 0
    rc = cli(["flow", str(tmp_path / "f.h5"), "-o", str(tmp_path / "g.h5")])
    assert rc == 1 and "expected 'aligned'" in capsys.readouterr().err
    # an aligned-stage file of another layout/version
    other = StageWriter(tmp_path / "old.h5", "aligned", {"v": 0})
    other.add("a", {"crop": np.zeros((2, 2))}, {"apex": 1})
    other.finish(["a"], stacked=True)
    rc = cli(["flow", str(tmp_path / "old.h5"), "-o", str(tmp_path / "g.h5")])
    assert rc == 1 and "another mertool version" in capsys.readouterr().err
    # a bad device is an option error, before anything is written
    rc = cli(["flow", str(aligned), "-o", str(tmp_path / "d.h5"), "--backend", "torch", "--device", "tpu"])
    assert rc == 2 and "unknown device 'tpu'" in capsys.readouterr().err and not (tmp_path / "d.h5.parts").exists()


def _poison(monkeypatch, samples: int) -> None:
    """Make the first ``samples`` computed samples' maps non-finite."""
    real = stage.flow_features
    calls = []

    def poisoned(flows, **kw):
        x = real(flows, **kw)
        calls.append(1)
        if len(calls) <= samples:
            x[0, 0, 0, 0] = np.nan
        return x

    monkeypatch.setattr(stage, "flow_features", poisoned)


def test_non_finite_flow_fails_the_sample_never_written_as_nan(tmp_path: Path, capsys, monkeypatch) -> None:
    clip = face_clip(48, 2)
    aligned = write_aligned(tmp_path / "aligned.h5", [{"id": "a", "frames": clip}, {"id": "b", "frames": clip}])
    _poison(monkeypatch, 1)
    rc = cli(["flow", str(aligned), "-o", str(tmp_path / "n.h5"), "--flow-size", "0", "--size", "16"])
    captured = capsys.readouterr()
    assert rc == 0 and "sample a: non-finite" in captured.err and "1 of 2 samples" in captured.out
    sf = open_stage(tmp_path / "n.h5")
    assert sf.sample_ids == ["b"] and set(sf.failed) == {"a"} and np.isfinite(sf.array("flow")).all()
    # every sample failing publishes nothing and stops with one error line
    _poison(monkeypatch, 2)
    rc = cli(["flow", str(aligned), "-o", str(tmp_path / "m.h5"), "--flow-size", "0", "--size", "16"])
    err = capsys.readouterr().err
    assert rc == 1 and "no sample could be processed" in err and "non-finite" in err
    assert not (tmp_path / "m.h5").exists()


def test_stage_resumes_after_kill(tmp_path: Path) -> None:
    n = 8
    clip = face_clip(96, 2, (0.6, 0.2))
    aligned = write_aligned(tmp_path / "aligned.h5", [{"id": f"s{k:02d}", "frames": np.roll(clip, k, axis=2)} for k in range(n)])
    cfg = FlowConfig.resolve(flow_size=64, size=32, backend="opencv")
    out = tmp_path / "flow.h5"
    parts = tmp_path / "flow.h5.parts"
    code = (
        "import sys; from mertool.stages.flow import FlowConfig, run_flow; "
        "run_flow(sys.argv[1], sys.argv[2], FlowConfig.resolve(flow_size=64, size=32, backend='opencv'), progress=False)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(aligned), str(out)], stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("*.npz"))) < 2:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(parts.glob("*.npz")))
    assert not out.exists() and 2 <= done < n, f"killed with {done} of {n} done"
    # the re-run resumes (same parameters) and publishes the whole file
    run_flow(aligned, out, cfg, progress=False)
    assert not parts.exists()
    ref = run_flow(aligned, tmp_path / "ref.h5", cfg, progress=False).path
    a, b = open_stage(out), open_stage(ref)
    assert a.sample_ids == b.sample_ids == [f"s{k:02d}" for k in range(n)]
    assert np.array_equal(a.array("flow"), b.array("flow"))
    assert json.loads(a.attrs["params"]) == json.loads(b.attrs["params"])
    # changed parameters are refused without --overwrite
    with pytest.raises(MertoolError, match="different parameters"):
        run_flow(aligned, out, FlowConfig.resolve(flow_size=64, size=24), progress=False)


# --- presets that reproduce published inputs; validity masks (issue 15) -----------------------


def _aligned_crops(tmp_path: Path, **align) -> tuple[Path, Path]:
    """Two tightly cropped real-face clips (CASME II-like) and their aligned.h5."""
    from crop_fixtures import tight_clip, write_clips

    from mertool.stages.align import AlignConfig, run_align

    samples = write_clips(tmp_path / "clips", {"ep01": tight_clip(3), "ep02": tight_clip(3, seed=1)})
    return samples, run_align(samples, tmp_path / "aligned.h5", AlignConfig(**align), progress=False).path


@pytest.mark.parametrize("formula", ["eq4", "published"])
def test_offtanet_preset_is_the_authors_input(tmp_path: Path, formula: str) -> None:
    """The dataset crop resized once to 112 (align --crop none --size 112), then the preset,
    equals the published preprocessing computed independently (offtanet_reference)."""
    import offtanet_reference as reference

    _, aligned = _aligned_crops(tmp_path, crop="none", size=112)
    cfg = FlowConfig.resolve(preset="offtanet", strain_formula=formula)
    sf = open_stage(run_flow(aligned, tmp_path / "flow.h5", cfg, progress=False).path)
    assert sf.params["strain"] == "sobel-raw" and sf.params["strain_formula"] == formula
    for sid in ("ep01", "ep02"):
        folder = tmp_path / "clips" / sid
        expected = reference.features(folder / "reg_img1.png", folder / "reg_img3.png", formula)
        got = sf.sample(sid, ["flow"])["flow"]
        assert np.abs(got[:2] - expected[:2]).max() < 1e-5  # the same TV-L1 on the same frames
        assert np.abs(got[2] - expected[2]).max() < 1e-5
        assert expected[2].max() > 0.1  # a real strain channel, on the authors' (raw Sobel) scale


def test_ststnet_preset_matches_imported_composite_images(tmp_path: Path) -> None:
    from mertool.stages.contents import flow_encoding
    from mertool.stages.importer import import_flow

    _, aligned = _aligned_crops(tmp_path)
    sf = open_stage(run_flow(aligned, tmp_path / "flow.h5", FlowConfig.resolve(preset="ststnet"), progress=False).path)
    flow = sf.array("flow")
    assert flow.shape == (2, 3, 28, 28) and sf.params["normalise"] == "minmax255"
    assert np.allclose(flow.min(axis=(2, 3)), 0) and np.allclose(flow.max(axis=(2, 3)), 255, atol=1e-3)
    # written the way the shared composite images are (an RGB-ordered u, v, strain PNG) and
    # imported as mertool import documents them: the same numbers, the same order
    folder = tmp_path / "composite"
    folder.mkdir()
    for sid, x in zip(sf.sample_ids, flow):
        rgb = np.rint(x.transpose(1, 2, 0)).astype(np.uint8)
        cv2.imwrite(str(folder / f"{sid}.png"), rgb[..., ::-1])
    (tmp_path / "labels.csv").write_text("sample,subject,label\nep01,sub01,surprise\nep02,sub01,surprise\n")
    result = import_flow(folder, tmp_path / "labels.csv", tmp_path / "imp.h5", channels="strain,v,u", progress=False)
    imported = open_stage(result.path)
    assert np.abs(imported.array("flow") - flow).max() <= 0.5  # 8-bit rounding only
    assert flow_encoding(sf) == flow_encoding(imported) == "minmax-byte"


def test_values_outside_the_validity_mask_are_zeroed_or_kept(tmp_path: Path) -> None:
    from crop_fixtures import tight_face, write_clips

    from mertool.stages.align import AlignConfig, run_align

    face = np.ascontiguousarray(tight_face()[:, 50:])  # cut by the frame: the similarity crop reaches past it
    samples = write_clips(tmp_path, {"cut": [face, np.roll(face, 1, axis=1)]}, dataset="my-lab")
    aligned = run_align(samples, tmp_path / "a.h5", AlignConfig(size=96, margin=0.3), progress=False).path
    valid = open_stage(aligned).sample("cut", ["valid"])["valid"]
    assert valid.mean() < 0.8
    outside = cv2.resize(valid.astype(np.float32), (48, 48), interpolation=cv2.INTER_AREA) == 0
    zero, keep = (
        open_stage(run_flow(aligned, tmp_path / name, FlowConfig.resolve(size=48, flow_size=96, invalid=mode), progress=False).path)
        for name, mode in (("z.h5", "zero"), ("k.h5", "keep"))
    )
    assert zero.params["invalid"] == "zero" and keep.params["invalid"] == "keep"
    z, k = zero.array("flow")[0], keep.array("flow")[0]
    assert (z[:, outside] == 0).all() and np.abs(k[:, outside]).max() > 0
    assert zero.meta["valid_fraction"] == open_stage(aligned).meta["valid_fraction"]  # carried with the meta
