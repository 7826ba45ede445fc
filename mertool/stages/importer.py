"""The ``import`` stage: precomputed per-sample inputs (u, v, strain) -> a stage "flow" file.

Many groups share ready-made inputs instead of clips (e.g. the composite benchmark's
28x28 u/v/strain images). :func:`import_flow` reads a folder of per-sample ``.npy`` /
``.npz`` arrays or PNG/JPG images plus a CSV of sample, subject and label, and writes the
same stage file ``mertool flow`` writes (``flow``: N x 3 x S x S float32 in the order
u, v, strain), so ``mertool train`` reads it unchanged.

``channels`` names each channel of a file in the order it is stored: for images, as
OpenCV reads them (B, G, R), so ``strain,v,u`` fits files written from an RGB-ordered
(u, v, strain) array; for arrays, the channel axis order. ``-`` ignores a channel;
``os`` is accepted for strain.

``scale`` says how image values are kept: ``raw`` as read (0..255 for 8-bit images, the
values the published composite-image models, e.g. STSTNet, were trained on) or ``unit``
(divided by 255, or 65535 for 16-bit images). Arrays keep their values. The flow
encoding (:mod:`mertool.stages.contents`) is recorded with the parameters: images
``minmax-byte`` (raw) or ``minmax-unit`` (unit), arrays ``signed``, unless ``encoding``
says otherwise; ``mertool train`` checks it against the model and ``flow_hflip``
mirrors by it.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import re
from pathlib import Path

import cv2
import numpy as np

from ..errors import MertoolError
from ..log import logger
from ._driver import Case, StageResult, run_stage
from .contents import ENCODINGS
from .stagefile import StageWriter

PLANES = ("u", "v", "strain")
ARRAY_SUFFIXES = (".npy", ".npz")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
SCALES = ("raw", "unit")
#: The flow encoding of imported images at each scale.
IMAGE_ENCODING = {"raw": "minmax-byte", "unit": "minmax-unit"}
#: Unmatched names listed in a message.
LISTED = 20


def parse_channels(text: str) -> list[str]:
    """``"strain,v,u"`` -> ``["strain", "v", "u"]``; must name u, v and strain once each."""
    names = [("strain" if n.strip().lower() == "os" else n.strip().lower()) for n in text.split(",")]
    bad = [n for n in names if n not in PLANES + ("-",)]
    if bad or sorted(n for n in names if n != "-") != sorted(PLANES):
        raise MertoolError(f"channels {text!r}: name each of u, v, strain once (and '-' for channels to ignore)")
    return names


def match_key(name: str) -> str:
    """Tolerant key for file names and CSV ids: case, whitespace and extensions ignored."""
    stem = name.strip()
    while Path(stem).suffix.lower() in ARRAY_SUFFIXES + IMAGE_SUFFIXES:
        stem = stem[: -len(Path(stem).suffix)]
    return re.sub(r"\s+", "", stem).lower()


def _read_image(path: Path, scale: str) -> np.ndarray:
    """An image file as C x H x W float32, its values kept (``raw``, 8-bit only) or divided to 0..1 (``unit``)."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise MertoolError(f"{path}: unreadable image")
    if scale == "raw" and img.dtype != np.uint8:
        raise MertoolError(f"{path}: {img.dtype} image; --scale raw keeps 0..255 of 8-bit images only, use --scale unit")
    arr = img.astype(np.float32)
    if scale == "unit":
        arr /= 65535.0 if img.dtype == np.uint16 else 255.0
    return arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)


def read_planes(path: Path, channels: list[str], scale: str = "raw") -> np.ndarray:
    """One file -> 3 x H x W float32 (u, v, strain); ``scale`` applies to images (module notes)."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        arr = _read_image(path, scale)
    else:
        try:
            loaded = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty or cut-short file
            raise MertoolError(f"{path}: not a readable .npy/.npz ({exc})") from None
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                keys = {k.lower(): k for k in loaded.files}
                if all(p in keys for p in PLANES):  # separate u, v, strain arrays
                    return np.stack([loaded[keys[p]] for p in PLANES]).astype(np.float32)
                if len(loaded.files) != 1 and "flow" not in keys:
                    raise MertoolError(f"{path}: .npz needs one array, a 'flow' array, or arrays u, v, strain (has {loaded.files})")
                arr = loaded[keys.get("flow", loaded.files[0])]
        else:
            arr = loaded
        arr = np.asarray(arr, dtype=np.float32)
        if arr.ndim != 3:
            raise MertoolError(f"{path}: expected a C x H x W or H x W x C array, got shape {arr.shape}")
        if arr.shape[0] != len(channels) and arr.shape[-1] == len(channels):
            arr = np.moveaxis(arr, -1, 0)
    if arr.shape[0] != len(channels):
        raise MertoolError(f"{path}: {arr.shape[0]} channel(s), but channels names {len(channels)}")
    return np.stack([arr[channels.index(p)] for p in PLANES]).astype(np.float32)


def _read_csv(path: Path, sample_col: str, subject_col: str, label_col: str) -> list[dict[str, str]]:
    if not path.is_file():
        raise MertoolError(f"{path}: labels CSV not found")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = {h.strip().lower(): h for h in (reader.fieldnames or [])}
        need = [sample_col, subject_col, label_col]
        missing = [c for c in need if c.strip().lower() not in header]
        if missing:
            raise MertoolError(
                f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(need)} "
                f"(set them with --sample-col/--subject-col/--label-col); has {', '.join(header.values())}"
            )
        rows = []
        for raw in reader:
            row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
            rows.append({
                "sample": row[sample_col.lower()], "subject": row[subject_col.lower()], "label": row[label_col.lower()],
                "dataset": row.get("dataset", "") or "import", "aus": row.get("aus", ""),
            })
    if not rows:
        raise MertoolError(f"{path}: no rows")
    return rows


def _files_by_key(folder: Path) -> dict[str, Path]:
    """The folder's array and image files by :func:`match_key` (two files for one key: error)."""
    if not folder.is_dir():
        raise MertoolError(f"{folder}: input folder not found")
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in ARRAY_SUFFIXES + IMAGE_SUFFIXES:
            key = match_key(p.name)
            if key in files:
                raise MertoolError(f"{folder}: {files[key].name} and {p.name} both match sample {key!r}")
            files[key] = p
    if not files:
        raise MertoolError(f"{folder}: no .npy/.npz/.png/.jpg files")
    return files


def _names(items: list[str]) -> str:
    """The first :data:`LISTED` names, comma-separated (``...`` when there are more)."""
    return ", ".join(items[:LISTED]) + (" ..." if len(items) > LISTED else "")


def _match(
    rows: list[dict[str, str]], files: dict[str, Path], labels_csv: Path, allow_missing: bool
) -> list[tuple[dict[str, str], Path]]:
    """(CSV row, file) pairs in CSV order.

    Rows without a file stop the import (a warning with ``allow_missing``); files without
    a row are a warning.
    """
    matched, unmatched_rows, seen = [], [], set()
    for line, row in enumerate(rows, start=2):
        key = match_key(row["sample"])
        if key in seen:
            raise MertoolError(f"{labels_csv}:{line}: sample {row['sample']!r} listed twice")
        seen.add(key)
        if not row["label"] or not row["subject"]:
            raise MertoolError(f"{labels_csv}:{line}: sample {row['sample']!r} has an empty subject or label")
        if key in files:
            matched.append((row, files[key]))
        else:
            unmatched_rows.append(row["sample"])
    example = next(iter(files.values()))
    folder = example.parent
    if not matched:
        raise MertoolError(f"{labels_csv}: no CSV row matches a file in {folder} (e.g. {example.name})")
    if unmatched_rows:
        text = f"{labels_csv}: {len(unmatched_rows)} of {len(rows)} CSV row(s) match no file in {folder}: {_names(unmatched_rows)}"
        if not allow_missing:
            raise MertoolError(
                f"{text}; check --sample-col (its values must be the file names, extension optional), "
                f"or pass --allow-missing to import the {len(matched)} that match"
            )
        logger.warning(text)
    orphans = sorted(p.name for k, p in files.items() if k not in seen)
    if orphans:
        logger.warning(f"{len(orphans)} file(s) in {folder} without a CSV row (not imported): {_names(orphans)}")
    return matched


def _encoding(matched: list[tuple[dict[str, str], Path]], scale: str, encoding: str | None) -> str:
    """The flow encoding to record: ``encoding`` if given, else by file kind (images by ``scale``)."""
    if encoding is not None:
        if encoding not in ENCODINGS:
            raise MertoolError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
        return encoding
    kinds = {p.suffix.lower() in IMAGE_SUFFIXES for _, p in matched}
    if len(kinds) > 1:
        raise MertoolError(
            f"{matched[0][1].parent}: holds both images and arrays; say how they are encoded with --encoding "
            f"({', '.join(ENCODINGS)})"
        )
    return IMAGE_ENCODING[scale] if kinds == {True} else "signed"


def _check_sizes(matched: list[tuple[dict[str, str], Path]], channels: list[str], scale: str) -> None:
    """Files kept at their own size must agree on it (unreadable ones fail later, per sample).

    This reads each file once more than the import itself: a stacked stage file has one
    shape, and a file of another size must stop the import before any sample is written.
    """
    first = None
    for _, path in matched:
        try:
            shape = read_planes(path, channels, scale).shape
        except MertoolError:
            continue
        if first is None:
            first = shape
        elif shape != first:
            raise MertoolError(f"{path}: planes of shape {shape[1:]}, others {first[1:]}; pass --size to resize")


def import_case(case: Case, *, channels: list[str], size: int, scale: str) -> dict[str, np.ndarray]:
    """One sample's file as ``flow`` (3 x S x S float32: u, v, strain), resized to ``size`` if set."""
    planes = read_planes(case.inputs, channels, scale)
    if size:
        planes = np.stack([cv2.resize(p, (size, size), interpolation=cv2.INTER_CUBIC) for p in planes])
    return {"flow": planes.astype(np.float32)}


def import_flow(
    folder: str | Path,
    labels_csv: str | Path,
    out: str | Path,
    *,
    channels: str = "u,v,strain",
    size: int = 0,
    scale: str = "raw",
    encoding: str | None = None,
    allow_missing: bool = False,
    sample_col: str = "sample",
    subject_col: str = "subject",
    label_col: str = "label",
    jobs: int = 1,
    overwrite: bool = False,
    progress: bool = True,
) -> StageResult:
    """Import a folder of per-sample inputs into a stage "flow" file (resumable).

    Parameters
    ----------
    folder : path
        Files named after the samples (``.npy``, ``.npz``, ``.png``, ``.jpg`` ...).
    labels_csv : path
        CSV with sample, subject and label columns (names configurable; optional
        ``dataset`` and ``aus`` columns are carried along). Recorded as the upstream.
    out : path
        The ``.h5`` stage file to write (stage ``flow``, array ``flow`` N x 3 x S x S).
    channels : str
        Names of the stored channels in file order (see module notes).
    size : int
        Resize every plane to ``size`` x ``size`` (bicubic); 0 keeps the files' size.
    scale : {"raw", "unit"}
        Image values as read (``raw``: 0..255, 8-bit images only) or divided to 0..1
        (``unit``). Arrays keep their values.
    encoding : str, optional
        The flow encoding to record (``signed``, ``minmax-unit``, ``minmax-byte``;
        see :mod:`mertool.stages.contents`) [default: images ``minmax-byte`` (raw) or
        ``minmax-unit`` (unit), arrays ``signed``].
    allow_missing : bool
        Import the rows that have a file when others have none (a warning), instead of
        stopping.
    sample_col, subject_col, label_col : str
        Column names in ``labels_csv`` (case and surrounding blanks ignored).
    jobs : int
        Worker processes.
    overwrite : bool
        Replace an output made with other parameters or inputs.
    progress : bool
        Show a progress bar.

    Returns
    -------
    StageResult
        The samples are the CSV rows with a file; files without a row are logged as a
        warning. An unreadable file is a failed sample.

    Raises
    ------
    MertoolError
        Missing folder/CSV/columns, bad channels, size, scale or encoding, two files for
        one sample, CSV rows without a file (unless ``allow_missing``), images and arrays
        mixed without ``encoding``, differing sizes without ``size``, empty subject or
        label, or no file readable.
    """
    folder, labels_csv = Path(folder), Path(labels_csv)
    names = parse_channels(channels)
    if size < 0 or size == 1:
        raise MertoolError(f"size must be 0 (keep) or >= 2, got {size}")
    if scale not in SCALES:
        raise MertoolError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    files = _files_by_key(folder)
    matched = _match(_read_csv(labels_csv, sample_col, subject_col, label_col), files, labels_csv, allow_missing)
    listing = hashlib.sha256("\n".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for _, p in matched).encode())
    params = {
        "source": "import", "folder": str(folder), "channels": names, "size": size, "scale": scale,
        "encoding": _encoding(matched, scale, encoding), "files": listing.hexdigest()[:16],
    }
    writer = StageWriter(out, "flow", params, upstream=[labels_csv], overwrite=overwrite)
    if not size and not writer.complete:
        _check_sizes(matched, names, scale)
    cases = {
        row["sample"]: Case(row["sample"], {
            "subject": row["subject"], "label": row["label"], "dataset": row["dataset"], "clip": path.name,
            "onset": -1, "apex": -1, "offset": -1, "aus": row["aus"], "apex_source": "import",
        }, path)
        for row, path in matched
    }
    return run_stage(
        writer,
        list(cases),
        cases.__getitem__,
        functools.partial(import_case, channels=names, size=size, scale=scale),
        stacked=True,
        desc="import",
        jobs=jobs,
        progress=progress,
    )
