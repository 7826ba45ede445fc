"""The torch TV-L1's building blocks against OpenCV's own functions."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from mertool.preprocess.tvl1_torch import centered_gradient, median5, remap_cubic, resize_linear, tvl1_torch


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
    from test_flow import face_gray, warp_pair

    a0, b0, _ = warp_pair(face_gray(64), 0.7, -0.3)
    a1, b1, _ = warp_pair(face_gray(64), -0.2, 0.5)
    batch = tvl1_torch(torch.tensor(np.stack([a0, a1])).float(), torch.tensor(np.stack([b0, b1])).float())
    one = tvl1_torch(torch.tensor(a1)[None].float(), torch.tensor(b1)[None].float())
    assert batch.shape == (2, 2, 64, 64)
    assert float((batch[1] - one[0]).abs().mean()) < 1e-3
