"""Shared fixtures: real-face clips written in the generic manifest format."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


def astronaut_face(size: int = 200) -> np.ndarray:
    """A real face (scikit-image's astronaut, public domain) cropped around the head, RGB uint8."""
    from skimage import data

    img = data.astronaut()[20:260, 100:340]  # 240 x 240 around the face
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
    return cv2.warpAffine(image, m, (image.shape[1], image.shape[0]), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def write_clip(folder: Path, frames: list[np.ndarray], first: int = 1, pattern: str = "img{:03d}.png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        img = f if f.ndim == 2 else cv2.cvtColor(f, cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(folder / pattern.format(first + i)), img)
    return folder


def write_manifest(path: Path, rows: list[dict]) -> Path:
    fields = ["sample_id", "subject", "frames", "onset", "apex", "offset", "label"]
    extra = [k for r in rows for k in r if k not in fields]
    fields += list(dict.fromkeys(extra))
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture
def face_clip(tmp_path: Path) -> dict:
    """A 6-frame clip of the astronaut face translating by (0.6, -0.4) px per frame, plus its manifest."""
    face = astronaut_face()
    step = (0.6, -0.4)
    frames = [shifted(face, step[0] * k, step[1] * k) for k in range(6)]
    write_clip(tmp_path / "clips" / "s1_c1", frames)
    manifest = write_manifest(
        tmp_path / "manifest.csv",
        [{"sample_id": "s1_c1", "subject": "s1", "frames": "clips/s1_c1", "onset": 1, "apex": 4, "offset": 6, "label": "surprise"}],
    )
    return {"manifest": manifest, "frames": frames, "step": step, "root": tmp_path}


def run_and_kill(args: list[str], parts_dir: Path, min_shards: int = 2, timeout: float = 120.0) -> bool:
    """Run ``mertool ARGS`` in a subprocess and SIGKILL it once ``parts_dir`` holds
    ``min_shards`` finished shards. Returns True if it was killed mid-stage (False if it
    finished first)."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "mertool", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            if proc.poll() is not None:
                return False
            if parts_dir.is_dir() and len(list(parts_dir.glob("*.npz"))) >= min_shards:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.005)
        raise TimeoutError(f"mertool {' '.join(args)} did not reach {min_shards} shards")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
