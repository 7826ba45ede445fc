"""Generic CSV manifest: any lab's own clips without writing code.

Columns: ``sample_id, subject, frames`` (a folder of images) or ``video`` (a file),
``onset, apex, offset, label`` and optionally ``aus, dataset, clip``. Relative paths
resolve against the manifest's folder. ``apex`` may be empty, ``/`` or -1 (unknown;
``mertool keyframes`` estimates it).

Every row is checked before anything is written, and one error lists every bad row
(up to :data:`LISTED`), not only the first.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..errors import MertoolError
from ..log import logger
from ..samples import VIDEO_SUFFIXES, Sample, check_keyframes, clip_numbers, frame_number, video_frame_count
from ._registry import register_dataset

REQUIRED = ("sample_id", "subject", "onset", "apex", "offset", "label")
OPTIONAL = ("frames", "video", "aus", "dataset", "clip")
MISSING_APEX = {"", "/", "-1", "nan", "none", "na"}
#: Bad rows listed in one error.
LISTED = 10


def _int(value: str, what: str, where: str) -> int:
    try:
        return frame_number(value, what)
    except ValueError as exc:
        raise MertoolError(f"{where}: {exc}") from None


@register_dataset("manifest", "your own clips: a CSV manifest (sample_id, subject, frames|video, onset, apex, offset, label[, aus])", pre_cropped=False)
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
    rows = _read_rows(sheet)
    base = sheet.resolve().parent
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    skipped: list[str] = []
    errors: list[str] = []
    for line, raw in enumerate(rows, start=2):
        row = {k: (v or "").strip() for k, v in raw.items() if k}
        where = f"{sheet}:{line}"
        sid = row["sample_id"]
        if sid in seen:
            errors.append(f"{where}: duplicate sample_id {sid!r} (first on line {seen[sid]})")
            continue
        seen[sid] = line
        try:
            sample = _row_sample(row, where, base)
        except MertoolError as exc:
            errors.append(str(exc))
            continue
        if sample is None:
            skipped.append(f"{sid} ({base / (row.get('frames') or row.get('video', ''))} not found)")
            continue
        samples.append(sample)
    if errors:
        more = f"; and {len(errors) - LISTED} more" if len(errors) > LISTED else ""
        head = "" if len(errors) == 1 else f"{sheet}: {len(errors)} bad rows: "
        raise MertoolError(head + "; ".join(errors[:LISTED]) + more)
    if skipped:
        logger.warning(f"{len(skipped)} row(s) skipped, frames missing: " + "; ".join(skipped))
    if not samples:
        raise MertoolError(f"{sheet}: no usable rows")
    return samples


def _read_rows(sheet: Path) -> list[dict]:
    """The manifest's rows, its header checked (with a hint for other delimiters)."""
    with open(sheet, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        raw_header = reader.fieldnames or []
        header = [h.strip().lower() for h in raw_header]
        reader.fieldnames = header
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            hint = ""
            for sep, name in ((";", "semicolon"), ("\t", "tab")):
                if len(raw_header) == 1 and sep in raw_header[0]:
                    hint = f" (the file looks {name}-separated: save it with commas, e.g. 'CSV UTF-8 (comma delimited)')"
            raise MertoolError(
                f"{sheet}: missing column(s) {', '.join(missing)}; expected {', '.join(REQUIRED)} plus frames or video{hint}"
            )
        unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
        if unknown:
            raise MertoolError(f"{sheet}: unknown column(s) {', '.join(unknown)}; allowed {', '.join(REQUIRED + OPTIONAL)}")
        if "frames" not in header and "video" not in header:
            raise MertoolError(f"{sheet}: needs a 'frames' (image folder) or 'video' column")
        return list(reader)


def _row_sample(row: dict[str, str], where: str, base: Path) -> Sample | None:
    """One row as a checked Sample; None when its frames or video do not exist (skipped).

    Raises
    ------
    MertoolError
        A bad row, naming ``where`` (file:line) and the sample.
    """
    sid = row["sample_id"]
    if not sid:
        raise MertoolError(f"{where}: empty sample_id")
    frames, video = row.get("frames", ""), row.get("video", "")
    if bool(frames) == bool(video):
        raise MertoolError(f"{where}: sample {sid} needs exactly one of frames or video")
    src = base / (frames or video)
    if not src.exists():
        return None
    if frames and not src.is_dir():
        kind = "a video file: put it in the 'video' column" if src.suffix.lower() in VIDEO_SUFFIXES else "a file"
        raise MertoolError(f"{where}: sample {sid} frames {frames!r} is {kind}, not a folder of images")
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
    return sample


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
