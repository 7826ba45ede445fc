"""MMEW (Shandong University): the micro-expression part.

Sheet ``MMEW_Micro_Exp.xlsx``: Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame,
Action Units, Estimated Emotion, remarks. Frames ``Micro_Expression/{emotion}/{Filename}/``
(``{N}.jpg``). Default protocol ``mmew-7``.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import MertoolError
from ..samples import Sample
from ._registry import register_dataset
from .protocols import get_protocol
from .sheets import IndexReport, Row, cell_text, data_root, find_dir, find_sheet, finish, index_sheet

COLUMNS = {
    "subject": ("Subject",),
    "filename": ("Filename", "File name"),
    "onset": ("OnsetFrame", "Onset Frame", "Onset"),
    "apex": ("ApexFrame", "Apex Frame", "Apex"),
    "offset": ("OffsetFrame", "Offset Frame", "Offset"),
    "aus": ("Action Units", "AUs"),
    "emotion": ("Estimated Emotion", "Emotion"),
}
REQUIRED = ("subject", "filename", "onset", "apex", "offset", "emotion")
SHEETS = ("MMEW_Micro_Exp*", "MMEW*Micro*", "MMEW*.xlsx")


def index_mmew(root: Path | None, sheet: Path | None, protocol: str | None = None) -> tuple[list[Sample], IndexReport]:
    """Parse MMEW; returns samples (labelled by the protocol) and the report."""
    proto = get_protocol(protocol, "mmew")
    sheet_path = find_sheet(root, sheet, SHEETS, "mmew")
    base = data_root(root or sheet_path.parent, lambda p: find_dir(p, "Micro_Expression") is not None, "mmew")
    micro = find_dir(base, "Micro_Expression") or base
    emotion_dirs = [p for p in sorted(micro.iterdir()) if p.is_dir()] if micro.is_dir() else []

    def to_row(rec: dict, line: str) -> Row | str:
        name = cell_text(rec["filename"])
        subject = cell_text(rec["subject"])
        if not name or not subject:
            return f"subject {subject!r} / filename {name!r} unusable"
        emotion = cell_text(rec["emotion"])
        folder = find_dir(find_dir(micro, emotion) or micro, name)
        if folder is None:  # the sheet's emotion spelling may differ from the folder's
            folder = next((f for d in emotion_dirs if (f := find_dir(d, name))), None)
        return Row(line, name, subject, name, folder, rec["onset"], rec["apex"], rec["offset"], emotion, cell_text(rec["aus"]))

    return index_sheet("mmew", sheet_path, COLUMNS, REQUIRED, to_row, proto)


@register_dataset("mmew", "MMEW micro part: --root folder with Micro_Expression/ and MMEW_Micro_Exp.xlsx (protocol mmew-7)", pre_cropped=False)
def load_mmew(root: Path | None = None, sheet: Path | None = None, protocol: str | None = None, **_: object) -> list[Sample]:
    if root is None and sheet is None:
        raise MertoolError("--root is required for --dataset mmew")
    samples, report = index_mmew(root, sheet, protocol)
    return finish(samples, report, root or sheet)
