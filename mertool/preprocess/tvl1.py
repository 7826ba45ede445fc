"""Dual TV-L1 optical flow between grayscale frames: the parameters, two backends, frames.

* :class:`.tvl1_params.TVL1Params` -- the one declaration of OpenCV's Dual TV-L1
  parameters and defaults, validated once when the record is made.
* :func:`tvl1` / :func:`tvl1_many` -- flow with the ``opencv`` backend
  (``cv2.optflow.DualTVL1OpticalFlow``, one pair per call, over worker processes) or the
  ``torch`` backend (:func:`.tvl1_torch.tvl1_torch`: batched, CPU or CUDA, numerically
  matched to OpenCV).
* :func:`to_gray`, :func:`prepare_frame` -- frames as the solver wants them.

Pure functions: arrays in, arrays out; problems raise ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..parallel import parallel_map
from .tvl1_params import TVL1Params, check_backend

if TYPE_CHECKING:
    import torch

# --- frames ---------------------------------------------------------------------------


def to_gray(image: np.ndarray) -> np.ndarray:
    """Grayscale uint8 of an RGB/RGBA/gray uint8 image (OpenCV's BT.601 weights)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames, got {image.dtype}")
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[..., 0]
    if image.ndim == 3 and image.shape[2] in (3, 4):
        code = cv2.COLOR_RGB2GRAY if image.shape[2] == 3 else cv2.COLOR_RGBA2GRAY
        return cv2.cvtColor(np.ascontiguousarray(image), code)
    raise ValueError(f"expected an H x W or H x W x 3 frame, got shape {image.shape}")


def prepare_frame(image: np.ndarray, flow_size: int = 0) -> np.ndarray:
    """Resize (bicubic) to ``flow_size`` x ``flow_size`` (0 = keep), then grayscale.

    This is Off-TANet's order: resize the colour frame, then convert to gray.
    """
    image = np.asarray(image)
    if flow_size and image.shape[:2] != (flow_size, flow_size):
        image = cv2.resize(image, (flow_size, flow_size), interpolation=cv2.INTER_CUBIC)
    return to_gray(image)


def _check_pair(prev: np.ndarray, nxt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prev, nxt = to_gray(prev), to_gray(nxt)  # a gray/colour mix becomes gray/gray
    if prev.shape != nxt.shape:
        raise ValueError(f"frames of different sizes: {prev.shape} vs {nxt.shape}")
    if min(prev.shape) < 8:
        raise ValueError(f"frames too small for TV-L1 ({prev.shape}); need at least 8 x 8")
    return prev, nxt


# --- the two backends -----------------------------------------------------------------


def _opencv_flow(prev: np.ndarray, nxt: np.ndarray, p: TVL1Params) -> np.ndarray:
    algo = cv2.optflow.DualTVL1OpticalFlow_create(
        tau=float(p.tau),
        lambda_=float(p.lambda_),
        theta=float(p.theta),
        nscales=int(p.nscales),
        warps=int(p.warps),
        epsilon=float(p.epsilon),
        innnerIterations=int(p.inner_iterations),  # sic: OpenCV's spelling
        outerIterations=int(p.outer_iterations),
        scaleStep=float(p.scale_step),
        gamma=float(p.gamma),
        medianFiltering=int(p.median_filtering),
        useInitialFlow=False,
    )
    return algo.calc(prev, nxt, None).transpose(2, 0, 1)  # 2 x H x W


def _opencv_task(args: tuple[int, np.ndarray, np.ndarray, TVL1Params, int]) -> tuple[int, np.ndarray]:
    idx, prev, nxt, p, threads = args
    if threads > 0:
        cv2.setNumThreads(threads)
    return idx, _opencv_flow(prev, nxt, p)


def _torch_flows(prevs: np.ndarray, nexts: np.ndarray, p: TVL1Params, device: "torch.device", compile: bool) -> np.ndarray:
    import torch

    from . import tvl1_torch as solver  # looked up per call: tests may replace the solver

    a = torch.as_tensor(prevs, dtype=torch.float32, device=device)
    b = torch.as_tensor(nexts, dtype=torch.float32, device=device)
    return solver.tvl1_torch(a, b, p, compile=compile).cpu().numpy()


def tvl1_many(
    prevs: Sequence[np.ndarray],
    nexts: Sequence[np.ndarray],
    *,
    params: TVL1Params | None = None,
    backend: str = "opencv",
    device: "str | torch.device" = "auto",
    jobs: int = 1,
    batch_size: int = 64,
    progress: bool = False,
    compile: bool = False,
) -> np.ndarray:
    """Dual TV-L1 flow for many frame pairs.

    Parameters
    ----------
    prevs, nexts : sequences of uint8 images
        Gray (H x W) or RGB (H x W x 3) frames, at least 8 x 8; each pair gives the flow
        from ``prevs[i]`` to ``nexts[i]``. The torch backend needs one size for all.
    params : TVL1Params, optional
        Solver parameters (default: OpenCV's defaults).
    backend : {"opencv", "torch"}
        ``opencv``: one ``DualTVL1OpticalFlow`` call per pair, over ``jobs`` processes
        (each with one OpenCV thread so the processes do not oversubscribe the cores).
        ``torch``: batches of ``batch_size`` pairs on ``device``.
    device : str or torch.device
        torch backend only: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``
        (:func:`mertool.device.resolve_device`).
    compile : bool
        torch backend only: fuse the solver's iteration with ``torch.compile`` (much
        faster on a GPU after a one-off compilation; see :func:`.tvl1_torch.tvl1_torch`).

    Returns
    -------
    np.ndarray
        N x 2 x H x W float32 flow (u, v) in pixels: ``next(x + u, y + v) ~ prev(x, y)``.

    Raises
    ------
    ValueError
        Unknown backend, gamma != 0 with torch, frames that do not pair up.
    """
    p = params if params is not None else TVL1Params()
    check_backend(backend, p)
    if len(prevs) != len(nexts):
        raise ValueError(f"{len(prevs)} first frames but {len(nexts)} second frames")
    pairs = [_check_pair(a, b) for a, b in zip(prevs, nexts)]
    if not pairs:
        return np.zeros((0, 2, 0, 0), np.float32)
    if backend == "opencv":
        out: list[np.ndarray | None] = [None] * len(pairs)
        threads = 1 if jobs != 1 else 0
        tasks = ((i, a, b, p, threads) for i, (a, b) in enumerate(pairs))
        for i, f in parallel_map(_opencv_task, tasks, jobs=jobs, desc="tvl1", progress=progress):
            out[i] = f
        return np.stack(out).astype(np.float32)
    shapes = {a.shape for a, _ in pairs}
    if len(shapes) > 1:
        raise ValueError(f"frames of different sizes in one batch: {sorted(shapes)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    from ..device import resolve_device

    dev = resolve_device(str(device))
    a = np.stack([x for x, _ in pairs])
    b = np.stack([y for _, y in pairs])
    chunks = [_torch_flows(a[i : i + batch_size], b[i : i + batch_size], p, dev, compile) for i in range(0, len(a), batch_size)]
    return np.concatenate(chunks).astype(np.float32)


def tvl1(
    prev: np.ndarray,
    next: np.ndarray,
    *,
    params: TVL1Params | None = None,
    backend: str = "opencv",
    device: "str | torch.device" = "auto",
) -> np.ndarray:
    """Dual TV-L1 flow from ``prev`` to ``next`` (one pair); see :func:`tvl1_many`.

    Returns
    -------
    np.ndarray
        2 x H x W float32 (u, v).
    """
    return tvl1_many([prev], [next], params=params, backend=backend, device=device)[0]
