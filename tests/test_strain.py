"""Optical strain against analytic fields; resizing, normalisation and the flow pictures."""

from __future__ import annotations

import numpy as np
import offtanet_reference as reference
import pytest

from mertool.preprocess.render import flow_to_rgb, strain_to_rgb
from mertool.preprocess.strain import flow_features, normalise_flow, optical_strain, resize_flow


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
    with pytest.raises(ValueError, match="one shape"):
        optical_strain(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="strain method"):
        optical_strain(np.zeros((4, 4)), np.zeros((4, 4)), "scharr")
    with pytest.raises(ValueError, match="normalise"):
        normalise_flow(np.zeros((3, 4, 4)), "zscore")


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


def test_flow_features_strain_is_taken_before_resizing() -> None:
    ys, xs = np.mgrid[0:40, 0:40].astype(np.float64)
    a = 0.05  # u = a x: strain a everywhere, at any resolution
    flows = np.stack([a * xs, 0 * ys])[None]
    x = flow_features(flows, size=20, strain="sobel", normalise="none", rescale_flow=True)
    assert x.shape == (1, 3, 20, 20) and x.dtype == np.float32
    assert np.allclose(x[0, 2], a, atol=1e-6)
    assert np.allclose(x[0, 0], resize_flow(flows[0], 20)[0])
    m = flow_features(flows, size=20, strain="central", normalise="magnitude", rescale_flow=False)
    assert np.isclose(np.hypot(m[0, 0], m[0, 1]).max(), 1) and np.allclose(m[0, 2], 1)


# --- the Off-TANet authors' scale, the published formula, masks ------------------------------


def _real_flow() -> np.ndarray:
    from flow_fixtures import carphone_pairs

    from mertool.preprocess.tvl1 import tvl1

    prev, nxt = carphone_pairs(1, 112)[0]
    return tvl1(prev, nxt)


def test_raw_sobel_strain_is_eq4_on_cv2_sobel_output() -> None:
    flow = _real_flow()
    eq4, published = (reference.strain(flow[0], flow[1], formula) for formula in ("eq4", "published"))
    got = optical_strain(flow[0], flow[1], "sobel-raw", "eq4")
    assert got.dtype == np.float32 and np.abs(got - eq4).max() < 1e-5
    assert np.abs(optical_strain(flow[0], flow[1], "sobel-raw", "published") - published).max() < 1e-5
    assert np.abs(eq4 - published).max() > 0.01  # the two formulas differ on real flow
    # raw Sobel is 8x the per-pixel derivative: inside the image, 8x the "sobel" strain
    per_pixel = optical_strain(flow[0], flow[1], "sobel")
    np.testing.assert_allclose(got[1:-1, 1:-1], 8 * per_pixel[1:-1, 1:-1], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="strain formula"):
        optical_strain(flow[0], flow[1], "sobel", "eq5")


def test_minmax255_and_statistics_over_the_valid_pixels() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 8, 8)).astype(np.float32)
    m = normalise_flow(x, "minmax255")
    for c in range(3):  # each channel on its own: its min -> 0, its max -> 255
        np.testing.assert_allclose(m[c], (x[c] - x[c].min()) / (x[c].max() - x[c].min()) * 255, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(normalise_flow(x, "minmax255"), 255 * normalise_flow(x, "minmax"), atol=1e-4)
    valid = np.zeros((8, 8), bool)
    valid[2:6, 1:7] = True
    x[:, ~valid] = 100.0  # huge values outside the mask must not set the scale
    mv = normalise_flow(x, "minmax", valid)
    assert np.isclose(mv[:, valid].min(), 0) and np.isclose(mv[:, valid].max(), 1)


def test_flow_features_zero_or_keep_outside_the_mask() -> None:
    ys, xs = np.mgrid[0:40, 0:40].astype(np.float64)
    flows = np.stack([0.05 * xs + 1, 0 * ys - 0.5])[None]
    valid = np.ones((80, 80), bool)  # a mask at the aligned frames' size
    valid[:, :20] = False  # the left quarter came from outside the image
    zero = flow_features(flows, size=20, strain="sobel", normalise="none", rescale_flow=False, valid=valid)
    keep = flow_features(flows, size=20, strain="sobel", normalise="none", rescale_flow=False, valid=valid, invalid="keep")
    assert (zero[0, :, :, :5] == 0).all() and (zero[0, :, :, 5:] == keep[0, :, :, 5:]).all()
    np.testing.assert_array_equal(keep, flow_features(flows, size=20, strain="sobel", normalise="none", rescale_flow=False))
    assert (keep[0, 0, :, :5] != 0).all()
    with pytest.raises(ValueError, match="invalid must be one of"):
        flow_features(flows, size=20, strain="sobel", normalise="none", rescale_flow=False, invalid="drop")
