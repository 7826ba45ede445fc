"""SMIC-HS (University of Oulu): labels come from folders; there is no apex annotation.

Layout ``HS/s{N}/micro/{positive,negative,surprise}/s{N}_{po,ne,sur}_{NN}/image{N}.bmp``.
Each clip folder holds just the micro-expression, so onset/offset are its first/last
frames and the apex is left -1 for ``mertool keyframes`` to spot. Default protocol ``raw``.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import MertoolError
from ..samples import Sample
from ._registry import register_dataset
from .protocols import get_protocol
from .sheets import IndexReport, Row, data_root, find_dir, finish, rows_to_samples

_SUBJECT = re.compile(r"s\d+", re.IGNORECASE)


def _subjects(path: Path) -> list[Path]:
    return [p for p in sorted(path.iterdir()) if p.is_dir() and _SUBJECT.fullmatch(p.name) and find_dir(p, "micro")]


def index_smic(root: Path | None, protocol: str | None = None) -> tuple[list[Sample], IndexReport]:
    """Walk SMIC-HS; returns samples and the report (empty clip folders are skipped)."""
    proto = get_protocol(protocol, "smic")
    if root is None:
        raise MertoolError("--root is required for --dataset smic")
    if not root.is_dir():
        raise MertoolError(f"{root}: dataset root folder not found")
    hs = find_dir(root, "HS") or data_root(root, lambda p: find_dir(p, "HS") is not None, "smic")
    base = data_root(find_dir(hs, "HS") or hs, lambda p: bool(_subjects(p)), "smic")
    subjects = _subjects(base)
    if not subjects:
        raise MertoolError(f"{root}: no SMIC subject folders (s1/micro/...) found; point --root at SMIC (or its HS folder)")
    report = IndexReport("smic")
    rows: list[Row] = []
    for sub in subjects:
        micro = find_dir(sub, "micro")
        for emotion_dir in sorted(p for p in micro.iterdir() if p.is_dir()):
            for clip in sorted(p for p in emotion_dir.iterdir() if p.is_dir()):
                rows.append(Row(str(clip.relative_to(base)), clip.name, sub.name.lower(), clip.name, clip,
                                0, "", 10**9, emotion_dir.name))
    samples = rows_to_samples(rows, "smic", proto, report)
    report.repaired = []  # offsets set to the last frame by design, not a sheet quirk
    return samples, report


@register_dataset("smic", "SMIC-HS: --root folder with HS/s1/micro/... (no apex: run mertool keyframes; protocol raw)", pre_cropped=False)
def load_smic(root: Path | None = None, sheet: Path | None = None, protocol: str | None = None, **_: object) -> list[Sample]:
    samples, report = index_smic(root, protocol)
    return finish(samples, report, root)
