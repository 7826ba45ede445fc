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
import warnings
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from .tvl1_params import TVL1Params, check_backend

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


def remap_cubic(images: torch.Tensor, map_x: torch.Tensor, map_y: torch.Tensor, method: str = "gather") -> torch.Tensor:
    """Sample ``images`` (B x C x H x W) at (map_x, map_y) (B x H x W each), bicubic.

    Matches ``cv2.remap(..., INTER_CUBIC)`` with float maps and its default border
    (constant 0): taps outside the image count as 0. (OpenCV 5 samples at the exact float
    position; older releases rounded it to 1/32 px.)

    ``method="gather"`` evaluates the 16 taps explicitly; ``"grid_sample"`` uses
    ``F.grid_sample`` (the same a = -0.75 kernel and zero border, one fused kernel, 3x
    faster on a CPU and far fewer launches on a GPU). It runs in float64 on a zero-padded
    power-of-two canvas: in float32 the round trip through grid_sample's normalised
    coordinates moves samples by ~1e-5 px, enough to turn identical frames into a
    nonzero flow over the pyramid; this way it is exact, and integer positions return
    the pixels bit for bit. Both are within 2e-4 of OpenCV on the 0..255 scale.
    """
    big = float(1 << 20)  # keep float->index conversions safe for wild flows
    x = map_x.clamp(-big, big)
    y = map_y.clamp(-big, big)
    b, c, h, w = images.shape
    if method == "grid_sample":
        # align_corners=True: -1 and 1 are the centres of the first and last pixels
        # zero-pad to power-of-two sides (outside is zero anyway): then the normalised
        # coordinates and grid_sample's way back, (g + 1) * size / 2 - 0.5, are exact in
        # float64, so integer positions land exactly on pixels
        sw, sh = 1 << (w - 1).bit_length(), 1 << (h - 1).bit_length()
        src = F.pad(images.double(), (0, sw - w, 0, sh - h))
        grid = torch.stack([(2.0 * x.double() + 1.0) / sw - 1.0, (2.0 * y.double() + 1.0) / sh - 1.0], dim=-1)
        out = F.grid_sample(src, grid, mode="bicubic", padding_mode="zeros", align_corners=False)
        return out.to(images.dtype)
    if method != "gather":
        raise ValueError(f"method must be 'gather' or 'grid_sample', got {method!r}")
    pad = 2
    padded = F.pad(images, (pad, pad, pad, pad))  # zeros outside
    hp, wp = h + 2 * pad, w + 2 * pad
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


@lru_cache(maxsize=8)
def _median_network(n: int) -> tuple[tuple[int, int, bool, bool], ...]:
    """Compare-exchange steps that leave the median of ``n`` values at index ``n // 2``.

    Batcher's odd-even merge sort for the next power of two (the padding entries act as
    +inf and drop out), pruned backwards to the steps the median depends on. Each step
    ``(a, b, keep_min, keep_max)`` puts min at ``a`` and max at ``b``.
    """
    m = 1 << (n - 1).bit_length()
    steps = []
    p = 1
    while p < m:
        k = p
        while k >= 1:
            for j in range(k % p, m - k, 2 * k):
                for i in range(min(k, m - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        steps.append((i + j, i + j + k))
            k //= 2
        p *= 2
    needed = {n // 2}
    kept = []
    for a, b in reversed([s for s in steps if s[1] < n]):
        lo, hi = a in needed, b in needed
        if lo or hi:
            kept.append((a, b, lo, hi))
            needed |= {a, b}
    return tuple(reversed(kept))


def centered_gradient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences with replicated borders (halved one-sided at the edges)."""
    p = F.pad(x.unsqueeze(1), (1, 1, 1, 1), mode="replicate").squeeze(1)
    gx = 0.5 * (p[:, 1:-1, 2:] - p[:, 1:-1, :-2])
    gy = 0.5 * (p[:, 2:, 1:-1] - p[:, :-2, 1:-1])
    return gx, gy


# --- the solver ---------------------------------------------------------------------
#
# The iteration is written twice, with the same arithmetic: as pure functions of tensors
# (no argument modified, no host synchronisation) for torch.compile to fuse into a few
# kernels, and as in-place eager functions writing into buffers allocated once per
# pyramid level (2-3x faster than the pure ones when run eagerly: fewer passes over
# memory, no allocations). Per-pair convergence lives in a boolean ``active`` mask on
# the device; stopped pairs are carried along unchanged, and the host only asks "has
# every pair stopped?" every ``check_every`` inner iterations.


def _forward_gradient_pure(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences of (..., H, W), zero in the last column / row."""
    gx = F.pad(u[..., :, 1:] - u[..., :, :-1], (0, 1))
    gy = F.pad(u[..., 1:, :] - u[..., :-1, :], (0, 0, 0, 1))
    return gx, gy


def _divergence_pure(px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Backward differences with p = 0 before the first column / row (minus the adjoint
    of the forward gradient)."""
    return (px + py) - F.pad(px[..., :, :-1], (1, 0)) - F.pad(py[..., :-1, :], (0, 0, 1, 0))


def inner_step(
    u: torch.Tensor,
    px: torch.Tensor,
    py: torch.Tensor,
    gI: torch.Tensor,
    rho_c: torch.Tensor,
    inv_grad: torch.Tensor,
    active: torch.Tensor,
    l_t: float,
    theta: float,
    taut: float,
    eps_sq: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One primal-dual iteration of Dual TV-L1 for a batch; stopped pairs are left as they are.

    Parameters
    ----------
    u, px, py : torch.Tensor
        B x 2 x H x W flow and dual fields (``px``: x-components for u1, u2; ``py``:
        y-components).
    gI : torch.Tensor
        B x 2 x H x W gradient of the second image warped by the current warp's flow.
    rho_c, inv_grad : torch.Tensor
        B x 1 x H x W constant part of the linearised residual and ``1 / |gI|^2``.
    active : torch.Tensor
        B booleans: pairs still iterating.
    l_t, theta, taut, eps_sq : float
        ``lambda * theta``, ``theta``, ``tau / theta`` and ``epsilon^2``: a pair stops
        when the summed squared change of u is at most ``epsilon^2 * H * W`` (the
        threshold is formed here from the shape, so one compiled graph serves every
        pyramid level).

    Returns
    -------
    tuple of torch.Tensor
        New ``(u, px, py, active)``: the updated state where ``active`` was True, the old
        one elsewhere, and ``active`` cleared for the pairs whose change of u fell to
        the threshold or below in this iteration (OpenCV's per-iteration stopping test).
    """
    # thresholding step: v = u + d with d = -rho / |grad|^2 * grad I1, the step clipped to
    # lambda*theta (the three cases of the L1 data term in one clamp); then the
    # semi-implicit u update with the divergence of the dual field
    rho = rho_c + (gI * u).sum(1, keepdim=True)
    fi = (rho * inv_grad).clamp(-l_t, l_t)
    n = u - fi * gI + theta * _divergence_pure(px, py)
    err = (n - u).square().sum(dim=(1, 2, 3))
    # projected dual ascent on the forward gradient of the new u
    ux, uy = _forward_gradient_pure(n)
    ng = torch.sqrt(ux * ux + uy * uy) * taut + 1.0
    qx = (px + taut * ux) / ng
    qy = (py + taut * uy) / ng
    sel = active.view(-1, 1, 1, 1)
    eps2 = eps_sq * (u.shape[-2] * u.shape[-1])
    return torch.where(sel, n, u), torch.where(sel, qx, px), torch.where(sel, qy, py), active & (err > eps2)


def _make_median_update(k: int):
    net = _median_network(k * k)  # built here, outside anything torch.compile traces

    def median_update(u: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """k x k median of each flow component, applied to the active pairs only (pure)."""
        b, c, h, w = u.shape
        r = k // 2
        padded = F.pad(u.reshape(b * c, 1, h, w), (r, r, r, r), mode="replicate").reshape(b * c, h + 2 * r, w + 2 * r)
        v = [padded[:, i : i + h, j : j + w] for i in range(k) for j in range(k)]
        for a, bb, lo, hi in net:
            va, vb = v[a], v[bb]
            if lo:
                v[a] = torch.minimum(va, vb)
            if hi:
                v[bb] = torch.maximum(va, vb)
        m = v[(k * k) // 2].reshape(b, c, h, w)
        return torch.where(active.view(-1, 1, 1, 1), m, u)

    return median_update


class _Workspace:
    """Buffers of one pyramid level for the in-place eager iteration."""

    def __init__(self, u: torch.Tensor) -> None:
        b, c, h, w = u.shape
        self.r = u.new_empty(b, 1, h, w)
        self.t = torch.empty_like(u)
        self.n = torch.empty_like(u)
        self.d = torch.empty_like(u)
        self.ng = torch.empty_like(u)
        self.ux = torch.zeros_like(u)  # the last column / row stays 0
        self.uy = torch.zeros_like(u)
        self.pool: list[torch.Tensor] = []  # spare b*c x h x w buffers for the median


def inner_step_(
    u: torch.Tensor,
    px: torch.Tensor,
    py: torch.Tensor,
    gI: torch.Tensor,
    rho_c: torch.Tensor,
    inv_grad: torch.Tensor,
    active: torch.Tensor,
    l_t: float,
    theta: float,
    taut: float,
    eps_sq: float,
    ws: _Workspace,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`inner_step` updating ``u``, ``px``, ``py`` in place (buffers from ``ws``)."""
    r, t, n, d, ng, ux, uy = ws.r, ws.t, ws.n, ws.d, ws.ng, ws.ux, ws.uy
    sel = active.view(-1, 1, 1, 1)
    torch.mul(gI, u, out=t)
    torch.sum(t, 1, keepdim=True, out=r)
    r.add_(rho_c).mul_(inv_grad).clamp_(-l_t, l_t)  # the clipped step fi
    torch.add(px, py, out=d)  # divergence of (px, py)
    d[..., :, 1:] -= px[..., :, :-1]
    d[..., 1:, :] -= py[..., :-1, :]
    torch.addcmul(u, r, gI, value=-1.0, out=n)
    n.add_(d, alpha=theta)
    err = torch.sub(n, u, out=t).square_().sum(dim=(1, 2, 3))
    torch.where(sel, n, u, out=u)
    # forward gradient of the new u (equal to n for the active pairs; the dual update of
    # the stopped ones is switched off below through their step size 0)
    torch.sub(u[..., :, 1:], u[..., :, :-1], out=ux[..., :, :-1])
    torch.sub(u[..., 1:, :], u[..., :-1, :], out=uy[..., :-1, :])
    tm = sel.to(u.dtype) * taut
    torch.mul(ux, ux, out=ng).addcmul_(uy, uy).sqrt_().mul_(tm).add_(1.0)
    px.addcmul_(ux, tm).div_(ng)  # px + 0 * ux = px, / 1: exactly unchanged when stopped
    py.addcmul_(uy, tm).div_(ng)
    return u, px, py, active & (err > eps_sq * (u.shape[-2] * u.shape[-1]))


def _make_median_update_(k: int):
    net = _median_network(k * k)

    def median_update_(u: torch.Tensor, active: torch.Tensor, ws: _Workspace) -> torch.Tensor:
        """:func:`median_update` writing into ``u`` and reusing buffers from ``ws``."""
        b, c, h, w = u.shape
        r = k // 2
        padded = F.pad(u.reshape(b * c, 1, h, w), (r, r, r, r), mode="replicate").reshape(b * c, h + 2 * r, w + 2 * r)
        v = [padded[:, i : i + h, j : j + w] for i in range(k) for j in range(k)]
        own = [False] * len(v)  # v[i] is a buffer of ours (not a view of padded)
        pool = ws.pool

        def buf() -> torch.Tensor:
            return pool.pop() if pool else u.new_empty(b * c, h, w)

        for a, bb, lo, hi in net:
            va, vb = v[a], v[bb]
            if lo and hi:
                mn = torch.minimum(va, vb, out=buf())
                if own[bb]:
                    torch.maximum(va, vb, out=vb)
                else:
                    v[bb], own[bb] = torch.maximum(va, vb, out=buf()), True
                if own[a]:
                    pool.append(va)
                v[a], own[a] = mn, True
            elif lo:
                if own[a]:
                    torch.minimum(va, vb, out=va)
                else:
                    v[a], own[a] = torch.minimum(va, vb, out=buf()), True
            elif hi:
                if own[bb]:
                    torch.maximum(va, vb, out=vb)
                else:
                    v[bb], own[bb] = torch.maximum(va, vb, out=buf()), True
        m = v[(k * k) // 2].view(b, c, h, w)
        torch.where(active.view(-1, 1, 1, 1), m, u, out=u)
        pool.extend(x for x, o in zip(v, own) if o)
        return u

    return median_update_


def warp_setup(
    stack: torch.Tensor, i0: torch.Tensor, u: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor, remap: str = "grid_sample"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Linearise the data term around the current flow (once per warp).

    ``stack`` is B x 3 x H x W (I1 and its centred gradient); returns ``gI`` (B x 2 x H x W,
    the gradient sampled at x + u), ``rho_c = I1(x + u) - gI . u - I0`` and
    ``1 / |gI|^2`` (B x 1 x H x W each; where the gradient vanishes the step it scales is
    moot, so the square is clamped to float32's epsilon).
    """
    warped = remap_cubic(stack, xs + u[:, 0], ys + u[:, 1], method=remap)
    gI = warped[:, 1:3].contiguous()
    grad = (gI * gI).sum(1, keepdim=True)
    rho_c = warped[:, :1] - (gI * u).sum(1, keepdim=True) - i0.unsqueeze(1)
    inv_grad = 1.0 / grad.clamp(min=_TINY)
    return gI, rho_c, inv_grad


_TINY = float(np.finfo(np.float32).eps)


class _Compiled:
    """``torch.compile(fn)`` that falls back to ``fn`` (warning once) when compiling or
    running the compiled code fails, e.g. on a machine without a working compiler.

    Shapes are compiled as dynamic: one compilation serves every pyramid level and batch
    size (with static shapes each (level, batch) pair would be compiled anew, minutes of
    compilation for a run over several batch sizes). torch specialises sizes of 1 and
    sizes equal to another dimension, so :func:`tvl1_torch` passes no batch of 1 or 2
    here. (Graphs first compiled for a batch equal to the image side, e.g. 112 pairs
    of 112 x 112, are specialised to that and compiled once more for other batches.)
    """

    def __init__(self, fn, name: str) -> None:
        self.fn = fn
        self.name = name
        self.compiled = None
        self.broken = False

    def __call__(self, *args):
        if not self.broken:
            try:
                if self.compiled is None:
                    self.compiled = torch.compile(self.fn, dynamic=True, fullgraph=True)
                return self.compiled(*args)
            except torch.cuda.OutOfMemoryError:
                raise  # not the compiler's fault: eager would not fit either
            except Exception as exc:  # noqa: BLE001 -- any compiler failure: stay correct, run eagerly
                self.broken = True
                msg = str(exc).strip().splitlines()
                warnings.warn(
                    f"tvl1_torch: torch.compile of {self.name} failed ({type(exc).__name__}: "
                    f"{msg[0] if msg else ''}); running it eagerly",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return self.fn(*args)


_KERNELS: dict[tuple[int, bool], tuple] = {}


def _kernels(median: int, compile: bool) -> tuple:
    """``(median_update or None, step, in_place)`` for the solver, cached per process (so
    compiled code is reused by later calls): the in-place eager functions, or the pure
    ones through torch.compile."""
    key = (median, compile)
    if key not in _KERNELS:
        if compile:
            _raise_recompile_limit()
            med = _Compiled(_make_median_update(median), f"the {median}x{median} median") if median > 1 else None
            _KERNELS[key] = (med, _Compiled(inner_step, "the inner iteration"), False)
        else:
            _KERNELS[key] = (_make_median_update_(median) if median > 1 else None, inner_step_, True)
    return _KERNELS[key]


def compile_fallbacks() -> list[str]:
    """Names of the compiled solver functions that fell back to eager execution in this
    process (empty when ``compile=True`` worked or was never used)."""
    return [k.name for key, ks in _KERNELS.items() if key[1] for k in ks[:2] if isinstance(k, _Compiled) and k.broken]


def _raise_recompile_limit(limit: int = 64) -> None:
    # past dynamo's per-function limit (8) a new specialisation silently runs eagerly
    cfg = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(cfg, name) and getattr(cfg, name) < limit:
            setattr(cfg, name, limit)


def _one_scale(
    i0: torch.Tensor,
    i1: torch.Tensor,
    u: torch.Tensor,
    *,
    tau: float,
    lambda_: float,
    theta: float,
    warps: int,
    epsilon: float,
    inner: int,
    outer: int,
    median: int,
    check_every: int,
    remap: str,
    kernels: tuple,
) -> torch.Tensor:
    """Refine the flow ``u`` (B x 2 x H x W) at one pyramid level."""
    median_update, step, in_place = kernels
    b, h, w = i0.shape
    eps_sq = float(epsilon * epsilon)
    l_t = float(lambda_ * theta)
    taut = float(tau / theta)
    theta = float(theta)
    i1x, i1y = centered_gradient(i1)
    stack = torch.stack([i1, i1x, i1y], dim=1)
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=i0.dtype, device=i0.device),
        torch.arange(w, dtype=i0.dtype, device=i0.device),
        indexing="ij",
    )
    px = torch.zeros_like(u)
    py = torch.zeros_like(u)
    ws = (_Workspace(u),) if in_place else ()  # the in-place functions' extra argument
    for _ in range(warps):
        gI, rho_c, inv_grad = warp_setup(stack, i0, u, xs, ys, remap)
        active = torch.ones(b, dtype=torch.bool, device=i0.device)
        for _ in range(outer):
            if median_update is not None:
                u = median_update(u, active, *ws)
            for it in range(1, inner + 1):
                u, px, py, active = step(u, px, py, gI, rho_c, inv_grad, active, l_t, theta, taut, eps_sq, *ws)
                # the only host synchronisation: stop the whole batch once every pair has
                # stopped (a stopped pair is already frozen by the mask)
                if (it % check_every == 0 or it == inner) and not bool(active.any()):
                    break
            else:
                continue
            break
    return u


@torch.no_grad()
def tvl1_torch(
    prev: torch.Tensor,
    next: torch.Tensor,
    params: TVL1Params | None = None,
    *,
    compile: bool = False,
    check_every: int | None = None,
    remap: str = "grid_sample",
) -> torch.Tensor:
    """Dual TV-L1 flow from ``prev`` to ``next`` for a batch of grayscale pairs.

    Parameters
    ----------
    prev, next : torch.Tensor
        ``B x H x W`` float tensors (0..255 scale), same shape, same device.
    params : TVL1Params, optional
        OpenCV's ``DualTVL1OpticalFlow`` parameters (default: its defaults);
        ``gamma`` must be 0 (no illumination term here).
    compile : bool
        Run the median filter and the inner iteration through ``torch.compile`` (fused
        kernels instead of ~25 and ~200 small ones: much faster on a GPU, after a
        one-off compilation of tens of seconds per process). Falls back to eager
        execution, with a warning, when compilation fails. Each step equals its eager
        counterpart to float rounding; over thousands of iterations such differences
        grow to ~0.01-0.02 px mean EPE between the flows, as much as either differs
        from OpenCV's. Batches of 1 or 2 pairs are padded to 3 (see below).
    check_every : int, optional
        Inner iterations between the host's "have all pairs stopped?" checks (each is a
        device synchronisation). Every pair still stops exactly where OpenCV would; this
        only delays the exit of the whole batch. Default 1 on CPU (a check costs nothing
        there), 4 on other devices.
    remap : {"grid_sample", "gather"}
        Bicubic warping implementation (:func:`remap_cubic`); ``gather`` is the slower,
        tap-by-tap one.

    Returns
    -------
    torch.Tensor
        ``B x 2 x H x W`` flow (u, v) in pixels: ``next(x + u, y + v) ~ prev(x, y)``.
    """
    p = params if params is not None else TVL1Params()
    check_backend("torch", p)
    if prev.shape != next.shape or prev.dim() != 3:
        raise ValueError(f"prev and next must both be B x H x W, got {tuple(prev.shape)} and {tuple(next.shape)}")
    if prev.device != next.device:
        raise ValueError(f"prev and next must be on one device, got {prev.device} and {next.device}")
    if check_every is None:
        check_every = 1 if prev.device.type == "cpu" else 4
    if check_every < 1:
        raise ValueError(f"check_every must be >= 1, got {check_every}")
    if remap not in ("grid_sample", "gather"):
        raise ValueError(f"remap must be 'grid_sample' or 'gather', got {remap!r}")
    if compile and prev.shape[0] < 3:
        # torch.compile specialises a dimension of size 1, and one equal to another
        # (a batch of 2 to the 2 flow components): either would cost another compilation.
        # Padded to 3 pairs (copies of the first) the batch shares the general graph.
        pad = [0] * (3 - prev.shape[0])
        both = torch.cat([prev, prev[pad]]), torch.cat([next, next[pad]])
        return tvl1_torch(*both, p, compile=True, check_every=check_every, remap=remap)[: prev.shape[0]]
    dtype = torch.float32
    i0s = [prev.to(dtype).contiguous()]
    i1s = [next.to(dtype).contiguous()]
    for _ in range(1, int(p.nscales)):
        h, w = i0s[-1].shape[-2:]
        size = (round(h * p.scale_step), round(w * p.scale_step))
        if size[0] < 16 or size[1] < 16:
            break
        step = (1.0 / p.scale_step, 1.0 / p.scale_step)
        i0s.append(resize_linear(i0s[-1], size, step))
        i1s.append(resize_linear(i1s[-1], size, step))
    # u is the solver's own tensor throughout (the eager functions update it in place)
    u = torch.zeros((i0s[-1].shape[0], 2, *i0s[-1].shape[-2:]), dtype=dtype, device=prev.device)
    median = int(p.median_filtering)
    level = dict(
        tau=p.tau, lambda_=p.lambda_, theta=p.theta, warps=int(p.warps), epsilon=p.epsilon,
        inner=int(p.inner_iterations), outer=int(p.outer_iterations), median=median,
        check_every=int(check_every), remap=remap, kernels=_kernels(median, bool(compile)),
    )
    for s in range(len(i0s) - 1, -1, -1):
        u = _one_scale(i0s[s], i1s[s], u, **level)
        if s == 0:
            break
        u = resize_linear(u, tuple(i0s[s - 1].shape[-2:])) * (1.0 / p.scale_step)
    return u
