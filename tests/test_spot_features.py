"""Spotting features against independent references: skimage's LBP, known shifts, landmark geometry."""

import cv2
import numpy as np
import pytest
from skimage import data
from skimage.feature import local_binary_pattern

from conftest import astronaut_face, shifted
from mertool.preprocess import spotting as sp


def _assert_differences_are_ties(image: np.ndarray, mine: np.ndarray, ref: np.ndarray) -> float:
    """Every pixel where the codes differ has a diagonal sample exactly equal to the centre
    (corner == centre and the two side pixels sum to 2 x centre), which skimage's floating
    point may decide either way; returns the fraction of such pixels."""
    g = np.pad(image.astype(int), 1)
    for y, x in np.argwhere(mine != ref):
        c = g[y + 1, x + 1]
        ties = [
            g[y + 1 + dy, x + 1 + dx] == c and g[y + 1 + dy, x + 1] + g[y + 1, x + 1 + dx] == 2 * c
            for dy, dx in ((-1, 1), (-1, -1), (1, -1), (1, 1))
        ]
        assert any(ties), (y, x)
    return float((mine != ref).mean())


@pytest.mark.parametrize(
    "image, most",
    [
        (data.camera(), 1e-3),
        (cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY), 1e-3),
        (np.random.default_rng(0).integers(0, 3, (60, 70)).astype(np.uint8), 1e-2),  # ties everywhere
    ],
)
def test_lbp_codes_equal_skimage_up_to_exact_ties(image, most):
    mine, ref = sp.lbp_codes(image[None])[0], local_binary_pattern(image, 8, 1, "uniform")
    assert _assert_differences_are_ties(image, mine, ref) <= most


def test_lbp_features_are_the_block_histograms_of_the_codes():
    gray = cv2.cvtColor(astronaut_face(120), cv2.COLOR_RGB2GRAY)
    blocks = np.array([[10, 30, 20, 50], [40, 61, 5, 17], [90, 119, 60, 119]])
    feats = sp.lbp_features(np.stack([gray, gray[::-1]]), blocks)
    for t, frame in enumerate((gray, gray[::-1])):
        codes = local_binary_pattern(frame, 8, 1, "uniform").astype(int)
        for b, (y0, y1, x0, x1) in enumerate(blocks):
            hist = np.bincount(codes[y0:y1, x0:x1].ravel(), minlength=10)
            assert np.allclose(feats[t, b], hist / hist.sum())


def test_flow_features_measure_a_known_sub_pixel_shift():
    face = cv2.cvtColor(astronaut_face(224), cv2.COLOR_RGB2GRAY)
    frames = np.stack([shifted(face, 0.4 * k, -0.25 * k) for k in range(4)])
    blocks = np.array([[60 + 40 * i, 100 + 40 * i, 60 + 40 * j, 100 + 40 * j] for i in range(2) for j in range(2)])
    feats = sp.flow_features(frames, blocks)
    assert np.allclose(feats[0], 0.0)  # no predecessor
    assert np.allclose(feats[1:].mean(axis=(0, 1)), [0.4, -0.25], atol=0.05)
    assert np.allclose(feats[1:], [0.4, -0.25], atol=0.2)  # DIS "ultrafast": each block within 0.2 px
    later = sp.flow_features(frames[2:], blocks, previous=frames[1])  # a later chunk of the same video
    assert np.allclose(later, feats[2:], atol=1e-5)


def test_region_blocks_follow_the_landmarks_and_keep_clear_of_the_eyelids():
    from mertool.faces import detect_landmarks

    face = astronaut_face(224)
    landmarks, _ = detect_landmarks(face)
    blocks = sp.region_blocks(landmarks, (224, 224))
    assert ((blocks[:, 0] >= 0) & (blocks[:, 1] <= 224) & (blocks[:, 2] >= 0) & (blocks[:, 3] <= 224)).all()
    assert ((blocks[:, 1] > blocks[:, 0]) & (blocks[:, 3] > blocks[:, 2])).all()
    brows = sp.region_blocks(landmarks, (224, 224), regions=["brows"])
    iod = np.linalg.norm(landmarks[42:48].mean(axis=0) - landmarks[36:42].mean(axis=0))
    assert brows[:, 1].max() <= landmarks[[37, 38, 43, 44], 1].min() - 0.25 * iod + 1
    sides = np.r_[brows[:, 1] - brows[:, 0], brows[:, 3] - brows[:, 2]]
    assert 0.15 * iod <= sides.min() and sides.max() <= 0.4 * iod  # about a quarter of the IOD
    mask = np.zeros((224, 224), int)
    for y0, y1, x0, x1 in brows:
        mask[y0:y1, x0:x1] += 1
    assert mask.max() == 1  # blocks of one region do not overlap
    with pytest.raises(ValueError, match="unknown region"):
        sp.region_blocks(landmarks, (224, 224), regions=["ears"])
