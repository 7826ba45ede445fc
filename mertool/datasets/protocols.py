"""Class maps (protocols) as data, label normalisation and the rare-class filter.

A protocol maps each dataset's sheet emotion to a class, or to ``None`` (known emotion,
excluded by this protocol: e.g. fear/sadness in the CASME II 5-class protocol). An
emotion absent from the map is *unknown*: listed in the report and dropped.

=============  ==========================================================================
name           classes (source)
=============  ==========================================================================
casme2-5       happiness, repression, disgust, surprise, others (CASME II; fear/sadness out)
samm-5         happiness, anger, contempt, surprise, other (SAMM; disgust/fear/sadness out)
mmew-7         the seven MMEW emotions of the MMEW paper; ``--min-class-count 10`` drops
               anger (8 samples) and leaves DIANet's six classes
megc2019-3     positive / negative / surprise over SMIC-HS, CASME II, SAMM (MEGC 2019)
offtanet-3     positive / negative / surprise over CASME, CASME II, CAS(ME)^2 (Off-TANet
               Table 1: happiness | disgust, repression (+ sadness in CASME) | surprise)
raw            each dataset's own (normalised) emotion names, unknown ones dropped
=============  ==========================================================================
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from ..errors import MertoolError, UsageError
from ..log import logger
from ..samples import Sample

# Spelling variants seen in the sheets -> one name.
_ALIASES = {
    "happy": "happiness",
    "sad": "sadness",
    "angry": "anger",
    "disgusted": "disgust",
    "fearful": "fear",
    "surprised": "surprise",
    "other": "others",
    "repressed": "repression",
    "positive": "positive",
    "pos": "positive",
    "negative": "negative",
    "neg": "negative",
    "sur": "surprise",
}

#: Emotions each dataset's sheet/folders use (after :func:`normalise_label`).
EMOTIONS: dict[str, tuple[str, ...]] = {
    "casme2": ("happiness", "disgust", "repression", "surprise", "fear", "sadness", "others"),
    "samm": ("happiness", "anger", "contempt", "surprise", "disgust", "fear", "sadness", "others"),
    "mmew": ("happiness", "anger", "surprise", "disgust", "fear", "sadness", "others"),
    "casme": ("happiness", "amusement", "disgust", "repression", "surprise", "contempt", "fear", "sadness", "tense"),
    "casme-sq": ("positive", "negative", "surprise", "others"),
    "casme3": ("happiness", "disgust", "fear", "surprise", "sadness", "anger", "others"),
    "smic": ("positive", "negative", "surprise"),
}


#: The component datasets of each composite set.
COMPOSITE_PARTS: dict[str, tuple[str, ...]] = {
    "megc2019": ("smic", "casme2", "samm"),
    "offtanet3": ("casme", "casme2", "casme-sq"),
}


def normalise_label(text: object) -> str:
    """Lower-case, strip, collapse spaces and apply spelling aliases (``Happy`` -> ``happiness``)."""
    label = " ".join(str(text if text is not None else "").split()).lower()
    if label in ("nan", "none"):
        return ""
    return _ALIASES.get(label, label)


@dataclasses.dataclass(frozen=True)
class Protocol:
    """A class map: per dataset, emotion -> class (or ``None`` = excluded)."""

    name: str
    classes: tuple[str, ...]
    maps: dict[str, dict[str, str | None]]
    description: str = ""

    def covers(self, dataset: str) -> bool:
        """True if there is a map for ``dataset`` (for a composite: for all its parts)."""
        parts = COMPOSITE_PARTS.get(dataset, (dataset,))
        return all(p in self.maps for p in parts)


def _only(dataset: str, keep: dict[str, str]) -> dict[str, str | None]:
    """Map ``keep`` and mark every other known emotion of ``dataset`` as excluded."""
    out: dict[str, str | None] = {e: None for e in EMOTIONS[dataset]}
    out.update(keep)
    return out


_MEGC_NEG_SAMM = {e: "negative" for e in ("anger", "contempt", "disgust", "fear", "sadness")}
_MEGC_CASME2 = {"happiness": "positive", "disgust": "negative", "repression": "negative", "surprise": "surprise"}
# Off-TANet Table 1 lists sadness under negative; its CASME II counts (88) equal MEGC's, so
# sadness is negative for CASME only.
_OFFTANET = {"happiness": "positive", "disgust": "negative", "repression": "negative", "sadness": "negative", "surprise": "surprise"}

PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            "casme2-5",
            ("happiness", "repression", "disgust", "surprise", "others"),
            {"casme2": _only("casme2", {e: e for e in ("happiness", "repression", "disgust", "surprise", "others")})},
            "CASME II 5-class (fear and sadness dropped)",
        ),
        Protocol(
            "samm-5",
            ("happiness", "anger", "contempt", "surprise", "other"),
            {"samm": _only("samm", {"happiness": "happiness", "anger": "anger", "contempt": "contempt", "surprise": "surprise", "others": "other"})},
            "SAMM 5-class (disgust, fear, sadness dropped)",
        ),
        Protocol(
            "mmew-7",
            ("happiness", "anger", "surprise", "disgust", "fear", "sadness", "others"),
            {"mmew": {e: e for e in EMOTIONS["mmew"]}},
            "MMEW's seven emotions (its paper); --min-class-count 10 gives DIANet's six",
        ),
        Protocol(
            "megc2019-3",
            ("negative", "positive", "surprise"),
            {
                "smic": {"positive": "positive", "negative": "negative", "surprise": "surprise"},
                "casme2": _only("casme2", _MEGC_CASME2),
                "samm": _only("samm", {"happiness": "positive", "surprise": "surprise", **_MEGC_NEG_SAMM}),
            },
            "MEGC 2019 composite 3-class (others dropped)",
        ),
        Protocol(
            "offtanet-3",
            ("negative", "positive", "surprise"),
            {
                "casme": _only("casme", _OFFTANET),
                "casme2": _only("casme2", _MEGC_CASME2),
                "casme-sq": _only("casme-sq", {"positive": "positive", "negative": "negative", "surprise": "surprise"}),
            },
            "Off-TANet 3-class over CASME, CASME II, CAS(ME)^2 (others dropped)",
        ),
        Protocol(
            "raw",
            (),
            {d: {e: e for e in emotions} for d, emotions in EMOTIONS.items()},
            "each dataset's own emotion names",
        ),
    )
}

#: The protocol a dataset uses when --protocol is not given.
DEFAULT_PROTOCOL = {
    "casme2": "casme2-5",
    "samm": "samm-5",
    "mmew": "mmew-7",
    "casme": "raw",
    "casme-sq": "raw",
    "casme3": "raw",
    "smic": "raw",
    "megc2019": "megc2019-3",
    "offtanet3": "offtanet-3",
}


def get_protocol(name: str | None, dataset: str) -> Protocol:
    """The named protocol (or the dataset's default), checked to cover ``dataset``."""
    name = name or DEFAULT_PROTOCOL.get(dataset, "raw")
    if name not in PROTOCOLS:
        raise MertoolError(f"unknown protocol {name!r}; known: {', '.join(sorted(PROTOCOLS))}")
    proto = PROTOCOLS[name]
    if not proto.covers(dataset):
        usable = sorted(n for n, p in PROTOCOLS.items() if p.covers(dataset))
        raise UsageError(f"protocol {name!r} has no class map for dataset {dataset!r}; use one of {', '.join(usable)}")
    return proto


@dataclasses.dataclass
class LabelReport:
    """What :func:`apply_protocol` did: excluded (by the protocol) and unknown labels with counts."""

    excluded: Counter = dataclasses.field(default_factory=Counter)
    unknown: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # label -> sample ids

    def log(self, dataset: str, protocol: str) -> None:
        if self.excluded:
            logger.info(
                f"{dataset}: protocol {protocol} leaves out "
                + ", ".join(f"{k}={v}" for k, v in sorted(self.excluded.items()))
            )
        if self.unknown:
            logger.warning(
                f"{dataset}: {sum(map(len, self.unknown.values()))} sample(s) with unknown emotion label(s) dropped: "
                + "; ".join(f"{k!r} ({', '.join(v[:5])}{' ...' if len(v) > 5 else ''})" for k, v in sorted(self.unknown.items()))
            )


def apply_protocol(samples: list[Sample], dataset: str, protocol: Protocol) -> tuple[list[Sample], LabelReport]:
    """Relabel samples (whose ``label`` holds the normalised sheet emotion) by the protocol.

    Returns
    -------
    kept : list of Sample
        Samples whose emotion maps to a class, relabelled (new objects).
    report : LabelReport
        Emotions excluded by the protocol and unknown emotions (with sample ids).
    """
    table = protocol.maps[dataset]
    report = LabelReport()
    kept: list[Sample] = []
    for s in samples:
        emotion = normalise_label(s.label)
        if emotion not in table:
            report.unknown.setdefault(emotion or "<empty>", []).append(s.sample_id)
            continue
        cls = table[emotion]
        if cls is None:
            report.excluded[emotion] += 1
            continue
        kept.append(dataclasses.replace(s, label=cls))
    return kept, report


def filter_rare(samples: list[Sample], min_count: int, classes: tuple[str, ...] = ()) -> tuple[list[Sample], dict[str, int]]:
    """Drop classes with fewer than ``min_count`` samples (DIANet uses 10).

    Parameters
    ----------
    samples : list of Sample
    min_count : int
        Threshold; 0 or 1 keeps everything.
    classes : tuple of str
        The protocol's declared classes; one with no samples at all is reported too.

    Returns
    -------
    kept : list of Sample
    dropped : dict
        Class -> number of samples it had (0 for a declared class with none).

    Raises
    ------
    MertoolError
        ``min_count`` negative, or the threshold leaves fewer than two classes.
    """
    if min_count < 0:
        raise MertoolError(f"--min-class-count must be >= 0, got {min_count}")
    counts = Counter(s.label for s in samples)
    for c in classes:
        counts.setdefault(c, 0)
    dropped = {c: n for c, n in sorted(counts.items()) if n < max(min_count, 1)}
    kept = [s for s in samples if s.label not in dropped]
    left = sorted({s.label for s in kept})
    if min_count > 1 and len(left) < 2:
        raise MertoolError(
            f"after the class filter (min {min_count} samples) only {len(left)} class(es) remain "
            f"({', '.join(left) or 'none'}); counts were "
            + ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        )
    return kept, dropped


def log_dropped(dropped: dict[str, int], min_count: int) -> None:
    """One line per kind: classes removed by the threshold, declared classes left empty."""
    small = {c: n for c, n in dropped.items() if n > 0}
    empty = [c for c, n in dropped.items() if n == 0]
    if small:
        logger.warning(
            f"class filter (min {min_count}) dropped " + ", ".join(f"{c} ({n} samples)" for c, n in small.items())
        )
    if empty:
        logger.warning(f"class(es) with no samples: {', '.join(empty)}")
