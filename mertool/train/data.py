"""Load a stage file into memory for training, as a model's :class:`InputSpec` asks.

One contiguous read per stacked array (the 3-class flow cache is ~44 MB), labels turned
into class indices (class names sorted, recorded in the run), subjects, source datasets
and sample ids kept, and meta fields the model consumes (``aus`` -> 21-d float vector)
stacked too. A flow file's encoding (:func:`~mertool.stages.contents.flow_encoding`) is
checked against the one the model expects, and kept for the augmentations.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np

from ..stages.contents import HOW_TO_MAKE, UNKNOWN, flow_encoding
from ..stages.stagefile import StageFile, open_stage
from ..errors import MertoolError
from ..log import logger
from ..models import InputSpec


@dataclasses.dataclass
class TrainData:
    """A labelled data set in memory.

    Attributes
    ----------
    inputs : dict of str -> ndarray
        Model keyword -> N x ... float32 array (stacked arrays and meta vectors).
    y : ndarray
        N class indices into ``classes``.
    classes : list of str
        Sorted class names.
    subjects, sample_ids : list of str
    datasets : list of str
        Each sample's source dataset (the file's ``dataset`` meta; ``""`` where it has none).
    path, key : str
        Source file and its stage key (provenance).
    dropped : dict
        Class name -> number of samples dropped by ``min_class_samples``.
    encoding : str or None
        The flow encoding of a ``flow`` file (``signed``, ``minmax-unit``,
        ``minmax-byte`` or ``unknown``); None for other stages.
    """

    inputs: dict[str, np.ndarray]
    y: np.ndarray
    classes: list[str]
    subjects: list[str]
    sample_ids: list[str]
    datasets: list[str]
    path: str
    key: str
    dropped: dict[str, int] = dataclasses.field(default_factory=dict)
    encoding: str | None = None

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: np.ndarray) -> "TrainData":
        return dataclasses.replace(
            self,
            inputs={k: v[idx] for k, v in self.inputs.items()},
            y=self.y[idx],
            subjects=[self.subjects[i] for i in idx],
            sample_ids=[self.sample_ids[i] for i in idx],
            datasets=[self.datasets[i] for i in idx],
        )


def meta_vectors(field: str, values: list, path: Path) -> np.ndarray:
    if field == "aus":
        try:
            from ..datasets.aus import au_vector
        except ImportError:  # the AU module is optional
            raise MertoolError(f"{path}: this model needs AU vectors but mertool.datasets.aus is unavailable") from None
        return np.stack([au_vector(v) for v in values]).astype(np.float32)
    arr = np.asarray(values)
    if arr.dtype.kind not in "biuf":
        raise MertoolError(f"{path}: meta field {field!r} is not numeric; cannot feed it to the model")
    return arr.astype(np.float32).reshape(len(values), -1)


def _check_file(sf: StageFile, spec: InputSpec, who: str) -> None:
    """Refuse a stage file the model cannot read: stage, labels and subjects, layout, array shapes."""
    path = sf.path
    if sf.stage != spec.stage:
        raise MertoolError(
            f"{path}: is a {sf.stage!r} stage file, but {who} reads {spec.stage!r} files "
            f"(arrays {', '.join(f'{k} {v}' for k, v in spec.arrays.items())})"
        )
    if len(sf) == 0:
        raise MertoolError(f"{path}: holds no samples")
    for field in ("label", "subject"):
        values = sf.meta.get(field)
        if values is None:
            raise MertoolError(f"{path}: has no {field!r} per sample; training needs labels and subjects")
        empty = [sid for sid, v in zip(sf.sample_ids, values) if str(v).strip() == ""]
        if empty:
            raise MertoolError(f"{path}: empty {field} for {len(empty)} sample(s): {', '.join(empty[:5])}")
    if sf.layout != "stacked":
        raise MertoolError(f"{path}: per-sample layout; {who} needs stacked arrays {list(spec.arrays)}")
    shapes = sf.shapes()
    for name, shape in spec.arrays.items():
        if name not in shapes:
            raise MertoolError(f"{path}: no array {name!r} for {who} (file has {', '.join(shapes) or 'none'})")
        if tuple(shapes[name][1:]) != tuple(shape):
            hint = ""
            if len(shape) == 3 and shape[1] == shape[2]:
                hint = f"; make the features at that size (e.g. --size {shape[1]})"
            raise MertoolError(
                f"{path}: array {name!r} is {tuple(shapes[name][1:])} per sample, {who} expects {tuple(shape)}{hint}"
            )


def check_encoding(sf: StageFile, expected: str | None, who: str) -> str | None:
    """The flow encoding of ``sf`` (None unless a ``flow`` file), checked against ``expected``.

    ``expected`` None accepts any encoding; an unrecorded one (``unknown``) is a warning.

    Raises
    ------
    MertoolError
        The file's encoding is known and differs from ``expected`` (the message says how to
        make features of the expected one).
    """
    if sf.stage != "flow":
        return None
    found = flow_encoding(sf)
    if expected is None or found == expected:
        return found
    if found == UNKNOWN:
        logger.warning(f"{sf.path}: flow encoding not recorded; {who} expects {expected} flow ({HOW_TO_MAKE[expected]})")
        return found
    raise MertoolError(
        f"{sf.path}: flow encoded {found}, but {who} expects {expected}; make its features with {HOW_TO_MAKE[expected]}"
    )


def load_train_data(
    path: str | Path, spec: InputSpec, min_class_samples: int = 0, model: str = "", encoding: str | None = None
) -> TrainData:
    """Read the arrays and labels a model needs from a stage file.

    Parameters
    ----------
    path : path
        A stacked stage file (e.g. ``flow.h5``).
    spec : InputSpec
        The model's declared input: stage kind, array names and per-sample shapes, meta.
    min_class_samples : int
        Drop classes with fewer samples than this (0 keeps all); drops are reported in
        ``TrainData.dropped``.
    model : str
        Model name, for messages.
    encoding : str, optional
        The flow encoding the model expects (its registry entry's ``encoding``); None
        accepts any (:func:`check_encoding`).

    Raises
    ------
    MertoolError
        Wrong stage, array shape or flow encoding for the model, labels or subjects
        missing or empty, NaN/inf in inputs (the message names the samples), fewer than
        2 classes.
    """
    path = Path(path)
    who = f"model {model!r}" if model else "the model"
    sf = open_stage(path)
    _check_file(sf, spec, who)
    found = check_encoding(sf, encoding, who)
    labels = [str(v) for v in sf.meta["label"]]
    keep = np.arange(len(labels))
    dropped: dict[str, int] = {}
    if min_class_samples > 0:
        counts = Counter(labels)
        dropped = {c: n for c, n in sorted(counts.items()) if n < min_class_samples}
        if dropped:
            keep = np.array([i for i, lab in enumerate(labels) if lab not in dropped], dtype=np.int64)
            logger.info(f"dropped classes with < {min_class_samples} samples: {dropped}")

    inputs: dict[str, np.ndarray] = {}
    for name in spec.arrays:
        arr = sf.array(name)  # one contiguous read
        inputs[name] = np.ascontiguousarray(arr[keep] if len(keep) < len(arr) else arr, dtype=np.float32)
    for field in spec.meta:
        if field not in sf.meta:
            raise MertoolError(f"{path}: no meta field {field!r} per sample, which {who} needs")
        inputs[field] = meta_vectors(field, [sf.meta[field][i] for i in keep], path)

    sample_ids = [sf.sample_ids[i] for i in keep]
    for name, arr in inputs.items():
        bad = ~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1)
        if bad.any():
            ids = [sample_ids[i] for i in np.flatnonzero(bad)]
            raise MertoolError(
                f"{path}: NaN or infinite values in {name!r} of {len(ids)} sample(s): {', '.join(ids[:10])}"
                + (" ..." if len(ids) > 10 else "")
            )
    kept_labels = [labels[i] for i in keep]
    classes = sorted(set(kept_labels))
    if len(classes) < 2:
        raise MertoolError(f"{path}: needs at least 2 classes to train, found {classes}")
    index = {c: i for i, c in enumerate(classes)}
    return TrainData(
        inputs=inputs,
        y=np.array([index[c] for c in kept_labels], dtype=np.int64),
        classes=classes,
        subjects=[str(sf.meta["subject"][i]) for i in keep],
        sample_ids=sample_ids,
        datasets=[str(sf.meta["dataset"][i]) if "dataset" in sf.meta else "" for i in keep],
        path=str(path),
        key=sf.key,
        dropped=dropped,
        encoding=found,
    )
