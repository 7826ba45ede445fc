"""Make docs/align_crop.png: a tightly cropped real face under each crop policy, drawn as
``mertool align --preview`` draws it (landmarks green, template eyes red, pixels from
outside the frame shaded magenta).

Run from the repository root: ``python docs/make_align_figure.py``. The face is
scikit-image's astronaut (public domain), cropped to 280 x 340 the way CASME II crops.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from skimage import data

from mertool.faces import detect_landmarks
from mertool.preprocess.align import align_clip, similarity_from_eyes, template_eyes, validity_mask, warp
from mertool.preprocess.render import labelled, landmarks_tile, shade_invalid

SIZE = 160
OPTIONS = {"size": SIZE, "margin": 0.1, "detector": "hog", "upsample": 1, "interpolation": "cubic"}


def tile(frame: np.ndarray, valid: np.ndarray, landmarks: np.ndarray, eyes: np.ndarray, text: str) -> np.ndarray:
    shown = landmarks_tile([shade_invalid(frame, valid)], landmarks, eyes, f"{valid.mean():.0%} valid")
    return labelled(shown, text)


def main() -> Path:
    face = cv2.resize(data.astronaut()[60:183, 174:275], (280, 340), interpolation=cv2.INTER_CUBIC)
    landmarks, _ = detect_landmarks(face)
    eyes = template_eyes(SIZE, OPTIONS["margin"])
    before = similarity_from_eyes(landmarks, SIZE, OPTIONS["margin"])
    old = warp(face, before, SIZE)
    old_landmarks = landmarks @ before[:, :2].T + before[:, 2]
    tiles = [tile(old, validity_mask(before, face.shape[:2], SIZE), old_landmarks, eyes, "before: eye template")]
    for crop, text in (("similarity", "--crop similarity"), ("none", "--crop none (casme2)")):
        out = align_clip([face], crop=crop, **OPTIONS)
        marks = eyes if crop == "similarity" else np.zeros((0, 2))
        tiles.append(tile(out["frames"][0], out["valid"], out["landmarks"], marks, text))
    source = labelled(cv2.resize(face, (round(SIZE * 280 / 340), SIZE), interpolation=cv2.INTER_AREA), "280 x 340 crop")
    gap = np.full((tiles[0].shape[0], 6, 3), 255, np.uint8)
    row = np.hstack([x for t in [source, *tiles] for x in (t, gap)][:-1])
    path = Path(__file__).with_name("align_crop.png")
    cv2.imwrite(str(path), cv2.cvtColor(row, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return path


if __name__ == "__main__":
    print(main())
