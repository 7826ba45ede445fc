"""The ``index`` stage: a dataset's clips -> samples.csv (one row per clip).

The dataset adapters (:mod:`mertool.datasets`) read the annotation sheets; this writes
their samples where every later stage reads them.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

from ..datasets import load_dataset
from ..samples import Sample, write_samples


@dataclasses.dataclass(frozen=True)
class IndexResult:
    """The samples.csv written and its rows."""

    path: Path
    samples: list[Sample]

    def summary(self) -> str:
        """``OUT: N samples, S subjects, labels a=1, b=2``."""
        labels = Counter(s.label for s in self.samples)
        subjects = len({s.subject for s in self.samples})
        counts = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
        return f"{self.path}: {len(self.samples)} samples, {subjects} subjects, labels {counts}"


def run_index(
    dataset: str,
    out: str | Path,
    *,
    root: str | Path | None = None,
    sheet: str | Path | None = None,
    protocol: str | None = None,
    min_class_count: int = 0,
) -> IndexResult:
    """Index a dataset with the named adapter and write samples.csv.

    Parameters
    ----------
    dataset : str
        Adapter name (``mertool datasets``).
    out : path
        samples.csv to write.
    root, sheet : path, optional
        Dataset folder and annotation sheet / manifest, as the adapter needs them.
    protocol : str, optional
        Class map of a published dataset (default: the dataset's own).
    min_class_count : int
        Drop classes with fewer samples (reported).

    Raises
    ------
    MertoolError
        Unknown adapter or protocol, missing or malformed dataset files.
    """
    samples = load_dataset(dataset, root=root, sheet=sheet, protocol=protocol, min_class_count=min_class_count)
    return IndexResult(write_samples(samples, out), samples)
