"""CASME II (Institute of Psychology, Chinese Academy of Sciences).

Sheet ``CASME2-coding-*.xlsx``: Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame,
Action Units, Estimated Emotion. Frames ``sub{NN}/{Filename}/reg_img{N}.jpg`` (cropped
set) or ``img{N}.jpg`` (raw set). Default protocol ``casme2-5``. Declared pre-cropped (the
``Cropped`` set most work uses): align the raw set with ``mertool align --crop similarity``.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import MertoolError
from ..samples import Sample
from ._registry import register_dataset
from .protocols import get_protocol
from .sheets import IndexReport, Row, cell_text, data_root, find_dir, find_sheet, finish, index_sheet, subject_number

COLUMNS = {
    "subject": ("Subject",),
    "filename": ("Filename", "File name"),
    "onset": ("OnsetFrame", "Onset"),
    "apex": ("ApexFrame", "Apex"),
    "offset": ("OffsetFrame", "Offset"),
    "aus": ("Action Units", "AUs", "AU"),
    "emotion": ("Estimated Emotion", "Emotion"),
}
REQUIRED = ("subject", "filename", "onset", "apex", "offset", "emotion")
SHEETS = ("CASME2-coding*", "CASME2*coding*", "*CASME2*.xlsx", "*coding*")


def _has_subjects(path: Path) -> bool:
    return any(p.is_dir() and re.fullmatch(r"sub\d+", p.name, re.IGNORECASE) for p in path.iterdir())


def locate_sub_clip(base: Path, rec: dict) -> tuple[str, str, Path | None] | str:
    """The CASME-family layout ``sub{NN}/{Filename}``: (subject, filename, folder or None),
    or the reason the row is unusable."""
    number = subject_number(rec["subject"])
    name = cell_text(rec["filename"])
    if number is None or not name:
        return f"subject {cell_text(rec['subject'])!r} / filename {name!r} unusable"
    subject = f"sub{number:02d}"
    sub_dir = find_dir(base, subject, f"sub{number}", str(number))
    return subject, name, find_dir(sub_dir, name) if sub_dir else None


def index_casme2(root: Path | None, sheet: Path | None, protocol: str | None = None) -> tuple[list[Sample], IndexReport]:
    """Parse CASME II; returns samples (labelled by the protocol) and the report."""
    proto = get_protocol(protocol, "casme2")
    sheet_path = find_sheet(root, sheet, SHEETS, "casme2")
    base = data_root(root or sheet_path.parent, _has_subjects, "casme2")

    def to_row(rec: dict, line: str) -> Row | str:
        clip = locate_sub_clip(base, rec)
        if isinstance(clip, str):
            return clip
        subject, name, folder = clip
        return Row(line, f"{subject}_{name}", subject, name, folder, rec["onset"], rec["apex"], rec["offset"],
                   cell_text(rec["emotion"]), cell_text(rec["aus"]))

    return index_sheet("casme2", sheet_path, COLUMNS, REQUIRED, to_row, proto)


@register_dataset("casme2", "CASME II: --root folder with sub01..sub26 and CASME2-coding-*.xlsx (protocol casme2-5)", pre_cropped=True)
def load_casme2(root: Path | None = None, sheet: Path | None = None, protocol: str | None = None, **_: object) -> list[Sample]:
    if root is None and sheet is None:
        raise MertoolError("--root is required for --dataset casme2")
    samples, report = index_casme2(root, sheet, protocol)
    return finish(samples, report, root or sheet)
