"""CAS(ME)^3 part A (Institute of Psychology, CAS): the labelled micro-expressions.

Sheet ``CAS(ME)3_part_A_ME_label_JpgIndex_v2.xlsx``: Subject (``spNO.1``), Filename
(``a``, ``b``...), Onset, Apex, Offset, AU, Objective class, emotion. Frames
``{Subject}/{Filename}/color/{N}.jpg`` (the ``color`` level is optional). One filename
holds several micro-expressions, so sample ids carry the onset. Default protocol ``raw``
(seven emotions).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import MertoolError
from ..samples import Sample
from ._registry import register_dataset
from .protocols import get_protocol
from .sheets import IndexReport, Row, cell_text, data_root, find_dir, find_sheet, finish, frame_number, index_sheet

COLUMNS = {
    "subject": ("Subject",),
    "filename": ("Filename", "File name"),
    "onset": ("Onset", "Onset Frame", "OnsetFrame"),
    "apex": ("Apex", "Apex Frame", "ApexFrame"),
    "offset": ("Offset", "Offset Frame", "OffsetFrame"),
    "aus": ("AU", "Action Units", "AUs"),
    "emotion": ("emotion", "Estimated Emotion"),
}
REQUIRED = ("subject", "filename", "onset", "apex", "offset", "emotion")
SHEETS = ("CAS(ME)3_part_A_ME_label*", "*part_A*label*", "*part_A*.xlsx")


def index_casme3(root: Path | None, sheet: Path | None, protocol: str | None = None) -> tuple[list[Sample], IndexReport]:
    """Parse CAS(ME)^3 part A; returns samples and the report."""
    proto = get_protocol(protocol, "casme3")
    sheet_path = find_sheet(root, sheet, SHEETS, "casme3")
    base = data_root(
        root or sheet_path.parent,
        lambda p: any(c.is_dir() and c.name.lower().startswith("spno") for c in p.iterdir()),
        "casme3",
    )

    def to_row(rec: dict, line: str) -> Row | str:
        subject, name = cell_text(rec["subject"]), cell_text(rec["filename"])
        if not subject or not name:
            return f"subject {subject!r} / filename {name!r} unusable"
        sub_dir = find_dir(base, subject)
        folder = find_dir(sub_dir, name) if sub_dir else None
        if folder is not None and find_dir(folder, "color"):
            folder = find_dir(folder, "color")
        onset = frame_number(rec["onset"])
        return Row(line, f"{subject}_{name}_{onset}", subject, name, folder, rec["onset"], rec["apex"], rec["offset"],
                   cell_text(rec["emotion"]), cell_text(rec["aus"]))

    return index_sheet("casme3", sheet_path, COLUMNS, REQUIRED, to_row, proto)


@register_dataset("casme3", "CAS(ME)^3 part A: --root folder with spNO.* and the part A ME label sheet (protocol raw)", pre_cropped=False)
def load_casme3(root: Path | None = None, sheet: Path | None = None, protocol: str | None = None, **_: object) -> list[Sample]:
    if root is None and sheet is None:
        raise MertoolError("--root is required for --dataset casme3")
    samples, report = index_casme3(root, sheet, protocol)
    return finish(samples, report, root or sheet)
