"""Classify new clips with a finished run: replay its feature recipe -> fold-model ensemble.

The run directory records the parameters of the stages that made its training features
(``run.json`` -> ``pipeline``), so a new clip goes through the same stages with the same
settings (align, then flow, dynamic images or frame pairs). The prediction averages the
softmax outputs of every fold's final model (or uses one fold's model).
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import torch

from .device import resolve_device
from .errors import MertoolError
from .models import create_model, get_entry
from .samples import Sample, video_frame_count, write_samples
from .stages.stagefile import open_stage
from .train.data import meta_vectors
from .train.rundir import RunDir


def fold_models(
    run: str | Path | RunDir, fold: str | None = None, device: str | torch.device = "cpu"
) -> list[torch.nn.Module]:
    """The final model of every fold (or of one named fold) of a finished run, in eval mode."""
    run = RunDir.of(run)
    info = run.finished()
    cfg = run.config()
    folds = info["folds"] if fold is None else [fold]
    if fold is not None and fold not in info["folds"]:
        raise MertoolError(f"{run.path}: no fold {fold!r} (folds: {', '.join(info['folds'])})")
    models = []
    for name in folds:
        path = run.final_weights(name)
        if not path.is_file():
            raise MertoolError(f"{path}: fold checkpoint missing")
        model = create_model(info["model"], num_classes=len(info["classes"]), **cfg.get("model_kwargs", {}))
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        models.append(model.to(device).eval())
    return models


@torch.no_grad()
def predict_inputs(
    run: str | Path | RunDir, inputs: dict[str, np.ndarray], fold: str | None = None, device: str = "cpu"
) -> np.ndarray:
    """Ensemble class probabilities (N x classes) of model-ready inputs.

    Parameters
    ----------
    run : path or RunDir
        Finished run directory.
    inputs : dict of str -> ndarray
        The model's keyword arrays (N x shape), as in the training features.
    fold : str, optional
        Use this fold's model only.
    device : str
        ``cpu``, ``cuda`` or ``auto``.
    """
    dev = resolve_device(device)
    run = RunDir.of(run)
    info = run.finished()
    spec = get_entry(info["model"]).input
    for name, shape in spec.arrays.items():
        if name not in inputs or tuple(inputs[name].shape[1:]) != tuple(shape):
            got = None if name not in inputs else tuple(inputs[name].shape[1:])
            raise MertoolError(f"input {name!r}: model {info['model']!r} expects N x {tuple(shape)}, got {got}")
    X = {k: torch.as_tensor(np.asarray(v, dtype=np.float32), device=dev) for k, v in inputs.items()}
    probs = []
    for model in fold_models(run, fold, dev):
        out = model(**X)
        logits = out[0] if isinstance(out, (tuple, list)) else out
        probs.append(torch.softmax(logits.float(), 1).cpu().numpy())
    return np.mean(probs, axis=0)


def clip_features(run: RunDir, sample: Sample, work: Path) -> dict[str, np.ndarray]:
    """Make one clip's model input by replaying the recipe the run recorded.

    The run's ``pipeline`` holds the stage and parameters of its feature file and of each
    upstream stage file (nearest first). The clip goes through the same stages with the
    same parameters (align, then flow / dynimg / pairs), in ``work``, so its features are
    made by exactly the code that made the training features.
    """
    from .recipes import replay

    info = run.finished()
    spec = get_entry(info["model"]).input
    samples_csv = write_samples([sample], work / "samples.csv")
    features = replay(info.get("pipeline", []), samples_csv, work)
    sf = open_stage(features)
    if sample.sample_id not in sf.sample_ids:
        raise MertoolError(f"{sample.source()}: {sf.failed.get(sample.sample_id, 'no features were made')}")
    arrays = sf.sample(sample.sample_id, list(spec.arrays))
    inputs = {name: a[None] for name, a in arrays.items()}
    for field in spec.meta:
        inputs[field] = meta_vectors(field, [sf.meta_of(sample.sample_id)[field]], sf.path)
    return inputs


def _clip_sample(frames: str | Path | None, video: str | Path | None, onset: int, apex: int, offset: int, aus: str) -> Sample:
    """The clip as a one-row sample: offset -1 = last frame, apex -1 = middle of onset..offset."""
    if (frames is None) == (video is None):
        raise MertoolError("give exactly one of frames (a folder) or video (a file)")
    probe = Sample("clip", "", onset, apex, offset, "", frames=str(frames or ""), video=str(video or ""))
    numbers = [n for n, _ in probe.frame_table()] if frames else list(range(1, video_frame_count(video) + 1))
    if not numbers:
        raise MertoolError(f"{probe.source()}: no frames")
    offset = numbers[-1] if offset == -1 else offset
    if apex == -1:
        inside = [n for n in numbers if onset < n <= offset]
        if not inside:
            raise MertoolError(f"{probe.source()}: no frame after the onset ({onset}) to use as apex")
        apex = inside[len(inside) // 2]
    source = "sheet" if probe.apex != -1 else "estimated:middle"
    return dataclasses.replace(probe, apex=apex, offset=offset, aus=aus, label="?", apex_source=source)


def predict_clip(
    run: str | Path,
    frames: str | Path | None = None,
    video: str | Path | None = None,
    onset: int = 1,
    apex: int = -1,
    offset: int = -1,
    aus: str = "",
    fold: str | None = None,
    device: str = "auto",
) -> dict:
    """Classify one clip (a frames folder or a video) with a run's fold-model ensemble.

    Works for every model family: the clip is turned into the model's input by replaying
    the stages (and their parameters) that made the run's training features.

    Parameters
    ----------
    run : path
        Finished run directory.
    frames, video : path
        Exactly one: folder of frame images, or video file.
    onset, apex, offset : int
        Frame numbers (as in samples.csv); ``apex=-1`` takes the middle of onset..offset,
        ``offset=-1`` the last frame.
    aus : str
        The clip's action units (e.g. ``"4+L10"``), for models that read them.
    fold : str, optional
        Use one fold's model instead of the average of all folds.
    device : str

    Returns
    -------
    dict
        ``label``, ``probabilities`` (class -> p), ``onset``, ``apex``, ``offset``, ``models``.

    Examples
    --------
    >>> predict_clip("runs/offtanet", frames="clips/s01_ep1", onset=1, apex=9)  # doctest: +SKIP
    {'label': 'positive', 'probabilities': {...}, 'onset': 1, 'apex': 9, ...}
    """
    rundir = RunDir.of(run)
    info = rundir.finished()
    sample = _clip_sample(frames, video, onset, apex, offset, aus)
    with tempfile.TemporaryDirectory(prefix="mertool-predict-") as tmp:
        inputs = clip_features(rundir, sample, Path(tmp))
    probs = predict_inputs(rundir, inputs, fold=fold, device=device)[0]
    classes = info["classes"]
    return {
        "label": classes[int(np.argmax(probs))],
        "probabilities": {c: float(p) for c, p in zip(classes, probs)},
        "onset": sample.onset,
        "apex": sample.apex,
        "offset": sample.offset,
        "models": len(info["folds"]) if fold is None else 1,
    }
