"""Dual TV-L1 flow (both backends) on real faces, and its one parameter record."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
from conftest import astronaut_face
from flow_fixtures import carphone_pairs, epe, face_gray, warp_pair

from mertool.preprocess.strain import normalise_flow, optical_strain
from mertool.preprocess.tvl1 import TVL1Params, tvl1, tvl1_many

BACKENDS = ["opencv", "torch"]


# --- the parameter record -----------------------------------------------------------------


def test_params_defaults_are_opencvs_own() -> None:
    # the reference: a default-constructed OpenCV solver, read back through its getters
    algo = cv2.optflow.DualTVL1OpticalFlow_create()
    opencv = {
        "tau": algo.getTau(),
        "lambda_": algo.getLambda(),
        "theta": algo.getTheta(),
        "nscales": algo.getScalesNumber(),
        "warps": algo.getWarpingsNumber(),
        "epsilon": algo.getEpsilon(),
        "inner_iterations": algo.getInnerIterations(),
        "outer_iterations": algo.getOuterIterations(),
        "scale_step": algo.getScaleStep(),
        "gamma": algo.getGamma(),
        "median_filtering": algo.getMedianFiltering(),
    }
    assert dataclasses.asdict(TVL1Params()) == pytest.approx(opencv, rel=1e-12)
    assert [f.name for f in dataclasses.fields(TVL1Params)] == list(opencv)


@pytest.mark.parametrize(
    "field, value",
    [("median_filtering", 4), ("scale_step", 1.0), ("nscales", 0), ("warps", 2.5), ("tau", 0), ("epsilon", -1), ("theta", "x")],
)
def test_params_are_checked_when_made_naming_the_field(field: str, value) -> None:
    with pytest.raises(ValueError, match=field):
        TVL1Params(**{field: value})


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
    with pytest.raises(ValueError, match="different sizes"):
        tvl1(gray, gray[:60])
    with pytest.raises(ValueError, match="different sizes"):
        tvl1_many([gray, gray[:60]], [gray, gray[:60]], backend="torch")
    with pytest.raises(ValueError, match="backend"):
        tvl1(gray, gray, backend="farneback")
    with pytest.raises(ValueError, match="gamma"):
        tvl1(gray, gray, backend="torch", params=TVL1Params(gamma=0.1))


def test_parameters_reach_the_opencv_solver() -> None:
    prev, nxt, _ = warp_pair(face_gray(64), 0.8, -0.5)
    f = tvl1(prev, nxt, params=TVL1Params(nscales=1, warps=1, inner_iterations=2, outer_iterations=1))
    assert not np.array_equal(f, tvl1(prev, nxt))


@pytest.mark.parametrize("backend", BACKENDS)
def test_constant_images_give_finite_flow(backend: str) -> None:
    a = np.full((32, 32), 80, np.uint8)
    b = np.full((32, 32), 120, np.uint8)
    f = tvl1(a, b, backend=backend, params=TVL1Params(nscales=2, warps=2))
    assert np.isfinite(f).all() and np.abs(f).max() < 1.0
    s = optical_strain(f[0], f[1])
    assert np.isfinite(s).all()
    assert np.isfinite(normalise_flow(np.zeros((3, 8, 8)), "minmax")).all()
    assert np.isfinite(normalise_flow(np.zeros((3, 8, 8)), "magnitude")).all()
