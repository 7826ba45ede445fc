"""A real face cropped tightly, the way the datasets crop (CASME II ``Cropped``, SAMM crops),
with a known sub-pixel motion inside the face: the fixture of the crop-policy tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mertool.samples import Sample, write_samples

W, H = 280, 340  # the size of a CASME II crop
MOTION = (0.8, -0.5)  # px of the 280 x 340 frame, inside the face (|d| = 0.94 px)
NOISE = 2.0  # sensor noise, grey levels


def tight_face() -> np.ndarray:
    """scikit-image's astronaut (public domain), cropped so the face fills ~90 % of a
    280 x 340 frame (hair to chin, ear to ear), RGB uint8."""
    from skimage import data

    return cv2.resize(data.astronaut()[60:183, 174:275], (W, H), interpolation=cv2.INTER_CUBIC)


def _ellipse_radius(rx: float, ry: float) -> np.ndarray:
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    return np.sqrt(((xs - W / 2) / (rx * W)) ** 2 + ((ys - H / 2) / (ry * H)) ** 2)


def motion_weight() -> np.ndarray:
    """H x W weight of the motion: 1 on the inner face (eyes, brows, nose, mouth), a smooth
    step to 0 around it, 0 on the face outline and beyond."""
    t = np.clip((1.12 - _ellipse_radius(0.28, 0.30)) / 0.12, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def outside_face() -> np.ndarray:
    """H x W float: 1 outside the face outline (hair, neck, background), else 0."""
    return (_ellipse_radius(0.45, 0.47) > 1).astype(np.float32)


def moved(image: np.ndarray, fraction: float) -> np.ndarray:
    """``image`` with ``fraction`` of :data:`MOTION` applied: next(q) = image(q - d(q))."""
    w = (motion_weight() * fraction).astype(np.float32)
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    return cv2.remap(image, xs - MOTION[0] * w, ys - MOTION[1] * w, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def tight_clip(n: int = 3, seed: int = 0) -> list[np.ndarray]:
    """``n`` frames: the motion grows linearly from 0 (onset) to :data:`MOTION` (apex = last);
    every frame gets its own sensor noise."""
    rng = np.random.default_rng(seed)
    face = tight_face().astype(np.float64)
    frames = [moved(face, k / (n - 1)) for k in range(n)]
    return [np.clip(f + rng.normal(0, NOISE, f.shape), 0, 255).round().astype(np.uint8) for f in frames]


def write_frames(folder: Path, frames: list[np.ndarray]) -> Path:
    """PNG frames ``reg_img1.png ...`` (lossless, CASME II-like names)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames, start=1):
        cv2.imwrite(str(folder / f"reg_img{i}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return folder


def write_clips(root: Path, clips: dict[str, list[np.ndarray]], dataset: str = "casme2") -> Path:
    """samples.csv (as ``mertool index`` writes it) for clips of one ``dataset``; onset is
    the first frame, apex and offset the last."""
    samples = []
    for sid, frames in clips.items():
        folder = write_frames(root / sid, frames)
        n = len(frames)
        samples.append(Sample(sid, "sub01", 1, n, n, "surprise", dataset=dataset, clip=sid, frames=str(folder)))
    return write_samples(samples, root / "samples.csv")


def in_aligned(source_map: np.ndarray, transform: np.ndarray, size: int, outside_value: float) -> np.ndarray:
    """A map of the source frame carried into the aligned crop (``outside_value`` where the
    crop reaches past the frame)."""
    return cv2.warpAffine(
        source_map.astype(np.float32), transform, (size, size), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=outside_value,
    )
