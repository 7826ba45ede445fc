"""The sample record (one row of samples.csv) and frame access.

Frame numbers: in an image folder each file's number is the last integer in its name
(CASME II ``reg_img46.jpg`` -> 46, SAMM ``006_5562.jpg`` -> 5562), falling back to the
1-based position when names carry no number; in a video, the 1-based frame position.
``onset``, ``apex`` and ``offset`` are such numbers. ``apex`` is -1 when unknown.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from .errors import MertoolError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".mpg", ".mpeg", ".wmv"}


@dataclasses.dataclass
class Sample:
    """One micro-expression clip.

    ``frames`` (image folder) or ``video`` (file) locates the pixels; exactly one is set.
    ``aus`` is the sheet's AU string (e.g. ``"4+L10"``); ``apex_source`` tells where the
    apex came from (``sheet``, ``estimated:<method>``, ...).
    """

    sample_id: str
    subject: str
    onset: int
    apex: int
    offset: int
    label: str
    dataset: str = "manifest"
    clip: str = ""
    frames: str = ""
    video: str = ""
    aus: str = ""
    apex_source: str = "sheet"

    def source(self) -> str:
        return self.frames or self.video

    def frame_table(self) -> list[tuple[int, str]]:
        """(frame number, path) pairs in natural order (image folders only)."""
        if not self.frames:
            raise MertoolError(f"sample {self.sample_id}: has a video, not a frames folder")
        return list(_frame_table(self.frames))


SAMPLE_FIELDS = [f.name for f in dataclasses.fields(Sample)]
_INT_FIELDS = ("onset", "apex", "offset")


def natural_key(text: str) -> list:
    """Sort key that orders ``img2`` before ``img10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


@lru_cache(maxsize=256)
def _frame_table(folder: str) -> tuple[tuple[int, str], ...]:
    path = Path(folder)
    if not path.is_dir():
        raise MertoolError(f"{folder}: frames folder not found")
    files = sorted(
        (p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: natural_key(p.name)
    )
    if not files:
        raise MertoolError(f"{folder}: no image files (.jpg/.png/.bmp/.tif) in the frames folder")
    numbers = [re.findall(r"\d+", p.stem) for p in files]
    if all(numbers):
        nums = [int(n[-1]) for n in numbers]
        if len(set(nums)) == len(nums):
            return tuple(zip(nums, map(str, files)))
    return tuple((i + 1, str(p)) for i, p in enumerate(files))


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as RGB uint8 (H x W x 3); grayscale files are replicated to 3 channels."""
    path = Path(path)
    if not path.is_file():
        raise MertoolError(f"{path}: image not found")
    if path.stat().st_size == 0:
        raise MertoolError(f"{path}: image file is empty (0 bytes)")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise MertoolError(f"{path}: unreadable or corrupt image")
    return to_rgb8(img, bgr=True)


def to_rgb8(img: np.ndarray, bgr: bool = False) -> np.ndarray:
    """Any 2-D/3-D image (gray, gray+alpha, BGR(A), RGB) to RGB uint8."""
    if img.dtype != np.uint8:
        scale = 255.0 / 65535.0 if img.dtype == np.uint16 else 1.0
        img = np.clip(img.astype(np.float64) * scale, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    if img.shape[2] == 2:
        return np.repeat(img[:, :, :1], 3, axis=2)
    img = img[:, :, :3]
    return np.ascontiguousarray(img[:, :, ::-1] if bgr else img)


def video_frame_count(path: str | Path) -> int:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise MertoolError(f"{path}: cannot open video")
    count = 0
    while cap.grab():
        count += 1
    cap.release()
    return count


def load_frames(sample: Sample, numbers: list[int]) -> list[np.ndarray]:
    """Load the given frame numbers of a sample as RGB uint8 images.

    Raises
    ------
    MertoolError
        Missing folder/video, a frame number not present, unreadable image.
    """
    wanted = list(numbers)
    if sample.frames:
        table = dict(sample.frame_table())
        missing = [n for n in wanted if n not in table]
        if missing:
            raise MertoolError(
                f"sample {sample.sample_id}: frame(s) {missing[:5]} not in {sample.frames} "
                f"(has {min(table)}..{max(table)})"
            )
        return [read_image(table[n]) for n in wanted]
    if not sample.video:
        raise MertoolError(f"sample {sample.sample_id}: neither frames nor video given")
    if not Path(sample.video).is_file():
        raise MertoolError(f"{sample.video}: video not found (sample {sample.sample_id})")
    cap = cv2.VideoCapture(sample.video)
    if not cap.isOpened():
        raise MertoolError(f"{sample.video}: cannot open video (sample {sample.sample_id})")
    want = set(wanted)
    got: dict[int, np.ndarray] = {}
    number = 0
    while len(got) < len(want):
        ok, frame = cap.read()
        if not ok:
            break
        number += 1
        if number in want:
            got[number] = to_rgb8(frame, bgr=True)
    cap.release()
    missing = [n for n in wanted if n not in got]
    if missing:
        raise MertoolError(
            f"sample {sample.sample_id}: frame(s) {missing[:5]} beyond the end of {sample.video} ({number} frames)"
        )
    return [got[n] for n in wanted]


def clip_numbers(sample: Sample) -> list[int]:
    """Frame numbers from onset to offset inclusive that exist for the sample."""
    if sample.frames:
        return [n for n, _ in sample.frame_table() if sample.onset <= n <= sample.offset]
    return list(range(sample.onset, sample.offset + 1))


def check_keyframes(sample: Sample) -> None:
    """Onset <= apex <= offset (apex -1 = unknown); raises MertoolError naming the sample."""
    s = sample
    if s.onset < 0 or s.offset < 0:
        raise MertoolError(f"sample {s.sample_id}: negative onset/offset ({s.onset}, {s.offset})")
    if s.offset < s.onset:
        raise MertoolError(f"sample {s.sample_id}: offset {s.offset} is before onset {s.onset}")
    if s.apex != -1 and not s.onset <= s.apex <= s.offset:
        raise MertoolError(
            f"sample {s.sample_id}: apex {s.apex} outside onset..offset ({s.onset}..{s.offset})"
        )


def write_samples(samples: list[Sample], path: str | Path) -> Path:
    """Write samples.csv (atomically: a temp file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=SAMPLE_FIELDS)
        writer.writeheader()
        for s in samples:
            writer.writerow(dataclasses.asdict(s))
    tmp.replace(path)
    return path


def read_samples(path: str | Path) -> list[Sample]:
    """Read a samples.csv written by ``mertool index``."""
    path = Path(path)
    if not path.is_file():
        raise MertoolError(f"{path}: samples file not found")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [f for f in ("sample_id", "subject", "onset", "apex", "offset", "label") if f not in header]
        if missing:
            raise MertoolError(f"{path}: not a samples.csv (missing columns {', '.join(missing)}); make one with `mertool index`")
        samples = []
        for line, row in enumerate(reader, start=2):
            values = {k: (row.get(k) or "") for k in SAMPLE_FIELDS if k in row}
            try:
                for k in _INT_FIELDS:
                    values[k] = int(float(values[k]))
            except ValueError:
                raise MertoolError(f"{path}:{line}: onset/apex/offset must be integers") from None
            samples.append(Sample(**values))
    return samples
