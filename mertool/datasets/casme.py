"""CASME (the first CASME, Institute of Psychology, CAS), sections A and B.

Sheets (one per section, all read unless --sheet names one): Subject, Filename, OnsetF,
ApexF1, ApexF2, OffsetF, Duration, Action Units (or AU), Emotion. ApexF1 is the apex;
ApexF2 is used when ApexF1 is missing. Frames ``sub{NN}/{Filename}/`` (e.g.
``EP01_5-1.jpg``; the number after the last dash is the frame). Default protocol ``raw``;
``offtanet-3`` maps it into the Off-TANet set.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import MertoolError
from ..samples import Sample
from ._registry import register_dataset
from .casme2 import locate_sub_clip
from .protocols import get_protocol
from .sheets import (
    SHEET_SUFFIXES, IndexReport, Row, cell_text, data_root, find_sheet, finish, frame_number, index_sheet,
)

COLUMNS = {
    "subject": ("Subject",),
    "filename": ("Filename", "File name"),
    "onset": ("OnsetF", "Onset Frame", "OnsetFrame", "Onset"),
    "apex": ("ApexF1", "ApexF", "Apex Frame", "ApexFrame", "Apex"),
    "apex2": ("ApexF2",),
    "offset": ("OffsetF", "Offset Frame", "OffsetFrame", "Offset"),
    "aus": ("Action Units", "AU", "AUs"),
    "emotion": ("Emotion", "Estimated Emotion"),
}
REQUIRED = ("subject", "filename", "onset", "apex", "offset", "emotion")
SHEETS = ("CASME_*coding*", "*CASME*Section*", "*CASME*label*", "CASME*.xlsx", "CASME*.csv")


def _has_subjects(path: Path) -> bool:
    return any(p.is_dir() and re.fullmatch(r"sub\d+", p.name, re.IGNORECASE) for p in path.iterdir())


def _sheets(root: Path | None, sheet: Path | None) -> list[Path]:
    first = find_sheet(root, sheet, SHEETS, "casme")
    if sheet is not None:
        return [first]
    found: list[Path] = []
    for pattern in SHEETS:  # section A and section B sheets
        for depth in ("", "*/"):
            found += [p for p in sorted(root.glob(depth + pattern)) if p.suffix.lower() in SHEET_SUFFIXES and p not in found]
    return found or [first]


def index_casme(root: Path | None, sheet: Path | None, protocol: str | None = None) -> tuple[list[Sample], IndexReport]:
    """Parse CASME (every section sheet found); returns samples and the merged report."""
    proto = get_protocol(protocol, "casme")
    sheets = _sheets(root, sheet)
    samples: list[Sample] = []
    report = IndexReport("casme")
    for sheet_path in sheets:
        base = data_root(root or sheet_path.parent, _has_subjects, "casme")

        def to_row(rec: dict, line: str, base: Path = base) -> Row | str:
            clip = locate_sub_clip(base, rec)
            if isinstance(clip, str):
                return clip
            subject, name, folder = clip
            apex = rec["apex"] if frame_number(rec["apex"]) is not None else rec["apex2"]
            return Row(line, f"{subject}_{name}", subject, name, folder, rec["onset"], apex, rec["offset"],
                       cell_text(rec["emotion"]), cell_text(rec["aus"]))

        part, rep = index_sheet("casme", sheet_path, COLUMNS, REQUIRED, to_row, proto)
        known = {s.sample_id for s in samples}
        samples += [s for s in part if s.sample_id not in known]
        report.skipped += rep.skipped
        report.repaired += rep.repaired
        report.labels.excluded.update(rep.labels.excluded)
        for k, v in rep.labels.unknown.items():
            report.labels.unknown.setdefault(k, []).extend(v)
        report.protocol = rep.protocol
    return samples, report


@register_dataset("casme", "CASME: --root folder with sub01.. and the section A/B coding sheets (protocol raw)", pre_cropped=False)
def load_casme(root: Path | None = None, sheet: Path | None = None, protocol: str | None = None, **_: object) -> list[Sample]:
    if root is None and sheet is None:
        raise MertoolError("--root is required for --dataset casme")
    samples, report = index_casme(root, sheet, protocol)
    return finish(samples, report, root or sheet)
