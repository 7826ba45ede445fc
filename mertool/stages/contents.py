"""What a stage file's values mean beyond their shapes: the flow encoding, samples per dataset.

Flow encodings (the values of the u, v, strain planes of a ``flow`` stage file):

``signed``
    Displacement, raw or divided by the largest magnitude: zero is no motion, and a
    mirrored face has ``u -> -u``. ``mertool flow --normalise none|magnitude``, and
    ``mertool import`` of arrays.
``minmax-unit``
    Each plane min-max scaled to 0..1 per sample. Mirroring gives ``u -> 1 - u``
    (negating u swaps its minimum and maximum, so this is exact). ``mertool flow
    --normalise minmax``, and ``mertool import --scale unit`` of images.
``minmax-byte``
    The same at 0..255: the widely shared composite (MEGC 2019) u/v/strain images as
    OpenCV reads them, ``u -> 255 - u``. ``mertool flow --normalise minmax255``, and
    ``mertool import --scale raw`` of 8-bit images.

``unknown``: a flow file whose encoding was not recorded (an ``import`` from before
the encoding was, or a normalisation this version does not know).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..encodings import ENCODINGS
from ..errors import MertoolError
from .stagefile import StageFile, open_stage

UNKNOWN = "unknown"
#: ``mertool flow``'s ``normalise`` values and the encoding each gives.
NORMALISE_ENCODING = {"none": "signed", "magnitude": "signed", "minmax": "minmax-unit", "minmax255": "minmax-byte"}
#: How to make features of each encoding (for messages).
HOW_TO_MAKE = {
    "signed": "`mertool flow --normalise none` (or magnitude), or `mertool import` of displacement arrays",
    "minmax-unit": "`mertool flow --normalise minmax`, or `mertool import --scale unit` of images",
    "minmax-byte": "`mertool flow --normalise minmax255`, or `mertool import --scale raw` of 8-bit images",
}


def flow_encoding(stage_file: StageFile | str | Path) -> str:
    """How a flow stage file's u, v, strain planes are encoded (see the module notes).

    Parameters
    ----------
    stage_file : StageFile or path
        A ``flow`` stage file (from ``mertool flow`` or ``mertool import``).

    Returns
    -------
    str
        One of :data:`ENCODINGS`, or :data:`UNKNOWN` when the file does not say.

    Raises
    ------
    MertoolError
        Not a stage file, or a stage other than ``flow``.
    """
    sf = open_stage(stage_file)
    if sf.stage != "flow":
        raise MertoolError(f"{sf.path}: a {sf.stage!r} stage file holds no flow, so it has no flow encoding")
    if sf.params.get("source") == "import":
        found = sf.params.get("encoding", UNKNOWN)
    else:
        # ``mertool flow`` records its normalisation; a file that does not is taken at its default
        found = NORMALISE_ENCODING.get(sf.params.get("normalise", "none"), UNKNOWN)
    return found if found in ENCODINGS else UNKNOWN


def dataset_counts(stage_file: StageFile | str | Path) -> dict[str, int]:
    """Samples per source dataset (the per-sample ``dataset`` meta), sorted by name.

    A file without that field counts every sample under ``""``.
    """
    sf = open_stage(stage_file)
    values = sf.meta.get("dataset", [""] * len(sf))
    return dict(sorted(Counter(str(v) for v in values).items()))
