"""Composite sets: several datasets under one 3-class protocol, subjects kept distinct.

``--root`` is a folder holding the component datasets' folders (names matched loosely:
``SMIC``, ``CASME2``/``CASME II``, ``SAMM``, ``CASME``, ``CAS(ME)^2``/``CASME^2``/``CASME_sq``).
Sample ids and subjects are prefixed with the component's name (``samm_006``).
A missing component is reported; the composite uses the others.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from ..errors import MertoolError
from ..log import logger
from ..samples import Sample
from ._registry import register_dataset
from .protocols import COMPOSITE_PARTS, DEFAULT_PROTOCOL, get_protocol
from .sheets import IndexReport

# Folder-name patterns per component (lower-case names; CAS(ME)^2 before CASME II).
_FOLDERS = {
    "casme-sq": re.compile(r"cas\(me\)\s*\^?\s*2|casme\s*\^\s*2|casme[\s_-]*sq|casme\(2\)"),
    "casme2": re.compile(r"^casme[\s_-]*(2|ii)\b|^casme[\s_-]*(2|ii)(?![\d^])|^casme2"),
    "casme": re.compile(r"^casme(?![\s_-]*(2|ii|3|iii|\^|\(|sq))|^casme[\s_-]*(1|i)(?![\w])"),
    "samm": re.compile(r"^samm"),
    "smic": re.compile(r"^smic"),
}
COMPOSITES = {name: (parts, DEFAULT_PROTOCOL[name]) for name, parts in COMPOSITE_PARTS.items()}


def find_component(root: Path, dataset: str) -> Path | None:
    """The sub-folder of ``root`` holding ``dataset`` (by its usual folder names)."""
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if _FOLDERS[dataset].search(child.name.lower()):
            return child
    return None


def _index_component(dataset: str, folder: Path, protocol: str) -> tuple[list[Sample], IndexReport]:
    from .casme import index_casme
    from .casme2 import index_casme2
    from .casme_sq import index_casme_sq
    from .samm import index_samm
    from .smic import index_smic

    if dataset == "smic":
        return index_smic(folder, protocol)
    fn = {"casme": index_casme, "casme2": index_casme2, "casme-sq": index_casme_sq, "samm": index_samm}[dataset]
    return fn(folder, None, protocol)


def index_composite(name: str, root: Path | None, protocol: str | None = None) -> tuple[list[Sample], dict[str, IndexReport]]:
    """Index every component found under ``root`` with the composite's protocol.

    Returns
    -------
    samples : list of Sample
        Prefixed ids and subjects (``casme2_sub01``), labels from the protocol.
    reports : dict
        Component -> its :class:`IndexReport`.
    """
    components, default = COMPOSITES[name]
    if root is None:
        raise MertoolError(f"--root is required for --dataset {name} (a folder holding {', '.join(components)})")
    if not root.is_dir():
        raise MertoolError(f"{root}: dataset root folder not found")
    proto = protocol or default
    for comp in components:
        get_protocol(proto, comp)  # every component must be covered
    samples: list[Sample] = []
    reports: dict[str, IndexReport] = {}
    missing = []
    for comp in components:
        folder = find_component(root, comp)
        if folder is None:
            missing.append(comp)
            continue
        part, reports[comp] = _index_component(comp, folder, proto)
        prefix = comp.replace("-", "")
        samples += [
            dataclasses.replace(s, sample_id=f"{prefix}_{s.sample_id}", subject=f"{prefix}_{s.subject}") for s in part
        ]
    if len(missing) == len(components):
        raise MertoolError(f"{root}: none of {', '.join(components)} found as sub-folders")
    if missing:
        logger.warning(f"{name}: component(s) not found under {root}: {', '.join(missing)}; using the others")
    return samples, reports


def _load(name: str, root: Path | None, protocol: str | None) -> list[Sample]:
    samples, reports = index_composite(name, root, protocol)
    for rep in reports.values():
        rep.log()
    if not samples:
        raise MertoolError(f"{root}: no usable samples for {name}")
    return samples


@register_dataset("megc2019", "MEGC 2019 composite 3-class: --root holding SMIC, CASME2, SAMM folders (442 samples, 68 subjects)", pre_cropped=None)
def load_megc2019(root: Path | None = None, sheet: Path | None = None, protocol: str | None = None, **_: object) -> list[Sample]:
    return _load("megc2019", root, protocol)


@register_dataset("offtanet3", "Off-TANet 3-class set: --root holding CASME, CASME2, CAS(ME)^2 folders (294 samples, 49 subjects)", pre_cropped=None)
def load_offtanet3(root: Path | None = None, sheet: Path | None = None, protocol: str | None = None, **_: object) -> list[Sample]:
    return _load("offtanet3", root, protocol)
