"""The sample record (one row of samples.csv) and frame access.

Frame numbers: in an image folder each file's number is the last integer in its name
(CASME II ``reg_img46.jpg`` -> 46, SAMM ``006_5562.jpg`` -> 5562), falling back to the
1-based position when names carry no number; in a video, the 1-based frame position.
``onset``, ``apex`` and ``offset`` are such numbers. ``apex`` is -1 when unknown.

Frames are read strictly: a JPEG without its end-of-image marker, a PNG without its
``IEND`` chunk, and any message the native decoders (libjpeg, libpng, FFmpeg) print while
decoding (a CRC error, "Premature end of JPEG file", a broken video frame) fail the read
with the file's name, so a partly grey image is never used as a frame. A few messages
that do not affect the pixels (:data:`BENIGN_DECODER_MESSAGES`) are let through.

A clip's :func:`fingerprint` identifies its pixels for the stage files' content-aware
keys: the name, size and modification time of each frame file (cheap), plus a hash of
their bytes when ``MERTOOL_VERIFY_CONTENT`` is set (``mertool --verify-content``).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import math
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import cv2
import numpy as np

from .errors import MertoolError
from .io import atomic_write_text, writable_folder

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

#: Decoder messages that do not mean damaged pixels (colour-profile notes, a libjpeg
#: note on harmless SOS parameters); CRC errors are never benign.
BENIGN_DECODER_MESSAGES = (
    re.compile(r"Invalid SOS parameters for sequential JPEG"),
    re.compile(r"^libpng warning: (iCCP|sRGB|cHRM|gAMA):(?!.*CRC)"),
)
#: Set (to anything but "" or "0") to fingerprint clips by a hash of their bytes.
VERIFY_CONTENT_ENV = "MERTOOL_VERIFY_CONTENT"


def natural_key(text: str) -> list:
    """Sort key that orders ``img2`` before ``img10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


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
    """Read an image as RGB uint8 (H x W x 3); grayscale files are replicated to 3 channels.

    Raises
    ------
    MertoolError
        Missing, empty, truncated or corrupt file (see the module docstring), naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise MertoolError(f"{path}: image not found")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MertoolError(f"{path}: cannot read the image ({exc.strerror or exc})") from None
    if not data:
        raise MertoolError(f"{path}: image file is empty (0 bytes)")
    problem = _truncation(data)
    if problem:
        raise MertoolError(f"{path}: {problem}; the file is incomplete, replace it")
    with decoder_messages() as messages:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if messages:
        raise MertoolError(f"{path}: corrupt image (decoder: {messages[0]})")
    if img is None:
        raise MertoolError(f"{path}: unreadable or corrupt image")
    return to_rgb8(img, bgr=True)


def _truncation(data: bytes) -> str:
    """What shows a JPEG or PNG file cut short ("" if nothing does)."""
    if data.startswith(b"\xff\xd8"):
        # the image data follows the last start-of-scan marker; the end marker must come after it
        if data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
            return "truncated JPEG (no end-of-image marker after the image data)"
    elif data.startswith(b"\x89PNG") and b"IEND" not in data[-12:]:
        return "truncated PNG (no IEND chunk at the end)"
    return ""


_SINK: tuple[int, IO[bytes]] | None = None


@contextlib.contextmanager
def decoder_messages() -> Iterator[list[str]]:
    """Collect what native decoders print to stderr (file descriptor 2) meanwhile.

    Yields a list that holds, once the block ends, the messages other than
    :data:`BENIGN_DECODER_MESSAGES`. Python-level writes to ``sys.stderr`` in the block
    (there should be none: keep it to the decoding call) would be collected as well.
    """
    global _SINK
    messages: list[str] = []
    if _SINK is None or _SINK[0] != os.getpid():  # one scratch file per process
        _SINK = (os.getpid(), tempfile.TemporaryFile())
    sink = _SINK[1]
    sink.seek(0)
    sink.truncate()
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(sink.fileno(), 2)
    try:
        yield messages
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        sink.seek(0)
        lines = sink.read().decode(errors="replace").splitlines()
        messages.extend(
            line.strip() for line in lines if line.strip() and not any(b.search(line) for b in BENIGN_DECODER_MESSAGES)
        )


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
    got, number = _read_video(sample, set(wanted))
    missing = [n for n in wanted if n not in got]
    if missing:
        raise MertoolError(
            f"sample {sample.sample_id}: frame(s) {missing[:5]} beyond the end of {sample.video} ({number} frames)"
        )
    return [got[n] for n in wanted]


def _read_video(sample: Sample, want: set[int]) -> tuple[dict[int, np.ndarray], int]:
    """The wanted frames of a sample's video (number -> RGB) and how many frames were read.

    Raises
    ------
    MertoolError
        The video cannot be opened, or the decoder reported a broken frame.
    """
    got: dict[int, np.ndarray] = {}
    number = 0
    with decoder_messages() as messages:
        cap = cv2.VideoCapture(sample.video)
        while cap.isOpened() and len(got) < len(want):
            ok, frame = cap.read()
            if not ok:
                break
            number += 1
            if number in want:
                got[number] = to_rgb8(frame, bgr=True)
        opened = cap.isOpened()
        cap.release()
    if not opened:
        raise MertoolError(f"{sample.video}: cannot open video (sample {sample.sample_id})")
    if messages:
        raise MertoolError(
            f"{sample.video}: a frame fails to decode near frame {number} (decoder: {messages[0]}); "
            f"sample {sample.sample_id} is not used"
        )
    return got, number


def fingerprint(sample: Sample, content: bool | None = None) -> str:
    """Identity of a clip's pixels, for content-aware stage keys (see :func:`same_content`).

    Parameters
    ----------
    sample : Sample
    content : bool, optional
        Also hash every byte of the frame files; by default when ``MERTOOL_VERIFY_CONTENT``
        is set.

    Returns
    -------
    str
        ``STAT`` (a hash of each frame file's name, size and ``st_mtime_ns``) or
        ``STAT/CONTENT``; ``""`` when the frames cannot be listed (moved or deleted).
    """
    if content is None:
        content = os.environ.get(VERIFY_CONTENT_ENV, "") not in ("", "0")
    try:
        files = [Path(p) for _, p in sample.frame_table()] if sample.frames else [Path(sample.video)]
        stat, full = hashlib.sha256(), hashlib.sha256()
        for f in files:
            info = f.stat()
            stat.update(f"{f.name}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
            if content:
                full.update(f.name.encode() + b"\0" + f.read_bytes())
    except (MertoolError, OSError):
        return ""
    return stat.hexdigest()[:16] + (f"/{full.hexdigest()[:32]}" if content else "")


def clip_fingerprints(samples: Iterable[Sample]) -> dict[str, str]:
    """``{sample_id: fingerprint}`` of every sample (the ``fingerprints`` of a StageWriter)."""
    return {s.sample_id: fingerprint(s) for s in samples}


def same_content(old: str, new: str) -> bool:
    """Whether two fingerprints mean the same pixels.

    Content hashes decide when both carry one; else the cheap parts do. An empty
    fingerprint (frames gone, or none recorded) cannot be checked and counts as the same.
    """
    if not old or not new:
        return True
    old_stat, _, old_full = old.partition("/")
    new_stat, _, new_full = new.partition("/")
    return old_full == new_full if old_full and new_full else old_stat == new_stat


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
    """Write samples.csv atomically (a uniquely named temporary file renamed into place).

    Raises
    ------
    MertoolError
        The folder cannot be created or written, ``path`` is a folder, or the disk is full.
    """
    path = Path(path)
    writable_folder(path.parent, "output folder")
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=SAMPLE_FIELDS)
    writer.writeheader()
    writer.writerows(dataclasses.asdict(s) for s in samples)
    return atomic_write_text(path, text.getvalue())


def read_samples(path: str | Path) -> list[Sample]:
    """Read a samples.csv written by ``mertool index``.

    Raises
    ------
    MertoolError
        Missing file or columns, a frame number that is not a whole finite number, or a
        ``sample_id`` listed twice (naming the file, the line and the id).
    """
    path = Path(path)
    if not path.is_file():
        raise MertoolError(f"{path}: samples file not found")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [f for f in ("sample_id", "subject", "onset", "apex", "offset", "label") if f not in header]
        if missing:
            raise MertoolError(f"{path}: not a samples.csv (missing columns {', '.join(missing)}); make one with `mertool index`")
        samples, lines = [], []
        for line, row in enumerate(reader, start=2):
            values = {k: (row.get(k) or "") for k in SAMPLE_FIELDS if k in row}
            try:
                for k in _INT_FIELDS:
                    values[k] = frame_number(values[k], k)
            except ValueError as exc:
                raise MertoolError(f"{path}:{line}: {exc}") from None
            samples.append(Sample(**values))
            lines.append(line)
    twice = [sid for sid, n in Counter(s.sample_id for s in samples).items() if n > 1]
    if twice:
        where = [str(line) for s, line in zip(samples, lines) if s.sample_id == twice[0]]
        more = f" (and {len(twice) - 1} more id(s) listed twice)" if len(twice) > 1 else ""
        raise MertoolError(f"{path}: sample_id {twice[0]!r} is listed twice (lines {', '.join(where)}){more}; ids must be unique")
    return samples


def frame_number(text: str, what: str = "frame number") -> int:
    """``text`` as a frame number (``"12"``, ``"12.0"``).

    Raises
    ------
    ValueError
        ``what 'text' is not a whole frame number`` for text, fractions, nan and inf.
    """
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or not number.is_integer():
        raise ValueError(f"{what} {text!r} is not a whole frame number")
    return int(number)
