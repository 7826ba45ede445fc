"""Classify new clips with a finished run: align -> flow -> ensemble of the fold models.

The run directory records the parameters of the stages that made its training features
(``run.json`` -> ``pipeline``), so a new clip goes through the same alignment and flow
settings. The prediction averages the softmax outputs of every fold's final model (or
uses one fold's model).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .device import resolve_device
from .errors import MertoolError
from .models import create_model, get_entry
from .samples import Sample, load_frames, video_frame_count
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


def _stage_params(info: dict, stage: str) -> dict | None:
    for step in info.get("pipeline", []):
        if step["stage"] == stage:
            return step["params"]
    return None


def clip_flow(onset: np.ndarray, apex: np.ndarray, info: dict) -> np.ndarray:
    """Align an onset/apex pair and compute the run's flow features (1 x C x S x S)."""
    from .preprocess.align import align_clip
    from .preprocess.strain import flow_features
    from .preprocess.tvl1 import prepare_frame, tvl1
    from .stages.align import AlignConfig
    from .stages.flow import FlowConfig

    flow_params = _stage_params(info, "flow")
    if flow_params is None:
        raise MertoolError("the run's features were not made by `mertool flow` (or flow.h5 is gone); cannot replay them")
    align_params = _stage_params(info, "aligned")
    if align_params is None:
        raise MertoolError("the run's flow file records no readable aligned.h5 upstream; cannot replay the alignment")
    try:
        acfg = AlignConfig(**align_params)
        fcfg = FlowConfig(**flow_params)
    except TypeError as exc:  # recorded by another mertool version
        raise MertoolError(f"the run's recorded align/flow parameters do not fit this mertool ({exc})") from None
    try:
        aligned = align_clip([onset, apex], **acfg.align_options())["frames"]
    except LookupError:
        raise MertoolError("no face found on the onset frame; try a larger frame or another clip") from None
    a, b = (prepare_frame(f, fcfg.flow_size) for f in aligned)
    flow = tvl1(a, b, params=fcfg.tvl1(), backend=fcfg.backend)
    return flow_features(flow[None], **fcfg.features())


def predict_clip(
    run: str | Path | RunDir,
    frames: str | Path | None = None,
    video: str | Path | None = None,
    onset: int = 1,
    apex: int = -1,
    fold: str | None = None,
    device: str = "auto",
) -> dict:
    """Classify one clip (a frames folder or a video) with a run's fold-model ensemble.

    Parameters
    ----------
    run : path or RunDir
        Finished run directory of a flow-based model.
    frames, video : path
        Exactly one: folder of frame images, or video file.
    onset, apex : int
        Frame numbers (as in samples.csv); ``apex=-1`` takes the middle of the clip.
    fold : str, optional
        Use one fold's model instead of the average of all folds.
    device : str

    Returns
    -------
    dict
        ``label``, ``probabilities`` (class -> p), ``onset``, ``apex``, ``models``.
    """
    if (frames is None) == (video is None):
        raise MertoolError("give exactly one of frames (a folder) or video (a file)")
    run = RunDir.of(run)  # run.json and config.yaml are read once for the whole prediction
    info = run.finished()
    stage = get_entry(info["model"]).input.stage
    if stage != "flow":
        raise MertoolError(f"predict handles flow-based models; {info['model']!r} reads {stage!r} features")
    sample = Sample("predict", "", onset, apex, onset, "", frames=str(frames or ""), video=str(video or ""))
    numbers = [n for n, _ in sample.frame_table()] if frames else list(range(1, video_frame_count(video) + 1))
    if not numbers:
        raise MertoolError(f"{frames or video}: no frames")
    if apex == -1:
        after = [n for n in numbers if n > onset]
        if not after:
            raise MertoolError(f"{frames or video}: no frame after the onset ({onset}) to use as apex")
        apex = after[len(after) // 2]
    onset_img, apex_img = load_frames(sample, [onset, apex])
    x = clip_flow(onset_img, apex_img, info)
    probs = predict_inputs(run, {"flow": x}, fold=fold, device=device)[0]
    classes = info["classes"]
    return {
        "label": classes[int(np.argmax(probs))],
        "probabilities": {c: float(p) for c, p in zip(classes, probs)},
        "onset": int(onset),
        "apex": int(apex),
        "models": len(info["folds"]) if fold is None else 1,
    }
