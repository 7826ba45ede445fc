"""Long-video spotting sets: CAS(ME)^2 long videos, SAMM long videos, CAS(ME)^3 part A.

Each adapter reads the set's interval annotations, one sample per annotated expression
(micro and macro), whose ``frames`` is the whole long video, ``clip`` the video's folder
name and ``label`` the expression type, ``micro`` or ``macro``, as the sheet gives it (its
type column, or which sheet; where it says neither, ``""``: ``mertool spot --evaluate``
then types the interval by its length, micro at most 0.5 s as MEGC).
``mertool spot`` spots in every video such a samples.csv names and ``--evaluate`` scores
against its intervals; ``mertool align``/``flow`` take the rows as clips as they are.

- ``casme-sq-long`` (30 fps): ``CAS(ME)^2code_final*.xlsx`` as :mod:`.casme_sq` reads it
  (headerless first sheet: participant, expression name, onset, apex, offset, AUs,
  emotion, type; naming-rule sheets), macro-expressions included; frames
  ``rawpic/s{NN}/{NN}_{code}{name}/img{N}.jpg``.
- ``samm-long`` (200 fps): ``SAMM_LongVideos_V*.xlsx`` (header row found by scanning):
  Subject, Filename (``006_1_2``: video ``006_1``, its second expression), Inducement
  Code, Onset, Apex, Offset, Duration, Type (``Micro - 1/2``, ``Macro``), Action Units,
  Notes; frames ``{video}/{video}_{frame}.jpg``.
- ``casme3-long`` (30 fps): part A's ``CAS(ME)3_part_A_ME_label*`` (micro) and
  ``*part_A_MaE_label*`` (macro) sheets: Subject, Filename, Onset, Apex, Offset, AU,
  Objective class, emotion; frames ``{Subject}/{Filename}/color/{N}.jpg``.

Bad rows, one warning line each: an interval outside its video's frames (or offset
before onset) is left out; intervals of one video that overlap are kept (the MEGC
evaluation matches each true interval at most once) but named.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..errors import MertoolError
from ..log import logger
from ..samples import Sample
from ._registry import register_dataset
from .casme3 import COLUMNS as CASME3_COLUMNS
from .casme_sq import clip_folder, main_table, naming_rules
from .sheets import cell_text, data_root, find_dir, find_sheet, frame_number, read_sheet, subject_number

#: Frame rate of each long-video set (``mertool spot`` uses it when ``--fps`` is not given).
FRAME_RATES = {"casme-sq-long": 30.0, "samm-long": 200.0, "casme3-long": 30.0}

SAMM_COLUMNS = {
    "subject": ("Subject",),
    "filename": ("Filename", "File name"),
    "onset": ("Onset", "Onset Frame"),
    "apex": ("Apex", "Apex Frame"),
    "offset": ("Offset", "Offset Frame"),
    "type": ("Type",),
    "aus": ("Action Units", "AUs"),
}
SAMM_REQUIRED = ("subject", "filename", "onset", "apex", "offset", "type")
SAMM_SHEETS = ("SAMM_LongVideos*", "SAMM*Long*", "*LongVideos*")
CASME3_SHEETS = {"micro": ("CAS(ME)3_part_A_ME_label*", "*part_A*ME_label*"), "macro": ("*part_A*MaE_label*", "*part_A*MaE*")}


def frame_rate(dataset: str) -> float | None:
    """The frame rate of a long-video set (None for other datasets)."""
    return FRAME_RATES.get(dataset)


def kind_of(text: str) -> str:
    """``micro`` or ``macro`` from a type cell (``micro-expression``, ``Micro - 1/2``,
    ``Macro``, or the sheet's name), else ``""`` (``mertool spot --evaluate`` then types
    the interval by its length)."""
    text = text.lower()
    return "macro" if "macro" in text else "micro" if "micro" in text else ""


def check_intervals(
    rows: Sequence[tuple[str, str, int, int]], ranges: Mapping[str, tuple[int, int]]
) -> tuple[set[int], list[str]]:
    """Bad intervals of an annotation: outside their video, or overlapping another.

    Parameters
    ----------
    rows : sequence of (where, video, onset, offset)
        ``where`` names the row in messages (``sheet.xlsx:12``).
    ranges : mapping
        video -> (first frame, last frame); a video without a range is not checked
        against one.

    Returns
    -------
    outside : set of int
        Indices of rows to leave out (outside the video, or offset before onset).
    lines : list of str
        One message per bad row, in row order.
    """
    outside: set[int] = set()
    lines: dict[int, str] = {}
    for i, (where, video, onset, offset) in enumerate(rows):
        first, last = ranges.get(video, (onset, offset))
        if offset < onset or onset < first or offset > last:
            outside.add(i)
            lines[i] = f"{where}: interval {onset}..{offset} lies outside video {video} (frames {first}..{last}); left out"
    kept = sorted((i for i in range(len(rows)) if i not in outside), key=lambda i: (rows[i][1], rows[i][2]))
    for a, b in zip(kept, kept[1:]):
        (_, va, oa, fa), (wb, vb, ob, fb) = rows[a], rows[b]
        if va == vb and ob <= fa:
            lines.setdefault(b, f"{wb}: interval {ob}..{fb} overlaps {oa}..{fa} ({rows[a][0]}) in video {vb}; kept")
    return outside, [lines[i] for i in sorted(lines)]


Found = tuple[str, Sample, tuple[int, int], str]  # where, sample, its video's frame range, type cell


def _samples(dataset: str, found: list[Found]) -> list[Sample]:
    """Samples of rows whose video was found: checked (:func:`check_intervals`) and typed."""
    ranges = {s.clip: frames for _, s, frames, _ in found}
    outside, lines = check_intervals([(w, s.clip, s.onset, s.offset) for w, s, _, _ in found], ranges)
    for line in lines:
        logger.warning(line)
    out, seen = [], set()
    for i, (where, s, _, text) in enumerate(found):
        if i in outside:
            continue
        if s.sample_id in seen:
            logger.warning(f"{where}: sample {s.sample_id} listed twice; the first is used")
            continue
        seen.add(s.sample_id)
        if s.apex != -1 and not s.onset <= s.apex <= s.offset:
            s.apex, s.apex_source = -1, "invalid"
        s.label = kind_of(text)
        out.append(s)
    if not out:
        raise MertoolError(f"{dataset}: no usable intervals (see the warnings above)")
    return out


#: What an adapter's ``locate(record)`` gives: (sample id, subject, video name), frames folder.
Located = tuple[tuple[str, str, str], "Path | None"]


def _row(dataset: str, where: str, rec: dict, located: Located) -> Found | str:
    """One sheet row as a sample with its video's frame range, or why it is skipped."""
    (sid, subject, video), folder = located
    onset, offset, apex = frame_number(rec["onset"]), frame_number(rec["offset"]), frame_number(rec["apex"])
    if folder is None or not folder.is_dir():
        return f"{where}: no frames folder for {sid} (video {video or '?'}); row skipped"
    if onset is None or offset is None:
        return f"{where}: onset {cell_text(rec['onset'])!r} / offset {cell_text(rec['offset'])!r} unusable; row skipped"
    sample = Sample(sid, subject, onset, -1 if apex is None else apex, offset, "", dataset, video, frames=str(folder),
                    aus=cell_text(rec.get("aus", "")), apex_source="sheet" if apex is not None else "missing")
    try:
        numbers = [n for n, _ in sample.frame_table()]
    except MertoolError as exc:
        return f"{where}: {exc}; row skipped"
    return where, sample, (numbers[0], numbers[-1]), cell_text(rec.get("type", ""))


def _collect(dataset: str, rows: list[tuple[str, dict]], locate: Callable[[dict], Located]) -> list[Sample]:
    found = []
    for where, rec in rows:
        row = _row(dataset, where, rec, locate(rec))
        if isinstance(row, str):
            logger.warning(row)
        else:
            found.append(row)
    return _samples(dataset, found)


def _records(sheet: Path, table) -> list[tuple[str, dict]]:
    return [(f"{sheet.name}:{rec['_line']}", rec) for rec in table.to_dict("records")]


@register_dataset("casme-sq-long", f"CAS(ME)^2 long videos ({FRAME_RATES['casme-sq-long']:g} fps): --root with rawpic/s15.. and CAS(ME)^2code_final.xlsx; micro and macro intervals", pre_cropped=False)
def load_casme_sq_long(root: Path | None = None, sheet: Path | None = None, **_: object) -> list[Sample]:
    from .casme_sq import SHEETS

    sheet_path = find_sheet(root, sheet, SHEETS, "casme-sq-long")
    subjects, videos = naming_rules(sheet_path)
    base = data_root(root or sheet_path.parent, lambda p: _has(p, r"s\d+"), "casme-sq-long")

    def locate(rec: dict) -> Located:
        number, name = subject_number(rec["subject"]), cell_text(rec["filename"])
        code = subjects.get(number, number) if number is not None else 0
        folder = clip_folder(base, code, name, videos) if number is not None and name else None
        return (f"s{code:02d}_{name}", f"s{code:02d}", folder.name if folder else ""), folder

    return _collect("casme-sq-long", _records(sheet_path, main_table(sheet_path)), locate)


@register_dataset("samm-long", f"SAMM long videos ({FRAME_RATES['samm-long']:g} fps): --root with 006_1.. and SAMM_LongVideos_V*.xlsx; micro and macro intervals", pre_cropped=False)
def load_samm_long(root: Path | None = None, sheet: Path | None = None, **_: object) -> list[Sample]:
    sheet_path = find_sheet(root, sheet, SAMM_SHEETS, "samm-long")
    base = data_root(root or sheet_path.parent, lambda p: _has(p, r"\d{3}_\d+"), "samm-long")

    def locate(rec: dict) -> Located:
        name, number = cell_text(rec["filename"]), subject_number(rec["subject"])
        video = "_".join(name.split("_")[:2])
        subject = f"{number:03d}" if number is not None else cell_text(rec["subject"])
        return (name, subject, video), find_dir(base, video) if video else None

    table = read_sheet(sheet_path, SAMM_COLUMNS, SAMM_REQUIRED)
    return _collect("samm-long", _records(sheet_path, table), locate)


@register_dataset("casme3-long", f"CAS(ME)^3 part A long videos ({FRAME_RATES['casme3-long']:g} fps): --root with spNO.* and the part A ME and MaE label sheets", pre_cropped=False)
def load_casme3_long(root: Path | None = None, sheet: Path | None = None, **_: object) -> list[Sample]:
    if root is None:
        raise MertoolError("--root is required for --dataset casme3-long (it reads the ME and the MaE sheet)")
    base = data_root(root, lambda p: _has(p, r"spno.*"), "casme3-long")
    rows: list[tuple[str, dict]] = []
    for kind, patterns in CASME3_SHEETS.items():
        path = sheet if sheet is not None and kind == "micro" else find_sheet(root, None, patterns, "casme3-long")
        table = read_sheet(path, CASME3_COLUMNS, ("subject", "filename", "onset", "apex", "offset"))
        rows += [(where, {**rec, "type": kind}) for where, rec in _records(path, table)]

    def locate(rec: dict) -> Located:
        subject, name = cell_text(rec["subject"]), cell_text(rec["filename"])
        folder = find_dir(find_dir(base, subject) or base / subject, name) if subject and name else None
        if folder is not None and find_dir(folder, "color"):
            folder = find_dir(folder, "color")
        sid = f"{subject}_{name}_{'me' if rec['type'] == 'micro' else 'mae'}{cell_text(rec['onset'])}"
        return (sid, subject, f"{subject}_{name}"), folder

    return _collect("casme3-long", rows, locate)


def _has(path: Path, pattern: str) -> bool:
    """Whether ``path`` holds a folder whose name matches ``pattern`` (ignoring case)."""
    return any(c.is_dir() and re.fullmatch(pattern, c.name, re.IGNORECASE) for c in path.iterdir())
