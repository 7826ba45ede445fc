"""Action-unit (AU) strings from annotation sheets -> AU lists and the 21-AU vector.

Sheets write AUs as FACS codes joined by ``+`` (also ``,`` ``;`` ``/`` or spaces), with
optional laterality prefixes (``L``/``R``/``B``/``U``/``T``: left, right, bilateral,
unilateral, top), an ``AU`` prefix, intensity suffixes ``A``-``E`` and a trailing ``?`` for
an uncertain code: ``"4+L10"``, ``"R12"``, ``"AU12"``, ``"12B"``, ``"1+2+L4"``. Laterality
and intensity are dropped: FaceSleuth's AU head uses presence only. A bare ``?`` or a
code outside :data:`AU_ORDER` is *unknown*: returned for reporting, never fatal.
"""

from __future__ import annotations

import math
import re

import numpy as np

#: The fixed AU order of FaceSleuth's 21-AU binary target vector.
AU_ORDER: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 16, 17, 18, 20, 23, 24, 25, 26, 28, 45)
_INDEX = {au: i for i, au in enumerate(AU_ORDER)}
_SPLIT = re.compile(r"[+,;/\s]+")
_TOKEN = re.compile(r"^(?:AU)?([LRBUT])?(?:AU)?(\d{1,3})([A-E])?\??$", re.IGNORECASE)
_AU_SPACE = re.compile(r"AU\s+(?=[LRBUT]?\d)", re.IGNORECASE)
_EMPTY = {"", "nan", "none", "na", "n/a", "-", "/"}


def _as_text(text: object) -> str:
    """Sheet cells arrive as str, int, float (12.0) or NaN; normalise to a string."""
    if text is None:
        return ""
    if isinstance(text, float):
        if math.isnan(text):
            return ""
        if text == int(text):
            return str(int(text))
    if isinstance(text, (int, np.integer)):
        return str(int(text))
    return str(text).strip()


def parse_aus(text: object) -> tuple[list[int], list[str]]:
    """Split an AU cell into known AU numbers and unknown tokens.

    Parameters
    ----------
    text : str, int, float or None
        The sheet's AU cell, e.g. ``"4+L10"``; NaN/None/empty/``"/"`` mean no AUs.

    Returns
    -------
    known : list of int
        Distinct AUs that are in :data:`AU_ORDER`, ascending.
    unknown : list of str
        Tokens that are ``?``, unparseable, or AUs outside :data:`AU_ORDER`
        (e.g. ``"43"``), in order of appearance.

    Examples
    --------
    >>> parse_aus("1+2+L4")
    ([1, 2, 4], [])
    >>> parse_aus("R12, 43, ?")
    ([12], ['43', '?'])
    """
    cell = _as_text(text)
    if cell.lower() in _EMPTY:
        return [], []
    cell = _AU_SPACE.sub("AU", cell)  # "AU 12" is one code, not two tokens
    known: set[int] = set()
    unknown: list[str] = []
    for token in _SPLIT.split(cell):
        token = token.strip().strip("()[]")
        if not token:
            continue
        match = _TOKEN.match(token)
        if match is None:
            unknown.append(token)
            continue
        au = int(match.group(2))
        if au in _INDEX:
            known.add(au)
        else:
            unknown.append(token)
    return sorted(known), unknown


def au_vector(text: object) -> np.ndarray:
    """The 21-AU binary presence vector (float32, order :data:`AU_ORDER`) of an AU cell."""
    vec = np.zeros(len(AU_ORDER), dtype=np.float32)
    for au in parse_aus(text)[0]:
        vec[_INDEX[au]] = 1.0
    return vec


def au_matrix(cells: list[object]) -> tuple[np.ndarray, dict[str, int]]:
    """Stack :func:`au_vector` over many cells and count the unknown tokens.

    Returns
    -------
    matrix : ndarray, float32, shape (N, 21)
    unknown : dict
        Unknown token -> number of cells it occurred in (for a one-line report).
    """
    matrix = np.zeros((len(cells), len(AU_ORDER)), dtype=np.float32)
    counts: dict[str, int] = {}
    for row, cell in enumerate(cells):
        known, unknown = parse_aus(cell)
        for au in known:
            matrix[row, _INDEX[au]] = 1.0
        for token in dict.fromkeys(unknown):
            counts[token] = counts.get(token, 0) + 1
    return matrix, counts
