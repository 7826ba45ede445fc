"""Generic CSV manifest: any lab's own clips without writing code.

Columns: ``sample_id, subject, frames`` (a folder of images) or ``video`` (a file),
``onset, apex, offset, label`` and optionally ``aus, dataset, clip``. Relative paths
resolve against the manifest's folder. ``apex`` may be empty, ``/`` or -1 (unknown;
``mertool keyframes`` estimates it).
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..errors import MertoolError
from ..log import logger
from ..samples import Sample, check_keyframes, clip_numbers, video_frame_count
from ._registry import register_dataset

REQUIRED = ("sample_id", "subject", "onset", "apex", "offset", "label")
OPTIONAL = ("frames", "video", "aus", "dataset", "clip")
MISSING_APEX = {"", "/", "-1", "nan", "none", "na"}


def _int(value: str, what: str, where: str) -> int:
    try:
        number = float(value)
    except ValueError:
        raise MertoolError(f"{where}: {what} {value!r} is not a frame number") from None
    if number != int(number):
        raise MertoolError(f"{where}: {what} {value!r} is not a whole frame number")
    return int(number)


@register_dataset("manifest", "your own clips: a CSV manifest (sample_id, subject, frames|video, onset, apex, offset, label[, aus])")
def load_manifest(root: Path | None = None, sheet: Path | None = None, **_: object) -> list[Sample]:
    """Read and validate a manifest; rows with missing frames are skipped and reported.

    Raises
    ------
    MertoolError
        Missing sheet or columns, unknown columns, duplicate ids, bad or out-of-order
        frame numbers, frame numbers outside the clip.
    """
    if sheet is None:
        raise MertoolError("--sheet is required for --dataset manifest")
    if not sheet.is_file():
        raise MertoolError(f"{sheet}: manifest not found")
    base = sheet.resolve().parent
    with open(sheet, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise MertoolError(f"{sheet}: missing column(s) {', '.join(missing)}; expected {', '.join(REQUIRED)} plus frames or video")
        unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
        if unknown:
            raise MertoolError(f"{sheet}: unknown column(s) {', '.join(unknown)}; allowed {', '.join(REQUIRED + OPTIONAL)}")
        if "frames" not in header and "video" not in header:
            raise MertoolError(f"{sheet}: needs a 'frames' (image folder) or 'video' column")
        rows = list(reader)

    samples: list[Sample] = []
    seen: dict[str, int] = {}
    skipped: list[str] = []
    for line, raw in enumerate(rows, start=2):
        row = {k: (v or "").strip() for k, v in raw.items() if k}
        where = f"{sheet}:{line}"
        sid = row["sample_id"]
        if not sid:
            raise MertoolError(f"{where}: empty sample_id")
        if sid in seen:
            raise MertoolError(f"{where}: duplicate sample_id {sid!r} (first on line {seen[sid]})")
        seen[sid] = line
        frames, video = row.get("frames", ""), row.get("video", "")
        if bool(frames) == bool(video):
            raise MertoolError(f"{where}: sample {sid} needs exactly one of frames or video")
        src = base / (frames or video)
        if not src.exists():
            skipped.append(f"{sid} ({src} not found)")
            continue
        apex = -1 if row["apex"].lower() in MISSING_APEX else _int(row["apex"], "apex", where)
        sample = Sample(
            sample_id=sid,
            subject=row["subject"],
            onset=_int(row["onset"], "onset", where),
            apex=apex,
            offset=_int(row["offset"], "offset", where),
            label=row["label"],
            dataset=row.get("dataset") or "manifest",
            clip=row.get("clip") or sid,
            frames=str(src) if frames else "",
            video=str(src) if video else "",
            aus=row.get("aus", ""),
            apex_source="sheet" if apex != -1 else "missing",
        )
        if not sample.label:
            raise MertoolError(f"{where}: sample {sid} has an empty label")
        try:
            check_keyframes(sample)
        except MertoolError as exc:
            raise MertoolError(f"{where}: {exc}") from None
        _check_range(sample, where)
        samples.append(sample)
    if skipped:
        logger.warning(f"{len(skipped)} row(s) skipped, frames missing: " + "; ".join(skipped))
    if not samples:
        raise MertoolError(f"{sheet}: no usable rows")
    return samples


def _check_range(sample: Sample, where: str) -> None:
    if sample.frames:
        numbers = [n for n, _ in sample.frame_table()]
        first, last = numbers[0], numbers[-1]
    else:
        first, last = 1, video_frame_count(sample.video)
    for name in ("onset", "apex", "offset"):
        value = getattr(sample, name)
        if value != -1 and not first <= value <= last:
            raise MertoolError(
                f"{where}: sample {sample.sample_id} {name} {value} outside the clip's frames {first}..{last}"
            )
    if not clip_numbers(sample):
        raise MertoolError(f"{where}: sample {sample.sample_id} has no frames between onset and offset")
