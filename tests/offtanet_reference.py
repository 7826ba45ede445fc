"""Off-TANet's input, computed independently of mertool from the published description:
the dataset crop resized to 112 x 112 (bicubic), then gray, OpenCV Dual TV-L1 with its
default parameters, strain from raw 3 x 3 Sobel derivatives with Eq. 4 (or the authors'
code path: u_y^2 in place of v_y^2)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def raw_sobel(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """3 x 3 Sobel written out: reflect-101 border (numpy's "reflect"), no division."""
    p = np.pad(np.asarray(f, np.float64), 1, mode="reflect")
    kx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float64)
    h, w = f.shape
    fx = sum(kx[i, j] * p[i : i + h, j : j + w] for i in range(3) for j in range(3))
    fy = sum(kx.T[i, j] * p[i : i + h, j : j + w] for i in range(3) for j in range(3))
    return fx, fy


def strain(u: np.ndarray, v: np.ndarray, formula: str = "eq4") -> np.ndarray:
    """sqrt(u_x^2 + v_y^2 + (u_y + v_x)^2 / 2) (Eq. 4), or with u_y^2 for v_y^2 ("published")."""
    ux, uy = raw_sobel(u)
    vx, vy = raw_sobel(v)
    second = vy if formula == "eq4" else uy
    return np.sqrt(ux**2 + second**2 + 0.5 * (uy + vx) ** 2)


def features(onset: Path, apex: Path, formula: str = "eq4") -> np.ndarray:
    """3 x 112 x 112 (u, v, strain) from two image files, as the authors' preprocessing does."""
    gray = [
        cv2.cvtColor(cv2.resize(cv2.imread(str(p)), (112, 112), interpolation=cv2.INTER_CUBIC), cv2.COLOR_BGR2GRAY)
        for p in (onset, apex)
    ]
    flow = cv2.optflow.DualTVL1OpticalFlow_create().calc(gray[0], gray[1], None)
    u, v = flow[..., 0], flow[..., 1]
    return np.stack([u, v, strain(u, v, formula)]).astype(np.float32)
