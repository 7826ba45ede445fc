"""Optical strain against analytic fields; resizing, normalisation and the flow pictures."""

from __future__ import annotations

import numpy as np
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
