"""The torch TV-L1's building blocks against OpenCV's own functions."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from mertool.preprocess.tvl1 import TVL1Params
from mertool.preprocess.tvl1_torch import _make_median_update, centered_gradient, remap_cubic, resize_linear, tvl1_torch


def median5(x: torch.Tensor) -> torch.Tensor:
    """5 x 5 median of B x H x W images: the solver's (pure) median update, all pairs active."""
    return _make_median_update(5)(x[:, None], torch.ones(len(x), dtype=torch.bool))[:, 0]


def _devices() -> list[str]:
    # one implementation: the same tests run on every device torch sees
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def test_remap_cubic_matches_cv2_remap() -> None:
    rng = np.random.default_rng(0)
    img = (rng.random((30, 40)) * 255).astype(np.float32)
    mx = (np.arange(40)[None, :] + rng.normal(0, 3, (30, 40))).astype(np.float32)
    my = (np.arange(30)[:, None] + rng.normal(0, 3, (30, 40))).astype(np.float32)
    ref = cv2.remap(img, mx, my, cv2.INTER_CUBIC)  # default border: constant 0
    for dev in _devices():
        got = remap_cubic(torch.tensor(img, device=dev)[None, None], torch.tensor(mx, device=dev)[None], torch.tensor(my, device=dev)[None])
        assert np.abs(got[0, 0].cpu().numpy() - ref).max() < 2e-3


def test_resize_matches_cv2_linear() -> None:
    img = (np.random.default_rng(1).random((45, 37)) * 255).astype(np.float32)
    down = cv2.resize(img, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_LINEAR)  # sizes rounded, step 1/0.8
    got = resize_linear(torch.tensor(img), down.shape, (1.25, 1.25)).numpy()
    assert got.shape == down.shape and np.abs(got - down).max() < 1e-3
    up = cv2.resize(img, (61, 70), interpolation=cv2.INTER_LINEAR)
    assert np.abs(resize_linear(torch.tensor(img), (70, 61)).numpy() - up).max() < 1e-3


def test_median_and_gradient_match_opencv_conventions() -> None:
    img = (np.random.default_rng(2).random((20, 24)) * 9).astype(np.float32)
    assert np.array_equal(median5(torch.tensor(img)[None])[0].numpy(), cv2.medianBlur(img, 5))
    gx, gy = centered_gradient(torch.tensor(img)[None])
    # central differences, one-sided (halved) at the border
    p = np.pad(img, 1, mode="edge")
    assert np.allclose(gx[0].numpy(), 0.5 * (p[1:-1, 2:] - p[1:-1, :-2]))
    assert np.allclose(gy[0].numpy(), 0.5 * (p[2:, 1:-1] - p[:-2, 1:-1]))


def test_batch_gives_the_pairs_own_answers() -> None:
    # per-pair stopping: a pair's flow does not depend on the others in its batch
    from flow_fixtures import face_gray, warp_pair

    a0, b0, _ = warp_pair(face_gray(64), 0.7, -0.3)
    a1, b1, _ = warp_pair(face_gray(64), -0.2, 0.5)
    batch = tvl1_torch(torch.tensor(np.stack([a0, a1])).float(), torch.tensor(np.stack([b0, b1])).float())
    one = tvl1_torch(torch.tensor(a1)[None].float(), torch.tensor(b1)[None].float())
    assert batch.shape == (2, 2, 64, 64)
    assert float((batch[1] - one[0]).abs().mean()) < 1e-3


# --- the GPU-oriented solver: masked updates, delayed exit, compile ------------------------

import shutil  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from mertool.preprocess import tvl1_torch as T  # noqa: E402


def _pairs(size: int = 48):
    from flow_fixtures import face_gray, warp_pair

    # different motions converge after different numbers of iterations
    specs = [(0.7, -0.3, 0.0), (-1.6, 0.9, 0.0), (1.2, 0.4, size / 6)]
    ps = [warp_pair(face_gray(size), dx, dy, bump) for dx, dy, bump in specs]
    a = torch.tensor(np.stack([p[0] for p in ps])).float()
    b = torch.tensor(np.stack([p[1] for p in ps])).float()
    return a, b, np.stack([p[2] for p in ps])


def _state(b: int = 3, h: int = 20, w: int = 24, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(b, 2, h, w, generator=g)
    px = torch.randn(b, 2, h, w, generator=g) * 0.2
    py = torch.randn(b, 2, h, w, generator=g) * 0.2
    gI = torch.randn(b, 2, h, w, generator=g) * 8
    rho_c = torch.randn(b, 1, h, w, generator=g) * 20
    inv_grad = 1.0 / (gI * gI).sum(1, keepdim=True)
    return u, px, py, gI, rho_c, inv_grad


def _reference_step(u, px, py, gI, rho_c, l_t, theta, taut):
    """One Dual TV-L1 iteration in float64 NumPy, OpenCV's three-case thresholding."""
    u, px, py, gI, rho_c = (np.asarray(x, np.float64) for x in (u, px, py, gI, rho_c))
    grad = (gI**2).sum(1, keepdims=True)
    rho = rho_c + (gI * u).sum(1, keepdims=True)
    d = np.where(rho < -l_t * grad, l_t * gI, np.where(rho > l_t * grad, -l_t * gI, -rho / grad * gI))
    div = px.copy()
    div[..., 1:] -= px[..., :-1]
    div = div + py
    div[..., 1:, :] -= py[..., :-1, :]
    n = u + d + theta * div
    err = ((n - u) ** 2).sum(axis=(1, 2, 3))
    ux = np.zeros_like(n)
    uy = np.zeros_like(n)
    ux[..., :-1] = n[..., 1:] - n[..., :-1]
    uy[..., :-1, :] = n[..., 1:, :] - n[..., :-1, :]
    ng = 1 + taut * np.sqrt(ux**2 + uy**2)
    return n, (px + taut * ux) / ng, (py + taut * uy) / ng, err


@pytest.mark.parametrize("device", _devices())
@pytest.mark.parametrize("in_place", [False, True])
def test_inner_step_matches_reference_and_freezes_stopped_pairs(in_place: bool, device: str) -> None:
    u, px, py, gI, rho_c, inv_grad = _state()
    l_t, theta, taut = 0.045, 0.3, 0.25 / 0.3
    n, qx, qy, err = _reference_step(u, px, py, gI, rho_c, l_t, theta, taut)
    u, px, py, gI, rho_c, inv_grad = (x.to(device) for x in (u, px, py, gI, rho_c, inv_grad))
    eps2 = float(err[0] + err[2]) / 2  # of the two active pairs, the one with the smaller change stops
    active = torch.tensor([True, False, True], device=device)
    h, w = u.shape[-2:]
    args = (gI, rho_c, inv_grad, active, l_t, theta, taut, eps2 / (h * w))
    if in_place:
        state = [x.clone() for x in (u, px, py)]
        got = T.inner_step_(*state, *args, T._Workspace(u))
        assert all(g is s for g, s in zip(got[:3], state))  # updated in place
    else:
        got = T.inner_step(u, px, py, *args)
    for k, (g, ref, old) in enumerate(zip(got[:3], (n, qx, qy), (u, px, py))):
        assert torch.equal(g[1], old[1]), f"stopped pair changed (field {k})"
        assert np.allclose(g[[0, 2]].cpu().numpy(), ref[[0, 2]], rtol=1e-5, atol=1e-4), f"field {k}"
    assert got[3].tolist() == [bool(err[0] > eps2), False, bool(err[2] > eps2)]


@pytest.mark.parametrize("device", _devices())
def test_median_update_pure_and_in_place_equal_cv2(device: str) -> None:
    u = (torch.rand(3, 2, 21, 17, generator=torch.Generator().manual_seed(3)) * 9).round().to(device)
    active = torch.tensor([True, False, True], device=device)
    pure = T._make_median_update(5)(u, active)
    ws = T._Workspace(u)
    inplace = T._make_median_update_(5)
    for _ in range(2):  # second run reuses the workspace's buffers
        got = inplace(u.clone(), active, ws)
        assert torch.equal(got, pure)
    assert torch.equal(pure[1], u[1])
    for i in (0, 2):
        for c in range(2):
            assert np.array_equal(pure[i, c].cpu().numpy(), cv2.medianBlur(u[i, c].cpu().numpy(), 5))


def _count_active_iterations(monkeypatch, compile_: bool = False) -> list:
    """Record the ``active`` mask at every inner iteration of the eager solver."""
    med, step, in_place = T._kernels(5, compile_)
    seen: list = []

    def counting_step(*args):
        seen.append(args[6].clone())
        return step(*args)

    monkeypatch.setitem(T._KERNELS, (5, compile_), (med, counting_step, in_place))
    return seen


@pytest.mark.parametrize("device", _devices())
def test_masked_batch_equals_each_pair_alone(monkeypatch, device: str) -> None:
    a, b, _ = _pairs()
    a, b = a.to(device), b.to(device)
    seen = _count_active_iterations(monkeypatch)
    batch = T.tvl1_torch(a, b, TVL1Params(nscales=2), check_every=7)
    masks = torch.stack(seen).cpu()  # iterations x pairs
    per_pair = masks.sum(0).tolist()
    # the pairs stopped at different iterations, and the batch ran past some pair's stop
    assert len(set(per_pair)) == 3 and len(masks) > min(per_pair)
    seen.clear()
    for i in range(3):
        alone = T.tvl1_torch(a[i : i + 1], b[i : i + 1], TVL1Params(nscales=2), check_every=1)
        assert torch.allclose(batch[i], alone[0], atol=1e-5), i
        assert int(torch.stack(seen).sum()) == per_pair[i]  # same iterations, one at a time
        seen.clear()


@pytest.mark.parametrize("device", _devices())
def test_check_every_changes_nothing(device: str) -> None:
    a, b, _ = _pairs(40)
    a, b = a.to(device), b.to(device)
    ref = T.tvl1_torch(a, b, check_every=1)
    for k in (3, 10, 1000):
        assert torch.equal(T.tvl1_torch(a, b, check_every=k), ref)


@pytest.mark.parametrize("device", _devices())
def test_recovers_known_flow_with_grid_sample_and_gather(device: str) -> None:
    a, b, truth = _pairs(64)
    for remap in ("grid_sample", "gather"):
        out = T.tvl1_torch(a.to(device), b.to(device), remap=remap).cpu().numpy()
        e = np.sqrt(((out - truth) ** 2).sum(1))[:, 8:-8, 8:-8].mean(axis=(1, 2))
        assert (e < 0.1).all(), (remap, e)


def test_remap_grid_sample_matches_cv2_remap() -> None:
    rng = np.random.default_rng(5)
    img = (rng.random((40, 52)) * 255).astype(np.float32)
    mx = (np.arange(52)[None, :] + rng.normal(0, 4, (40, 52))).astype(np.float32)
    my = (np.arange(40)[:, None] + rng.normal(0, 4, (40, 52))).astype(np.float32)
    ref = cv2.remap(img, mx, my, cv2.INTER_CUBIC)  # zero border
    got = remap_cubic(torch.tensor(img)[None, None], torch.tensor(mx)[None], torch.tensor(my)[None], method="grid_sample")
    assert np.abs(got[0, 0].numpy() - ref).max() < 2e-3
    ys, xs = np.mgrid[0:40, 0:52].astype(np.float32)  # integer positions: the pixels exactly
    same = remap_cubic(torch.tensor(img)[None, None], torch.tensor(xs)[None], torch.tensor(ys)[None], method="grid_sample")
    assert torch.equal(same[0, 0], torch.tensor(img))
    with pytest.raises(ValueError):
        remap_cubic(torch.tensor(img)[None, None], torch.tensor(mx)[None], torch.tensor(my)[None], method="nearest")


def test_bad_arguments() -> None:
    a, b, _ = _pairs(32)
    with pytest.raises(ValueError, match="check_every"):
        T.tvl1_torch(a, b, check_every=0)
    with pytest.raises(ValueError, match="remap"):
        T.tvl1_torch(a, b, remap="linear")
    with pytest.raises(ValueError, match="B x H x W"):
        T.tvl1_torch(a, b[:2])
    with pytest.raises(ValueError, match="gamma must be 0"):  # no illumination term here
        T.tvl1_torch(a, b, TVL1Params(gamma=0.1))


def test_compile_failure_falls_back_to_eager_with_a_warning(monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(T, "_KERNELS", {})
    monkeypatch.setattr(torch, "compile", broken)
    a, b, truth = _pairs(40)
    with pytest.warns(RuntimeWarning, match="torch.compile of .* failed .*no compiler here"):
        out = T.tvl1_torch(a, b, compile=True)
    med, step, in_place = T._KERNELS[(5, True)]
    assert med.broken and step.broken and not in_place
    eager = T.tvl1_torch(a, b)
    assert float((out - eager).abs().mean()) < 0.02
    e = np.sqrt(((out.numpy() - truth) ** 2).sum(1))[:, 6:-6, 6:-6].mean()
    assert e < 0.1


def test_compile_option_reaches_the_solver(tmp_path: Path, capsys, monkeypatch) -> None:
    from flow_fixtures import face_clip, write_aligned

    from mertool.cli.main import cli

    seen = []
    solver = T.tvl1_torch

    def spy(*args, **kwargs):
        seen.append(kwargs.get("compile"))
        return solver(*args, **{**kwargs, "compile": False})

    monkeypatch.setattr(T, "tvl1_torch", spy)
    aligned = write_aligned(tmp_path / "aligned.h5", [{"id": "a", "frames": face_clip(48, 2)}])
    rc = cli(["flow", str(aligned), "-o", str(tmp_path / "f.h5"), "--backend", "torch", "--device", "cpu",
              "--flow-size", "0", "--size", "16", "--compile"])
    assert rc == 0, capsys.readouterr().err
    assert seen == [True]
    rc = cli(["flow", str(aligned), "-o", str(tmp_path / "g.h5"), "--backend", "torch", "--device", "cpu",
              "--flow-size", "0", "--size", "16"])
    assert rc == 0 and seen == [True, False]
    assert "--compile" in _help(capsys, cli)


def _help(capsys, cli) -> str:
    capsys.readouterr()
    try:
        cli(["flow", "--help"])
    except SystemExit:
        pass
    return capsys.readouterr().out


def _compile_available() -> bool:
    # CPU inductor needs a C++ compiler; dynamo needs a supported Python
    return bool(torch._dynamo.is_dynamo_supported()) and any(shutil.which(c) for c in ("g++", "c++", "clang++"))


@pytest.mark.slow
@pytest.mark.parametrize("device", _devices())
def test_compiled_equals_eager(monkeypatch, device: str) -> None:
    if device == "cpu" and not _compile_available():
        pytest.skip("torch.compile unavailable here (no dynamo support or no C++ compiler)")
    monkeypatch.setattr(T, "_KERNELS", {})
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback to eager fails the test
        # each compiled function against its eager twin, stopped pairs included
        u, px, py, gI, rho_c, inv_grad = (x.to(device) for x in _state(3, 26, 22, seed=7))
        active = torch.tensor([True, False, True], device=device)
        med, step, _ = T._kernels(5, True)
        args = (gI, rho_c, inv_grad, active, 0.045, 0.3, 0.25 / 0.3, 1e-3)
        got = step(u, px, py, *args)
        ref = T.inner_step_(u.clone(), px.clone(), py.clone(), *args, T._Workspace(u))
        for g, r in zip(got, ref):
            assert torch.allclose(g, r, rtol=1e-5, atol=1e-5)
        assert torch.equal(got[1][1], px[1])
        assert torch.equal(med(u, active), T._make_median_update_(5)(u.clone(), active, T._Workspace(u)))
        # the whole solver against the eager one; after the first call other batch sizes
        # reuse its graphs (dynamic shapes; batches of 1 or 2 are padded to 3)
        from torch._dynamo.utils import counters

        a, b, truth = _pairs(48)
        a, b = torch.cat([a, a.flip(-1)]).to(device), torch.cat([b, b.flip(-1)]).to(device)  # 6 pairs
        truth = np.concatenate([truth, truth[:, :, :, ::-1] * np.array([-1, 1], np.float32)[None, :, None, None]])
        for k, sl in enumerate((slice(0, 1), slice(1, 6), slice(0, 2), slice(2, 6))):
            graphs = counters["stats"]["unique_graphs"]
            comp = T.tvl1_torch(a[sl], b[sl], compile=True)
            assert k == 0 or counters["stats"]["unique_graphs"] == graphs, f"recompiled for batch {sl}"
            eager = T.tvl1_torch(a[sl], b[sl])
            assert float((comp - eager).abs().mean()) < 0.02
            e = np.sqrt(((comp.cpu().numpy() - truth[sl]) ** 2).sum(1))[:, 6:-6, 6:-6].mean()
            assert e < 0.1
    assert not med.broken and not step.broken
