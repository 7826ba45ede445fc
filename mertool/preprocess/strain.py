"""Optical strain, and raw flows turned into the stored u, v, strain maps.

* :func:`optical_strain` -- Off-TANet Eq. 4,
  ``eps = sqrt(u_x^2 + v_y^2 + 0.5 (u_y + v_x)^2)``, or the Off-TANet authors' code path
  (``formula="published"``: u_y^2 in place of v_y^2). Scale of the derivatives
  (``method``): ``sobel`` and ``central`` give derivatives per pixel, so the strain is
  dimensionless (the same for a face at any resolution); ``sobel-raw`` is
  :func:`cv2.Sobel`'s raw 3 x 3 output (8 x the derivative per pixel inside the image), the
  scale the Off-TANet authors' preprocessing feeds their network.
* :func:`resize_map`, :func:`resize_flow`, :func:`normalise_flow`.
* :func:`flow_features` -- K x 2 x h x w flows -> K x 3 x S x S (u, v, strain), values
  outside a validity mask zeroed or kept.

Pure functions: arrays in, arrays out; problems raise ``ValueError``.
"""

from __future__ import annotations

import cv2
import numpy as np

from .align import INVALID_MODES, resize_mask

STRAIN_METHODS = ("sobel", "central", "sobel-raw")
STRAIN_FORMULAS = ("eq4", "published")
NORMALISATIONS = ("none", "minmax", "magnitude", "minmax255")


def _derivatives(f: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    if method == "sobel-raw":  # the authors' call: float32, ksize 3, OpenCV's default border
        f32 = np.asarray(f, np.float32)
        return cv2.Sobel(f32, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(f32, cv2.CV_32F, 0, 1, ksize=3)
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


def optical_strain(u: np.ndarray, v: np.ndarray, method: str = "sobel", formula: str = "eq4") -> np.ndarray:
    """Optical strain magnitude (Off-TANet Eq. 4, or the authors' code path).

    ``eq4``: ``eps = sqrt(u_x^2 + v_y^2 + 0.5 * (u_y + v_x)^2)``; ``published``:
    ``sqrt(u_x^2 + u_y^2 + 0.5 * (u_y + v_x)^2)``, what the Off-TANet authors' released
    preprocessing computes (u_y^2 where Eq. 4 has v_y^2), for bug-compatible reruns.
    ``u_x = du/dx``, ``u_y = du/dy``, ``v_x = dv/dx``, ``v_y = dv/dy`` (x = column, y = row).

    Parameters
    ----------
    u, v : np.ndarray
        H x W horizontal and vertical flow.
    method : {"sobel", "central", "sobel-raw"}
        ``sobel``: 3x3 Sobel / 8; ``central``: (f[i+1] - f[i-1]) / 2. Both give
        derivatives per pixel and are exact for affine fields, borders included (the
        field is extended linearly by one pixel). ``sobel-raw``: ``cv2.Sobel(f, CV_32F,
        ksize=3)`` as it comes (8 x the per-pixel derivative inside the image; OpenCV's
        reflect-101 border), computed in float32.
    formula : {"eq4", "published"}

    Returns
    -------
    np.ndarray
        H x W float32 strain magnitude.
    """
    u = np.asarray(u)
    v = np.asarray(v)
    if u.shape != v.shape or u.ndim != 2:
        raise ValueError(f"u and v must be H x W arrays of one shape, got {u.shape} and {v.shape}")
    if formula not in STRAIN_FORMULAS:
        raise ValueError(f"strain formula must be one of {', '.join(STRAIN_FORMULAS)}, got {formula!r}")
    ux, uy = _derivatives(u, method)
    vx, vy = _derivatives(v, method)
    second = vy if formula == "eq4" else uy
    return np.sqrt(ux**2 + second**2 + 0.5 * (uy + vx) ** 2).astype(np.float32)


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


def normalise_flow(x: np.ndarray, mode: str = "none", valid: np.ndarray | None = None) -> np.ndarray:
    """Per-sample normalisation of a 3 x S x S (u, v, strain) array.

    ``none``: unchanged. ``minmax``: each channel to [0, 1] (a constant channel -> 0);
    ``minmax255``: the same to [0, 255], the scale of the widely shared composite
    (MEGC 2019) u, v, strain images, not rounded. ``magnitude``: u and v divided by the
    largest flow magnitude, strain by its largest value (all-zero fields stay zero), so
    directions and ratios are kept. With ``valid`` (S x S bool), the minima and maxima
    are taken over its True pixels only.
    """
    x = np.asarray(x, np.float32)
    if mode not in NORMALISATIONS:
        raise ValueError(f"normalise must be one of {', '.join(NORMALISATIONS)}, got {mode!r}")
    if mode == "none":
        return x
    pick = np.ones(x.shape[1:], bool) if valid is None or not np.any(valid) else np.asarray(valid, bool)
    out = np.zeros_like(x)
    if mode in ("minmax", "minmax255"):
        top = 255.0 if mode == "minmax255" else 1.0
        for c in range(x.shape[0]):
            lo, hi = float(x[c][pick].min()), float(x[c][pick].max())
            if hi > lo:
                out[c] = (x[c] - lo) * (top / (hi - lo))
        return out
    mag = float(np.sqrt(x[0] ** 2 + x[1] ** 2)[pick].max())
    if mag > 0:
        out[:2] = x[:2] / mag
    smax = float(np.abs(x[2:])[:, pick].max()) if x.shape[0] > 2 else 0.0
    if smax > 0:
        out[2:] = x[2:] / smax
    return out


def flow_features(
    flows: np.ndarray,
    *,
    size: int,
    strain: str,
    normalise: str,
    rescale_flow: bool,
    strain_formula: str = "eq4",
    valid: np.ndarray | None = None,
    invalid: str = "zero",
) -> np.ndarray:
    """Raw flows (K x 2 x h x w) as K x 3 x S x S float32 maps: u, v and strain.

    Parameters
    ----------
    flows : np.ndarray
        Flows in pixels of the frames they were computed on.
    size : int
        Side S of the maps (:func:`resize_flow`, :func:`resize_map`).
    strain : {"sobel", "central", "sobel-raw"}
        Derivatives of :func:`optical_strain`, taken at the flows' own resolution
        before resizing (the strain is resized as it is).
    normalise : {"none", "minmax", "magnitude", "minmax255"}
        Per-map normalisation (:func:`normalise_flow`).
    rescale_flow : bool
        Keep u, v in pixels of the S x S grid (else in pixels of the flows' frames).
    strain_formula : {"eq4", "published"}
        See :func:`optical_strain`.
    valid : np.ndarray, optional
        Validity mask of the frames (any size; :func:`~.align.resize_mask`): pixels
        that came from outside the source image are False.
    invalid : {"zero", "keep"}
        ``zero``: maps are normalised over the valid pixels, then set to 0 outside them;
        ``keep``: the mask is ignored.
    """
    if invalid not in INVALID_MODES:
        raise ValueError(f"invalid must be one of {', '.join(INVALID_MODES)}, got {invalid!r}")
    mask = resize_mask(valid, size) if valid is not None and invalid == "zero" else None
    out = []
    for f in flows:
        eps = optical_strain(f[0], f[1], strain, strain_formula)
        uv = resize_flow(f, size, rescale_flow)
        x = normalise_flow(np.concatenate([uv, resize_map(eps, size)[None]]), normalise, mask)
        if mask is not None:
            x[:, ~mask] = 0.0
        out.append(x)
    return np.stack(out).astype(np.float32)
