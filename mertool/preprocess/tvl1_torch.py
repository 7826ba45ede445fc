"""Dual TV-L1 optical flow in torch, batched over many image pairs, on CPU or CUDA.

One implementation serves both devices (the tensors' device decides). It follows the
Dual TV-L1 scheme of Zach, Pock and Bischof (2007) in the formulation of Sánchez Pérez,
Meinhardt-Llopis and Facciolo (IPOL 2013), with the numerical choices of OpenCV's
``DualTVL1OpticalFlow`` so that the two backends agree to a small fraction of a pixel:

* image pyramid built by repeated bilinear downscaling by ``scale_step`` (OpenCV
  ``INTER_LINEAR`` geometry: half-pixel centres, edge clamping, sizes rounded), stopping
  before a level narrower than 16 px; the flow is upscaled bilinearly between levels and
  multiplied by ``1 / scale_step``;
* per warp, the target image and its centred-difference gradient are sampled at
  ``x + u`` with bicubic interpolation (a = -0.75, zero outside the image, as
  ``cv::remap``'s default border);
* the constant part of the linearised residual is computed once per warp; then up to
  ``outer`` times: 5x5 median filter of the flow, followed by up to ``inner`` primal-dual
  iterations (thresholding step for v, semi-implicit update for u with the backward
  divergence of the dual field, projected dual ascent on the forward gradient of u);
* iterations stop early when the summed squared change of u falls below
  ``epsilon**2 * H * W`` (checked per pair, so a batch gives the same answer as one pair
  at a time).

Images are float tensors on the 0..255 scale.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F



# --- OpenCV-compatible resampling -------------------------------------------------


@lru_cache(maxsize=64)
def _linear_matrix_np(n_in: int, n_out: int, scale: float) -> np.ndarray:
    """Row-stochastic matrix of OpenCV's INTER_LINEAR 1-D resampling (n_out x n_in)."""
    m = np.zeros((n_out, n_in), dtype=np.float64)
    for d in range(n_out):
        f = (d + 0.5) * scale - 0.5
        s = math.floor(f)
        f -= s
        if s < 0:
            s, f = 0, 0.0
        if s >= n_in - 1:
            s, f = n_in - 1, 0.0
        m[d, s] += 1.0 - f
        if f:
            m[d, s + 1] += f
    return m


def _linear_matrix(n_in: int, n_out: int, scale: float, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(_linear_matrix_np(n_in, n_out, float(scale)), dtype=like.dtype, device=like.device)


def resize_linear(x: torch.Tensor, size: tuple[int, int], scale: tuple[float, float] | None = None) -> torch.Tensor:
    """Bilinear resize of ``(..., H, W)`` to ``size = (h, w)`` with OpenCV's geometry.

    ``scale`` is the source step per output pixel (``(sy, sx)``); default ``H / h``,
    ``W / w`` as ``cv2.resize(src, (w, h))``. ``cv2.resize(src, None, fx=f, fy=f)`` uses
    ``1 / f`` instead, which differs when ``H * f`` is not an integer.
    """
    h_in, w_in = x.shape[-2:]
    h, w = size
    sy, sx = scale if scale is not None else (h_in / h, w_in / w)
    my = _linear_matrix(h_in, h, sy, x)
    mx = _linear_matrix(w_in, w, sx, x)
    return my @ x @ mx.T


def _cubic_weights(t: torch.Tensor) -> list[torch.Tensor]:
    """Bicubic (a = -0.75, as OpenCV) weights of the 4 taps at offset ``t`` in [0, 1)."""
    a = -0.75
    t1 = t + 1
    s = 1 - t
    w0 = ((a * t1 - 5 * a) * t1 + 8 * a) * t1 - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + 1
    w2 = ((a + 2) * s - (a + 3)) * s * s + 1
    return [w0, w1, w2, 1 - w0 - w1 - w2]


def remap_cubic(images: torch.Tensor, map_x: torch.Tensor, map_y: torch.Tensor) -> torch.Tensor:
    """Sample ``images`` (B x C x H x W) at (map_x, map_y) (B x H x W each), bicubic.

    Matches ``cv2.remap(..., INTER_CUBIC)`` with float maps and its default border
    (constant 0): taps outside the image count as 0. (OpenCV 5 samples at the exact float
    position; older releases rounded it to 1/32 px.)
    """
    b, c, h, w = images.shape
    pad = 2
    padded = F.pad(images, (pad, pad, pad, pad))  # zeros outside
    hp, wp = h + 2 * pad, w + 2 * pad
    big = float(1 << 20)  # keep the float->long conversion safe for wild flows
    x = map_x.clamp(-big, big)
    y = map_y.clamp(-big, big)
    x0 = torch.floor(x)
    y0 = torch.floor(y)
    wx = _cubic_weights(x - x0)
    wy = _cubic_weights(y - y0)
    ix = x0.long()
    iy = y0.long()
    # tap k sits at floor - 1 + k; indices clamped into the zero border read zero
    cols = [(ix - 1 + k + pad).clamp_(0, wp - 1) for k in range(4)]
    rows = [(iy - 1 + k + pad).clamp_(0, hp - 1) for k in range(4)]
    flat = padded.reshape(b, c, hp * wp)
    out = torch.zeros_like(images)
    for r in range(4):
        acc = torch.zeros_like(images)
        for k in range(4):
            idx = (rows[r] * wp + cols[k]).reshape(b, 1, h * w).expand(b, c, h * w)
            acc += torch.gather(flat, 2, idx).reshape(b, c, h, w) * wx[k].unsqueeze(1)
        out += acc * wy[r].unsqueeze(1)
    return out


def median5(x: torch.Tensor, k: int = 5) -> torch.Tensor:
    """k x k median filter of B x H x W with replicated borders (``cv2.medianBlur``)."""
    b, h, w = x.shape
    r = k // 2
    padded = F.pad(x.unsqueeze(1), (r, r, r, r), mode="replicate")
    patches = F.unfold(padded, k)  # B x k*k x H*W
    return patches.median(dim=1).values.reshape(b, h, w)


def centered_gradient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences with replicated borders (halved one-sided at the edges)."""
    p = F.pad(x.unsqueeze(1), (1, 1, 1, 1), mode="replicate").squeeze(1)
    gx = 0.5 * (p[:, 1:-1, 2:] - p[:, 1:-1, :-2])
    gy = 0.5 * (p[:, 2:, 1:-1] - p[:, :-2, 1:-1])
    return gx, gy


def _forward_gradient(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    gx = F.pad(u[:, :, 1:] - u[:, :, :-1], (0, 1))
    gy = F.pad(u[:, 1:, :] - u[:, :-1, :], (0, 0, 0, 1))
    return gx, gy


def _divergence(p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
    # backward differences with p = 0 before the first row / column (adjoint of the above)
    return p1 - F.pad(p1[:, :, :-1], (1, 0)) + p2 - F.pad(p2[:, :-1, :], (0, 0, 1, 0))


# --- the solver ---------------------------------------------------------------------


def _one_scale(
    i0: torch.Tensor,
    i1: torch.Tensor,
    u1: torch.Tensor,
    u2: torch.Tensor,
    *,
    tau: float,
    lambda_: float,
    theta: float,
    warps: int,
    epsilon: float,
    inner: int,
    outer: int,
    median: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    b, h, w = i0.shape
    scaled_eps = epsilon * epsilon * h * w
    l_t = lambda_ * theta
    taut = tau / theta
    tiny = float(np.finfo(np.float32).eps)
    i1x, i1y = centered_gradient(i1)
    stack = torch.stack([i1, i1x, i1y], dim=1)
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=i0.dtype, device=i0.device),
        torch.arange(w, dtype=i0.dtype, device=i0.device),
        indexing="ij",
    )
    p11 = torch.zeros_like(u1)
    p12 = torch.zeros_like(u1)
    p21 = torch.zeros_like(u1)
    p22 = torch.zeros_like(u1)
    for _ in range(warps):
        warped = remap_cubic(stack, xs + u1, ys + u2)
        i1w, i1wx, i1wy = warped[:, 0], warped[:, 1], warped[:, 2]
        grad = i1wx * i1wx + i1wy * i1wy
        rho_c = i1w - i1wx * u1 - i1wy * u2 - i0
        # 1 / |grad I1|^2; where the gradient vanishes the step is moot (it multiplies it)
        inv_grad = 1.0 / grad.clamp(min=tiny)
        active = torch.ones(b, dtype=torch.bool, device=i0.device)
        all_active = True
        for _ in range(outer):
            if median > 1:
                m1, m2 = median5(u1, median), median5(u2, median)
                if all_active:
                    u1, u2 = m1, m2
                else:
                    sel = active.view(b, 1, 1)
                    u1, u2 = torch.where(sel, m1, u1), torch.where(sel, m2, u2)
            for _ in range(inner):
                # thresholding step: v = u + d with d = -rho / |grad|^2 * grad I1, the step
                # clipped to lambda*theta (the three cases of the L1 data term in one clamp)
                rho = rho_c + i1wx * u1 + i1wy * u2
                fi = (rho * inv_grad).clamp_(-l_t, l_t).neg_()
                v1 = u1 + fi * i1wx
                v2 = u2 + fi * i1wy
                n1 = v1 + theta * _divergence(p11, p12)
                n2 = v2 + theta * _divergence(p21, p22)
                err = ((n1 - u1) ** 2 + (n2 - u2) ** 2).sum(dim=(1, 2))
                u1x, u1y = _forward_gradient(n1)
                u2x, u2y = _forward_gradient(n2)
                ng1 = 1.0 + taut * torch.sqrt(u1x * u1x + u1y * u1y)
                ng2 = 1.0 + taut * torch.sqrt(u2x * u2x + u2y * u2y)
                q11 = (p11 + taut * u1x) / ng1
                q12 = (p12 + taut * u1y) / ng1
                q21 = (p21 + taut * u2x) / ng2
                q22 = (p22 + taut * u2y) / ng2
                if all_active:
                    u1, u2, p11, p12, p21, p22 = n1, n2, q11, q12, q21, q22
                else:
                    sel = active.view(b, 1, 1)
                    u1 = torch.where(sel, n1, u1)
                    u2 = torch.where(sel, n2, u2)
                    p11 = torch.where(sel, q11, p11)
                    p12 = torch.where(sel, q12, p12)
                    p21 = torch.where(sel, q21, p21)
                    p22 = torch.where(sel, q22, p22)
                active = active & (err > scaled_eps)
                all_active = bool(active.all())
                if not all_active and not bool(active.any()):
                    break
            if not bool(active.any()):
                break
    return u1, u2


def tvl1_torch(
    prev: torch.Tensor,
    next: torch.Tensor,
    *,
    tau: float = 0.25,
    lambda_: float = 0.15,
    theta: float = 0.3,
    nscales: int = 5,
    warps: int = 5,
    epsilon: float = 0.01,
    inner_iterations: int = 30,
    outer_iterations: int = 10,
    scale_step: float = 0.8,
    median_filtering: int = 5,
) -> torch.Tensor:
    """Dual TV-L1 flow from ``prev`` to ``next`` for a batch of grayscale pairs.

    Parameters
    ----------
    prev, next : torch.Tensor
        ``B x H x W`` float tensors (0..255 scale), same shape, same device.
    tau, lambda_, theta, nscales, warps, epsilon, inner_iterations, outer_iterations,
    scale_step, median_filtering
        As in OpenCV's ``DualTVL1OpticalFlow`` (same defaults). ``median_filtering`` is
        1 (off), 3 or 5.

    Returns
    -------
    torch.Tensor
        ``B x 2 x H x W`` flow (u, v) in pixels: ``next(x + u, y + v) ~ prev(x, y)``.
    """
    if prev.shape != next.shape or prev.dim() != 3:
        raise ValueError(f"prev and next must both be B x H x W, got {tuple(prev.shape)} and {tuple(next.shape)}")
    if not 0 < scale_step < 1:
        raise ValueError(f"scale_step must be in (0, 1), got {scale_step}")
    if median_filtering not in (1, 3, 5):
        raise ValueError(f"median_filtering must be 1, 3 or 5, got {median_filtering}")
    if min(nscales, warps, inner_iterations, outer_iterations) < 1:
        raise ValueError("nscales, warps and the iteration counts must be >= 1")
    dtype = torch.float32
    i0s = [prev.to(dtype)]
    i1s = [next.to(dtype)]
    for _ in range(1, nscales):
        h, w = i0s[-1].shape[-2:]
        size = (round(h * scale_step), round(w * scale_step))
        if size[0] < 16 or size[1] < 16:
            break
        step = (1.0 / scale_step, 1.0 / scale_step)
        i0s.append(resize_linear(i0s[-1], size, step))
        i1s.append(resize_linear(i1s[-1], size, step))
    u1 = torch.zeros_like(i0s[-1])
    u2 = torch.zeros_like(i0s[-1])
    params = dict(
        tau=tau, lambda_=lambda_, theta=theta, warps=warps, epsilon=epsilon,
        inner=inner_iterations, outer=outer_iterations, median=median_filtering,
    )
    for s in range(len(i0s) - 1, -1, -1):
        u1, u2 = _one_scale(i0s[s], i1s[s], u1, u2, **params)
        if s == 0:
            break
        size = tuple(i0s[s - 1].shape[-2:])
        u1 = resize_linear(u1, size) * (1.0 / scale_step)
        u2 = resize_linear(u2, size) * (1.0 / scale_step)
    return torch.stack([u1, u2], dim=1)
