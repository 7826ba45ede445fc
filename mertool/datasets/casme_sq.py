"""CAS(ME)^2 (Institute of Psychology, CAS): the micro-expression part.

Workbook ``CAS(ME)^2code_final*.xlsx`` as distributed: first sheet without a header row,
columns subject number, expression name (``disgust1_1``), onset, apex, offset, AUs,
emotion (positive/negative/surprise/others), type (micro-/macro-expression), self
report; the other sheets are the naming rules (participant number -> folder number
``15``; expression name ``disgust1`` -> video code ``0101``). A first sheet with a header
row (Subject, Filename, Onset, Apex, Offset, Action Units, Emotion, Type) also works.
Frames ``rawpic/s{NN}/{NN}_{code}{name}/img{N}.jpg``. Macro-expressions are left out.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..errors import MertoolError
from ..samples import Sample
from ._registry import register_dataset
from .protocols import get_protocol
from .sheets import (
    IndexReport, Row, cell_text, data_root, find_dir, find_sheet, finish, frame_number, norm, read_sheet,
    rows_to_samples, subject_number,
)

COLUMNS = {
    "subject": ("Subject", "Participant"),
    "filename": ("Filename", "Expression", "Video"),
    "onset": ("Onset", "Onset Frame", "OnsetFrame"),
    "apex": ("Apex", "Apex Frame", "ApexFrame"),
    "offset": ("Offset", "Offset Frame", "OffsetFrame"),
    "aus": ("Action Units", "AUs", "AU"),
    "emotion": ("Emotion", "Estimated Emotion"),
    "type": ("Type", "Expression Type"),
}
REQUIRED = ("subject", "filename", "onset", "apex", "offset", "emotion")
POSITIONAL = ("subject", "filename", "onset", "apex", "offset", "aus", "emotion", "type")
SHEETS = ("CAS(ME)^2code_final*", "CAS(ME)*code*", "*code_final*")


def main_table(path: Path) -> pd.DataFrame:
    """The annotation rows: by header if the sheet has one, else by position."""
    try:
        return read_sheet(path, COLUMNS, REQUIRED, max_scan=5)
    except MertoolError as exc:
        raw = pd.read_excel(path, header=None, dtype=object) if path.suffix.lower() != ".csv" else pd.read_csv(path, header=None, dtype=str)
        if raw.shape[1] < len(POSITIONAL) or frame_number(raw.iloc[0, 2]) is None:
            raise MertoolError(f"{exc}; or, without a header, {len(POSITIONAL)} columns: {', '.join(POSITIONAL)}") from None
        table = raw.iloc[:, : len(POSITIONAL)].copy()
        table.columns = list(POSITIONAL)
        table["_line"] = range(1, len(raw) + 1)
        return table.dropna(how="all", subset=list(POSITIONAL))


def naming_rules(path: Path) -> tuple[dict[int, int], dict[str, str]]:
    """(participant number -> folder number, expression name -> video code) from the other sheets."""
    subjects: dict[int, int] = {}
    videos: dict[str, str] = {}
    if path.suffix.lower() == ".csv":
        return subjects, videos
    for name, sheet in list(pd.read_excel(path, sheet_name=None, header=None, dtype=str).items())[1:]:
        sheet = sheet.dropna(how="all")
        if sheet.shape[1] < 2:
            continue
        first = [cell_text(v) for v in sheet.iloc[:, 0]]
        second = [cell_text(v) for v in sheet.iloc[:, 1]]
        codes = sum(bool(re.fullmatch(r"\d{3,4}", a)) and bool(b) and not b.isdigit() for a, b in zip(first, second))
        if codes > len(first) / 2:  # naming rule 1: [video code, expression name, ...]
            videos.update({norm(b): a.zfill(4) for a, b in zip(first, second) if re.fullmatch(r"\d{3,4}", a) and b})
        elif sheet.shape[1] >= 3:  # naming rule 2: [s-code, folder number, participant number]
            for _, r in sheet.iterrows():
                a, b = subject_number(r.iloc[1]), subject_number(r.iloc[2])
                if a is not None and b is not None:
                    subjects[b] = a
    return subjects, videos


def clip_folder(base: Path, code: int, name: str, videos: dict[str, str]) -> Path | None:
    """The frames folder (the long video) of expression ``name`` of participant folder
    ``code``: ``rawpic/s15/15_0101disgustingteeth`` for ``disgust1_1`` (None if absent)."""
    sub_dir = find_dir(base, f"s{code:02d}", f"s{code}", str(code))
    if sub_dir is None:
        return None
    video = name.split("_")[0]
    vcode = videos.get(norm(video), "")
    for child in sorted(p for p in sub_dir.iterdir() if p.is_dir()):
        key = norm(child.name)
        if (vcode and key.startswith(f"{code}{vcode}")) or norm(video) in key or key == norm(name):
            return child
    return None


def index_casme_sq(root: Path | None, sheet: Path | None, protocol: str | None = None) -> tuple[list[Sample], IndexReport]:
    """Parse CAS(ME)^2's micro-expressions; returns samples and the report."""
    proto = get_protocol(protocol, "casme-sq")
    sheet_path = find_sheet(root, sheet, SHEETS, "casme-sq")
    table = main_table(sheet_path)
    subjects, videos = naming_rules(sheet_path)
    base = data_root(
        root or sheet_path.parent,
        lambda p: any(c.is_dir() and re.fullmatch(r"s\d+", c.name, re.IGNORECASE) for c in p.iterdir()),
        "casme-sq",
    )
    report = IndexReport("casme-sq")
    rows: list[Row] = []
    for rec in table.to_dict("records"):
        line = f"{sheet_path.name}:{rec['_line']}"
        if "macro" in cell_text(rec.get("type", "")).lower():
            report.labels.excluded["macro-expression"] += 1
            continue
        number, name = subject_number(rec["subject"]), cell_text(rec["filename"])
        if number is None or not name:
            report.skipped.append(f"{line} (subject {cell_text(rec['subject'])!r} / name {name!r} unusable)")
            continue
        code = subjects.get(number, number)
        subject = f"s{code:02d}"
        folder = clip_folder(base, code, name, videos)
        rows.append(Row(line, f"{subject}_{name}", subject, name, folder, rec["onset"], rec["apex"], rec["offset"],
                        cell_text(rec["emotion"]), cell_text(rec["aus"])))
    excluded = report.labels.excluded
    samples = rows_to_samples(rows, "casme-sq", proto, report)
    report.labels.excluded.update(excluded)
    return samples, report


@register_dataset("casme-sq", "CAS(ME)^2 micro part: --root folder with rawpic/s15.. and CAS(ME)^2code_final.xlsx (protocol raw)", pre_cropped=False)
def load_casme_sq(root: Path | None = None, sheet: Path | None = None, protocol: str | None = None, **_: object) -> list[Sample]:
    if root is None and sheet is None:
        raise MertoolError("--root is required for --dataset casme-sq")
    samples, report = index_casme_sq(root, sheet, protocol)
    return finish(samples, report, root or sheet)
