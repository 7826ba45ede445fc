"""Optical strain, and raw flows turned into the stored u, v, strain maps.

* :func:`optical_strain` -- Off-TANet Eq. 4,
  ``eps = sqrt(u_x^2 + v_y^2 + 0.5 (u_y + v_x)^2)``, from derivatives per pixel (so the
  strain is dimensionless: the same for a face at any resolution).
* :func:`resize_map`, :func:`resize_flow`, :func:`normalise_flow`.
* :func:`flow_features` -- K x 2 x h x w flows -> K x 3 x S x S (u, v, strain).

Pure functions: arrays in, arrays out; problems raise ``ValueError``.
"""

from __future__ import annotations

import cv2
import numpy as np

STRAIN_METHODS = ("sobel", "central")
NORMALISATIONS = ("none", "minmax", "magnitude")


def _derivatives(f: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    # odd reflection extends f linearly past the border, so affine fields stay exact there
    p = np.pad(np.asarray(f, np.float64), 1, mode="reflect", reflect_type="odd")
    if method == "central":
        fx = 0.5 * (p[1:-1, 2:] - p[1:-1, :-2])
        fy = 0.5 * (p[2:, 1:-1] - p[:-2, 1:-1])
    elif method == "sobel":
        # 3x3 Sobel divided by 8: the derivative per pixel (Sobel's raw output is 8x that)
        fx = cv2.Sobel(p, cv2.CV_64F, 1, 0, ksize=3)[1:-1, 1:-1] / 8.0
        fy = cv2.Sobel(p, cv2.CV_64F, 0, 1, ksize=3)[1:-1, 1:-1] / 8.0
    else:
        raise ValueError(f"strain method must be one of {', '.join(STRAIN_METHODS)}, got {method!r}")
    return fx, fy


def optical_strain(u: np.ndarray, v: np.ndarray, method: str = "sobel") -> np.ndarray:
    """Optical strain magnitude (Off-TANet Eq. 4).

    ``eps = sqrt(u_x^2 + v_y^2 + 0.5 * (u_y + v_x)^2)`` with ``u_x = du/dx``,
    ``u_y = du/dy``, ``v_x = dv/dx``, ``v_y = dv/dy`` (x = column, y = row).

    Parameters
    ----------
    u, v : np.ndarray
        H x W horizontal and vertical flow.
    method : {"sobel", "central"}
        ``sobel``: 3x3 Sobel / 8; ``central``: (f[i+1] - f[i-1]) / 2. Both give
        derivatives per pixel and are exact for affine fields, borders included (the
        field is extended linearly by one pixel).

    Returns
    -------
    np.ndarray
        H x W float32 strain magnitude.
    """
    u = np.asarray(u)
    v = np.asarray(v)
    if u.shape != v.shape or u.ndim != 2:
        raise ValueError(f"u and v must be H x W arrays of one shape, got {u.shape} and {v.shape}")
    ux, uy = _derivatives(u, method)
    vx, vy = _derivatives(v, method)
    return np.sqrt(ux**2 + vy**2 + 0.5 * (uy + vx) ** 2).astype(np.float32)


def resize_map(a: np.ndarray, size: int) -> np.ndarray:
    """Resize an H x W float map to size x size (area when shrinking, bilinear otherwise)."""
    if a.shape == (size, size):
        return a.astype(np.float32)
    interp = cv2.INTER_AREA if size < min(a.shape) else cv2.INTER_LINEAR
    return cv2.resize(a.astype(np.float32), (size, size), interpolation=interp)


def resize_flow(flow: np.ndarray, size: int, rescale: bool = True) -> np.ndarray:
    """Resize a 2 x H x W flow to 2 x size x size.

    With ``rescale`` the vectors are multiplied by the size ratio (per axis) so they stay
    in pixels of the new grid.
    """
    h, w = flow.shape[-2:]
    u, v = resize_map(flow[0], size), resize_map(flow[1], size)
    if rescale:
        u, v = u * (size / w), v * (size / h)
    return np.stack([u, v]).astype(np.float32)


def normalise_flow(x: np.ndarray, mode: str = "none") -> np.ndarray:
    """Per-sample normalisation of a 3 x S x S (u, v, strain) array.

    ``none``: unchanged. ``minmax``: each channel to [0, 1] (a constant channel -> 0).
    ``magnitude``: u and v divided by the largest flow magnitude, strain by its largest
    value (all-zero fields stay zero), so directions and ratios are kept.
    """
    x = np.asarray(x, np.float32)
    if mode == "none":
        return x
    out = np.zeros_like(x)
    if mode == "minmax":
        for c in range(x.shape[0]):
            lo, hi = float(x[c].min()), float(x[c].max())
            if hi > lo:
                out[c] = (x[c] - lo) / (hi - lo)
        return out
    if mode == "magnitude":
        mag = float(np.sqrt(x[0] ** 2 + x[1] ** 2).max())
        if mag > 0:
            out[:2] = x[:2] / mag
        smax = float(np.abs(x[2:]).max()) if x.shape[0] > 2 else 0.0
        if smax > 0:
            out[2:] = x[2:] / smax
        return out
    raise ValueError(f"normalise must be one of {', '.join(NORMALISATIONS)}, got {mode!r}")


def flow_features(flows: np.ndarray, *, size: int, strain: str, normalise: str, rescale_flow: bool) -> np.ndarray:
    """Raw flows (K x 2 x h x w) as K x 3 x S x S float32 maps: u, v and strain.

    Parameters
    ----------
    flows : np.ndarray
        Flows in pixels of the frames they were computed on.
    size : int
        Side S of the maps (:func:`resize_flow`, :func:`resize_map`).
    strain : {"sobel", "central"}
        Derivatives of :func:`optical_strain`, taken at the flows' own resolution
        before resizing (the strain is dimensionless, so it is resized as it is).
    normalise : {"none", "minmax", "magnitude"}
        Per-map normalisation (:func:`normalise_flow`).
    rescale_flow : bool
        Keep u, v in pixels of the S x S grid (else in pixels of the flows' frames).
    """
    out = []
    for f in flows:
        eps = optical_strain(f[0], f[1], strain)
        uv = resize_flow(f, size, rescale_flow)
        x = np.concatenate([uv, resize_map(eps, size)[None]])
        out.append(normalise_flow(x, normalise))
    return np.stack(out).astype(np.float32)
