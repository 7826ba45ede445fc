"""SAMM (Manchester Metropolitan University).

Sheet ``SAMM_Micro_FACS_Codes_v2.xlsx``, header on row 13: Subject, Filename, Inducement
Code, Onset Frame, Apex Frame, Offset Frame, Duration, Micro, Action Units, Estimated
Emotion, Objective Classes, Notes. Frames ``{sub:03d}/{Filename}/{sub:03d}_{frame}.jpg``
(3-5 digit frame numbers, grayscale). Default protocol ``samm-5``.
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
    "onset": ("Onset Frame", "OnsetFrame", "Onset"),
    "apex": ("Apex Frame", "ApexFrame", "Apex"),
    "offset": ("Offset Frame", "OffsetFrame", "Offset"),
    "aus": ("Action Units", "AUs"),
    "emotion": ("Estimated Emotion", "Emotion"),
}
REQUIRED = ("subject", "filename", "onset", "apex", "offset", "emotion")
SHEETS = ("SAMM_Micro_FACS_Codes*", "SAMM*FACS*", "SAMM*.xlsx")


def _has_subjects(path: Path) -> bool:
    return any(p.is_dir() and re.fullmatch(r"\d{3}", p.name) for p in path.iterdir())


def index_samm(root: Path | None, sheet: Path | None, protocol: str | None = None) -> tuple[list[Sample], IndexReport]:
    """Parse SAMM; returns samples (labelled by the protocol) and the report."""
    proto = get_protocol(protocol, "samm")
    sheet_path = find_sheet(root, sheet, SHEETS, "samm")
    base = data_root(root or sheet_path.parent, _has_subjects, "samm")

    def to_row(rec: dict, line: str) -> Row | str:
        number = subject_number(rec["subject"])
        name = cell_text(rec["filename"])
        if number is None or not name:
            return f"subject {cell_text(rec['subject'])!r} / filename {name!r} unusable"
        subject = f"{number:03d}"
        sub_dir = find_dir(base, subject, str(number))
        folder = find_dir(sub_dir, name) if sub_dir else None
        return Row(line, name, subject, name, folder, rec["onset"], rec["apex"], rec["offset"],
                   cell_text(rec["emotion"]), cell_text(rec["aus"]))

    return index_sheet("samm", sheet_path, COLUMNS, REQUIRED, to_row, proto)


@register_dataset("samm", "SAMM: --root folder with 006..037 and SAMM_Micro_FACS_Codes_v2.xlsx (protocol samm-5)", pre_cropped=True)
def load_samm(root: Path | None = None, sheet: Path | None = None, protocol: str | None = None, **_: object) -> list[Sample]:
    if root is None and sheet is None:
        raise MertoolError("--root is required for --dataset samm")
    samples, report = index_samm(root, sheet, protocol)
    return finish(samples, report, root or sheet)
