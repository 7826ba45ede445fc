"""Annotation sheets (xlsx/csv) and the row -> Sample engine shared by dataset adapters.

Headers are matched ignoring case, spaces and punctuation (``"Onset Frame "`` ==
``"OnsetFrame"``), and the header row is found by scanning the first rows (SAMM's sits on
row 13), so sheets are read exactly as the labs distribute them.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from ..errors import MertoolError
from ..log import logger
from ..samples import Sample
from .protocols import LabelReport, Protocol, apply_protocol, normalise_label

SHEET_SUFFIXES = (".xlsx", ".xlsm", ".csv")
MISSING = {"", "/", "-1", "nan", "none", "na", "n/a", "-", "?"}


def norm(text: object) -> str:
    """Header key: lower-case alphanumerics only (``'Onset Frame '`` -> ``'onsetframe'``)."""
    return re.sub(r"[^0-9a-z]+", "", str(text).lower())


def read_table(path: Path, header: bool = False) -> pd.DataFrame:
    """Read a whole sheet as strings/objects with no header interpretation."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path, header=None, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        if suffix in (".xlsx", ".xlsm"):
            return pd.read_excel(path, header=None, dtype=object, engine="openpyxl")
    except (ValueError, OSError, KeyError) as exc:
        raise MertoolError(f"{path}: cannot read the sheet ({exc})") from None
    if suffix == ".xls":
        raise MertoolError(f"{path}: old .xls sheets are not read; save it as .xlsx or .csv")
    raise MertoolError(f"{path}: not a sheet (.xlsx or .csv expected)")


def read_sheet(
    path: Path,
    columns: dict[str, Sequence[str]],
    required: Sequence[str],
    max_scan: int = 40,
    header_row: int | None = None,
) -> pd.DataFrame:
    """Read an annotation sheet into a frame with canonical column names.

    Parameters
    ----------
    path : Path
        .xlsx or .csv file.
    columns : dict
        Canonical name -> accepted header spellings (compared with :func:`norm`).
    required : sequence of str
        Canonical names that must be present.
    max_scan : int
        Rows searched for the header row (the first row holding every required column).
    header_row : int, optional
        1-based header row, skipping the search.

    Returns
    -------
    DataFrame
        Canonical columns (missing optional ones filled with ""), plus ``_line``: the
        1-based row number in the sheet, for messages. Fully empty rows are dropped.

    Raises
    ------
    MertoolError
        Missing/unreadable file, or no row holding the required columns (the message names
        the expected columns and what the best candidate row had).
    """
    if not path.is_file():
        raise MertoolError(f"{path}: annotation sheet not found")
    raw = read_table(path)
    wanted = {canon: {norm(a) for a in (canon, *aliases)} for canon, aliases in columns.items()}
    expected = ", ".join(str(columns[c][0]) if columns[c] else c for c in required)
    rows = [header_row - 1] if header_row else range(min(max_scan, len(raw)))
    best: tuple[int, int, dict[str, int]] = (-1, -1, {})
    for r in rows:
        if r >= len(raw):
            break
        cells = [norm(v) for v in raw.iloc[r].tolist()]
        found: dict[str, int] = {}
        for canon, keys in wanted.items():
            for i, cell in enumerate(cells):
                if cell in keys:
                    found[canon] = i
                    break
        hits = sum(c in found for c in required)
        if hits > best[1]:
            best = (r, hits, found)
        if hits == len(required):
            break
    r, hits, found = best
    missing = [c for c in required if c not in found]
    if missing:
        names = ", ".join(str(columns[c][0]) if columns[c] else c for c in missing)
        where = f" (row {r + 1} has {', '.join(str(v) for v in raw.iloc[r].tolist() if str(v).strip() and str(v) != 'nan')})" if r >= 0 and hits > 0 else ""
        raise MertoolError(f"{path}: missing column(s) {names}; expected columns {expected}{where}")
    body = raw.iloc[r + 1 :]
    out = pd.DataFrame({canon: body.iloc[:, i].tolist() for canon, i in found.items()})
    for canon in columns:
        if canon not in out:
            out[canon] = ""
    out["_line"] = [i + 1 for i in range(r + 1, len(raw))]
    keep = [any(not _blank(v) for k, v in row.items() if k != "_line") for _, row in out.iterrows()]
    return out[keep].reset_index(drop=True)


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""


def cell_text(value: object) -> str:
    """A cell as clean text (``12.0`` -> ``'12'``, NaN -> ``''``)."""
    if _blank(value):
        return ""
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    return " ".join(str(value).split())


def frame_number(value: object) -> int | None:
    """A frame-number cell; ``None`` for missing markers ("/", -1, empty, "?")."""
    text = cell_text(value)
    if text.lower() in MISSING:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    if number != int(number) or number < 0:
        return None
    return int(number)


def find_sheet(root: Path | None, sheet: Path | None, patterns: Sequence[str], dataset: str) -> Path:
    """The annotation sheet: ``--sheet`` if given, else the first file under ``root``
    (and one folder down) whose name matches a glob pattern."""
    if sheet is not None:
        if not sheet.is_file():
            raise MertoolError(f"{sheet}: annotation sheet not found")
        return sheet
    if root is None:
        raise MertoolError(f"--root is required for --dataset {dataset}")
    if not root.is_dir():
        raise MertoolError(f"{root}: dataset root folder not found")
    for pattern in patterns:
        for depth in ("", "*/"):
            hits = sorted(p for p in root.glob(depth + pattern) if p.suffix.lower() in SHEET_SUFFIXES + (".xls",))
            if hits:
                return hits[0]
    raise MertoolError(
        f"{root}: no {dataset} annotation sheet found (looked for {', '.join(patterns)}); pass --sheet FILE"
    )


def find_dir(base: Path, *names: str) -> Path | None:
    """A child folder of ``base`` whose name equals one of ``names`` ignoring case and
    punctuation (``sub01`` == ``SUB01``, ``EP02_01f`` == ``ep02-01f``)."""
    if not base.is_dir():
        return None
    keys = [norm(n) for n in names if n]
    for n in names:
        if n and (base / n).is_dir():
            return base / n
    children = {norm(p.name): p for p in sorted(base.iterdir()) if p.is_dir()}
    for k in keys:
        if k in children:
            return children[k]
    return None


def data_root(root: Path, probe: Callable[[Path], bool], dataset: str) -> Path:
    """``root`` or the first sub-folder (two levels down at most) where ``probe`` holds
    (lets users point --root at the unpacked archive rather than the exact folder)."""
    if not root.is_dir():
        raise MertoolError(f"{root}: dataset root folder not found")
    if probe(root):
        return root
    level = [root]
    for _ in range(2):
        level = [c for p in level for c in sorted(p.iterdir()) if c.is_dir()]
        for c in level:
            if probe(c):
                return c
    return root


@dataclasses.dataclass
class IndexReport:
    """What an adapter skipped, repaired and dropped (logged by :meth:`log`)."""

    dataset: str
    skipped: list[str] = dataclasses.field(default_factory=list)
    repaired: list[str] = dataclasses.field(default_factory=list)
    labels: LabelReport = dataclasses.field(default_factory=LabelReport)
    protocol: str = ""

    def log(self) -> None:
        if self.skipped:
            logger.warning(
                f"{self.dataset}: {len(self.skipped)} row(s) skipped: " + "; ".join(self.skipped[:20])
                + (" ..." if len(self.skipped) > 20 else "")
            )
        if self.repaired:
            logger.warning(
                f"{self.dataset}: {len(self.repaired)} key-frame issue(s): " + "; ".join(self.repaired[:20])
                + (" ..." if len(self.repaired) > 20 else "")
            )
        self.labels.log(self.dataset, self.protocol)


@dataclasses.dataclass
class Row:
    """One sheet row in adapter-neutral form (before frame lookup and validation)."""

    line: str  # "file:row" for messages
    sample_id: str
    subject: str
    clip: str
    folder: Path | None  # frames folder (None: not found)
    onset: object
    apex: object
    offset: object
    emotion: str
    aus: str = ""


def rows_to_samples(rows: list[Row], dataset: str, protocol: Protocol, report: IndexReport) -> list[Sample]:
    """Validate rows against their frame folders, repair key-frame quirks, apply the protocol.

    Quirks handled (each noted in ``report``): missing folder or no images (row skipped);
    onset missing, or beyond the last frame (skipped); offset 0/missing/before onset/beyond
    the last frame (set to the last frame); apex "/", -1, empty, or outside
    onset..offset (apex -1, ``apex_source`` ``missing``/``invalid``, for ``mertool
    keyframes`` to estimate); onset == apex (kept, noted; keyframes repairs it).
    """
    samples: list[Sample] = []
    seen: set[str] = set()
    for row in rows:
        sid = row.sample_id
        if sid in seen:
            report.skipped.append(f"{row.line} {sid} (duplicate sample)")
            continue
        if row.folder is None or not row.folder.is_dir():
            report.skipped.append(f"{row.line} {sid} (frames folder {row.folder or row.clip} not found)")
            continue
        probe = Sample(sid, row.subject, 0, -1, 0, "", dataset, row.clip, frames=str(row.folder))
        try:
            numbers = [n for n, _ in probe.frame_table()]
        except MertoolError:
            report.skipped.append(f"{row.line} {sid} (no images in {row.folder})")
            continue
        first, last = numbers[0], numbers[-1]
        onset = frame_number(row.onset)
        if onset is None or onset > last:
            report.skipped.append(f"{row.line} {sid} (onset {cell_text(row.onset)!r} unusable; frames {first}..{last})")
            continue
        onset = max(onset, first)
        offset = frame_number(row.offset)
        if offset is None or offset < onset or offset > last:
            report.repaired.append(f"{sid}: offset {cell_text(row.offset) or 'empty'!s} -> last frame {last}")
            offset = last
        apex, source = frame_number(row.apex), "sheet"
        if apex is None:
            apex, source = -1, "missing"
        elif not onset <= apex <= offset:
            report.repaired.append(f"{sid}: apex {apex} outside {onset}..{offset} (left for keyframes)")
            apex, source = -1, "invalid"
        elif apex == onset and offset > onset:
            report.repaired.append(f"{sid}: apex == onset {onset} (keyframes will re-estimate)")
        if not [n for n in numbers if onset <= n <= offset]:
            report.skipped.append(f"{row.line} {sid} (no frames between onset {onset} and offset {offset})")
            continue
        seen.add(sid)
        samples.append(
            Sample(
                sample_id=sid,
                subject=row.subject,
                onset=onset,
                apex=apex,
                offset=offset,
                label=normalise_label(row.emotion),
                dataset=dataset,
                clip=row.clip,
                frames=str(row.folder),
                aus=row.aus,
                apex_source=source,
            )
        )
    kept, report.labels = apply_protocol(samples, dataset, protocol)
    report.protocol = protocol.name
    return kept


def subject_number(value: object) -> int | None:
    """The integer in a subject cell (``6``, ``'006'``, ``'sub06'``, ``'S6'``); None if absent."""
    digits = re.findall(r"\d+", cell_text(value))
    return int(digits[-1]) if digits else None


def index_sheet(
    dataset: str,
    sheet_path: Path,
    columns: dict[str, Sequence[str]],
    required: Sequence[str],
    to_row: Callable[[dict, str], Row | str],
    protocol: Protocol,
) -> tuple[list[Sample], IndexReport]:
    """Read a sheet and turn each row into a Sample via the adapter's ``to_row``.

    ``to_row(record, line)`` returns a :class:`Row`, or a string: the reason to skip.
    """
    table = read_sheet(sheet_path, columns, required)
    report = IndexReport(dataset)
    rows: list[Row] = []
    for record in table.to_dict("records"):
        line = f"{sheet_path.name}:{record['_line']}"
        row = to_row(record, line)
        if isinstance(row, str):
            report.skipped.append(f"{line} ({row})")
        else:
            rows.append(row)
    samples = rows_to_samples(rows, dataset, protocol, report)
    return samples, report


def finish(samples: list[Sample], report: IndexReport, where: object) -> list[Sample]:
    """Log the report and refuse an empty result."""
    report.log()
    if not samples:
        raise MertoolError(f"{where}: no usable {report.dataset} samples (see the warnings above)")
    return samples
