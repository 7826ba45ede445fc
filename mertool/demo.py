"""``mertool demo``: the whole chain on the built-in synthetic set.

synth -> index -> the model's feature recipe (align -> keyframes -> flow | dynimg | pairs,
from :func:`mertool.recipes.plan_features`) -> train (LOSO) -> report. Every step is a
library call (the same functions the verbs call), each printed with its command-line
equivalent, so the demo doubles as a worked example; every step resumes, so a re-run
reuses finished work. The demo adds one picture of its own: the mean flow of each class.

Layout under ``OUT``::

    data/            synthetic clips, manifest.csv, synth.json
    work/            samples.csv, aligned(112).h5, samples_kf(112).csv, the model's features
    pictures/        align/ (contact sheet), flow/ | dynimg/ | pairs/, class_flow.png
    runs/<model>/    metrics.json, predictions.csv, confusion.png, curves.png, ...
    results.md       the metrics table
    demo.json        steps, seconds per step, metrics
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .errors import MertoolError
from .log import logger
from .synth import SynthConfig

# Default set: 12 subjects x 3 classes x 4 clips = 144 clips of 30 frames (LOSO: 12 folds).
FULL = SynthConfig()
QUICK = SynthConfig(subjects=6, per_class=2, frames=16)
# Epochs and batch size per LOSO fold: enough optimiser steps for the small quick set too.
EPOCHS = {"full": 20, "quick": 30}
BATCH = {"full": 32, "quick": 16}
#: A recipe this many times longer than the demo's epoch budget will likely not learn in it.
SHORT_BUDGET = 20


def _warn_if_short(model: str, epochs: int) -> None:
    """Say so when the demo's epoch budget is far shorter than the model's published recipe
    (e.g. STSTNet: 800 epochs at lr 5e-5 learns nothing in 20), and what to use instead."""
    from .train.config import TrainConfig, resolve_recipe

    recipe = resolve_recipe(TrainConfig(model=model))
    if recipe.epochs and recipe.epochs >= SHORT_BUDGET * epochs:
        logger.warning(
            f"{model}'s recipe trains {recipe.epochs} epochs at lr {recipe.lr:g}; the demo's {epochs} will likely "
            f"learn little: pass --epochs {recipe.epochs}, or try a short-schedule model (ststnet-fast, offtanet)"
        )


@dataclasses.dataclass
class Step:
    """One demo step: its name, the equivalent command line, and the call that runs it."""

    name: str
    command: str
    run: Callable[[], Any]


def demo_steps(
    out: str | Path,
    model: str = "offtanet",
    quick: bool = False,
    jobs: int = 2,
    device: str = "auto",
    epochs: Optional[int] = None,
    synth: Optional[SynthConfig] = None,
    overwrite: bool = False,
) -> list[Step]:
    """The demo's steps, in order.

    Parameters
    ----------
    out : path
        Demo folder.
    model : str
        A registered model (its recipe says which features to make).
    quick : bool
        The small set and epoch budget (about a minute on 2 cores).
    jobs : int
        Worker processes for the per-clip stages and for LOSO folds.
    device : str
        Training device (``auto``, ``cpu``, ``cuda``).
    epochs : int, optional
        Epoch budget per fold (default 20 with batch size 32; quick 30 with batch size 16).
    synth : SynthConfig, optional
        Another built-in set (default: the full or quick one).
    overwrite : bool
        Replace outputs made with other settings.

    Raises
    ------
    MertoolError
        Unknown model, a model whose inputs no recipe makes, or bad options.
    """
    from .recipes import plan_features, run_step
    from .stages.index import run_index
    from .synth import generate
    from .train.config import TrainConfig
    from .train.report import format_table, summarize_runs
    from .train.run import train_run

    out = Path(out)
    data, work, pics, run = out / "data", out / "work", out / "pictures", out / "runs" / model
    cfg = synth or (QUICK if quick else FULL)
    mode = "quick" if quick else "full"
    epochs = epochs or EPOCHS[mode]
    if epochs < 1 or jobs == 0:
        raise MertoolError(f"demo: epochs ({epochs}) must be >= 1 and jobs ({jobs}) non-zero")
    recipe = plan_features(model)
    samples, features = work / "samples.csv", work / recipe[-1].output
    train_cfg = TrainConfig.resolve(model=model, epochs=epochs, batch_size=BATCH[mode], seed=0, device=device, jobs=jobs)
    _warn_if_short(model, epochs)

    inputs = {"aligned": work / recipe[0].output, "apexes": work / recipe[1].output}

    def feature_step(step: Any) -> Step:
        preview = None if step.verb == "keyframes" else pics / step.verb
        return Step(step.verb, f"{step.command()}  ({work}/{step.output})",
                    lambda: run_step(step, work, samples, **inputs, jobs=jobs, overwrite=overwrite, preview=preview))

    def report() -> None:
        (out / "results.md").write_text(format_table(summarize_runs([run]), "markdown"))

    return [
        Step("synth", f"mertool synth -o {data} --subjects {cfg.subjects} --per-class {cfg.per_class} --frames {cfg.frames}",
             lambda: generate(data, cfg, jobs=jobs, overwrite=overwrite)),
        Step("index", f"mertool index --dataset manifest --sheet {data}/manifest.csv -o {samples}",
             lambda: run_index("manifest", samples, sheet=data / "manifest.csv")),
        *[feature_step(step) for step in recipe],
        Step("train", f"mertool train {features} --model {model} -o {run} --epochs {epochs} --batch-size {BATCH[mode]}",
             lambda: train_run(features, run, train_cfg, overwrite=overwrite)),
        Step("report", f"mertool report {run} --markdown {out}/results.md", report),
    ]


def class_flow_picture(flow_h5: str | Path, out_png: str | Path, tile: float = 1.6) -> Path:
    """Mean onset->apex flow (colour wheel) and strain of each class, one column per class.

    The same magnitude scale is used for every class, so their strengths compare
    (:func:`mertool.preprocess.render.class_flow_sheet`; ``tile``: panel side in inches).
    """
    import cv2

    from .preprocess.render import class_flow_sheet, display_scale, edge_band
    from .stages.stagefile import open_stage

    sf = open_stage(flow_h5, expect="flow")
    flows = sf.array("flow")
    labels = np.array(sf.meta["label"])
    classes = sorted(set(labels.tolist()))
    means = {c: flows[labels == c].mean(axis=0) for c in classes}
    flow_max, strain_max = display_scale(list(means.values()), edge_band(flows.shape[-1]))
    unit = "px" if sf.params.get("normalise", "none") == "none" else f"({sf.params['normalise']} units)"
    picture = class_flow_sheet(means, {c: int((labels == c).sum()) for c in classes},
                               flow_max=flow_max, strain_max=strain_max, unit=unit, tile=tile)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_png), picture[:, :, ::-1])
    return out_png


def pictures(out: str | Path, model: str = "offtanet") -> dict[str, list[Path]]:
    """The pictures the demo makes for ``model`` (what its recipe writes), and which exist."""
    from .recipes import plan_features

    out = Path(out)
    pics, run = out / "pictures", out / "runs" / model
    feature = plan_features(model)[-1].verb
    previews = {
        "flow": "flow colour wheels (onset | apex | flow | strain)",
        "dynimg": "dynamic images",
        "pairs": "onset/apex pairs",
    }
    found = {
        "aligned contact sheet": sorted((pics / "align").glob("*.png")),
        previews.get(feature, feature): sorted((pics / feature).glob("*.png")),
    }
    if feature == "flow":
        found["mean flow per class"] = [p for p in [pics / "class_flow.png"] if p.is_file()]
    found["confusion matrix"] = [p for p in [run / "confusion.png"] if p.is_file()]
    found["learning curves"] = [p for p in [run / "curves.png"] if p.is_file()]
    return found


def run_step(step: Step, tag: str, overwrite: bool, echo: Callable[[str], None]) -> dict:
    """Run one demo step, echoing its command and time; returns its record (name, command, seconds).

    Raises
    ------
    MertoolError
        The step failed (the message says which; re-running resumes).
    """
    echo(f"{tag} {step.name}: {step.command}")
    t0 = time.perf_counter()
    try:
        step.run()
    except MertoolError as exc:
        hint = "" if overwrite else " (or add --overwrite if the settings changed)"
        raise MertoolError(f"demo step {step.name!r} failed: {exc}; fix the cause and re-run to resume{hint}") from None
    seconds = time.perf_counter() - t0
    echo(f"{tag} {step.name}: done in {seconds:.1f} s")
    return {"name": step.name, "command": step.command, "seconds": round(seconds, 2)}


def run_demo(
    out: str | Path = "mertool_demo",
    model: str = "offtanet",
    quick: bool = False,
    jobs: int = 2,
    device: str = "auto",
    epochs: Optional[int] = None,
    synth: Optional[SynthConfig] = None,
    overwrite: bool = False,
    echo: Callable[[str], None] = print,
) -> dict:
    """Run every demo step (resuming finished ones) and summarise.

    Parameters
    ----------
    echo : callable
        Where progress lines go.
    (others as in :func:`demo_steps`)

    Returns
    -------
    dict
        ``steps`` (name, command, seconds), ``total_s``, ``metrics`` (from metrics.json)
        and ``pictures``; also written to ``OUT/demo.json``.

    Raises
    ------
    MertoolError
        A step failed (the message says which; re-running resumes).
    """
    from .recipes import features_path

    out = Path(out)
    steps = demo_steps(out, model, quick, jobs, device, epochs, synth, overwrite)
    record = []
    start = time.perf_counter()
    for i, step in enumerate(steps, start=1):
        record.append(run_step(step, f"[{i}/{len(steps)}]", overwrite, echo))
        if step.name == "flow":
            class_flow_picture(features_path(model, out / "work"), out / "pictures" / "class_flow.png")
    total = time.perf_counter() - start
    metrics_path = out / "runs" / model / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    found = pictures(out, model)
    summary = {
        "model": model,
        "quick": quick,
        "steps": record,
        "total_s": round(total, 1),
        "metrics": {k: metrics[k] for k in ("uar", "uf1", "accuracy") if k in metrics},
        "pictures": {k: [str(p) for p in v] for k, v in found.items()},
    }
    (out / "demo.json").write_text(json.dumps(summary, indent=1))
    return summary


def format_summary(summary: dict) -> str:
    """Human-readable end of the demo: scores, time and where the pictures are."""
    lines = []
    m = summary.get("metrics", {})
    if m:
        lines.append(
            f"{summary['model']} under LOSO on the built-in set: UAR {m.get('uar', float('nan')):.3f}  "
            f"UF1 {m.get('uf1', float('nan')):.3f}  accuracy {m.get('accuracy', float('nan')):.3f}"
        )
    lines.append(f"total time {summary['total_s']:.0f} s (" + ", ".join(f"{s['name']} {s['seconds']:.0f} s" for s in summary["steps"]) + ")")
    lines.append("pictures:")
    for what, paths in summary["pictures"].items():
        if not paths:
            lines.append(f"  {what}: (none written)")
        elif len(paths) == 1:
            lines.append(f"  {what}: {paths[0]}")
        else:
            lines.append(f"  {what}: {Path(paths[0]).parent}/ ({len(paths)} files)")
    return "\n".join(lines)


def spot_steps(out: Path, cfg: Any, jobs: int, overwrite: bool, scores: dict) -> list[Step]:
    """The steps of one frame rate of the spotting demo: synth-long -> index -> spot (aligning
    each video as it streams) and evaluate, which puts its :class:`~mertool.stages.spot.EvalResult`
    in ``scores`` under ``"<fps>fps"``."""
    from .stages.index import run_index
    from .stages.spot import SpotConfig, evaluate_spots, run_spot, write_preview
    from .synth_long import generate_long

    tag = f"{cfg.fps:g}fps"
    data, work, pics = out / "data" / tag, out / "work" / tag, out / "pictures" / tag
    long_csv, spots = work / "long.csv", work / "spots.csv"

    def spot() -> None:
        run_spot(long_csv, spots, SpotConfig(fps=cfg.fps), jobs=jobs, overwrite=overwrite)
        scores[tag] = evaluate_spots(spots, long_csv)
        write_preview(spots, pics, scores[tag], max_videos=2)

    return [
        Step(f"synth-long {tag}", f"mertool.synth_long.generate_long('{data}', LongSynthConfig(fps={cfg.fps:g}, "
             f"subjects={cfg.subjects}, videos={cfg.videos}, seconds={cfg.seconds:g}))",
             lambda: generate_long(data, cfg, jobs=jobs, overwrite=overwrite)),
        Step(f"index {tag}", f"mertool index --dataset manifest --sheet {data}/manifest.csv -o {long_csv}",
             lambda: run_index("manifest", long_csv, sheet=data / "manifest.csv")),
        Step(f"spot + evaluate {tag}", f"mertool spot {long_csv} -o {spots} --fps {cfg.fps:g} --evaluate {long_csv} "
             f"--preview {pics}", spot),
    ]


def run_spot_demo(
    out: str | Path = "mertool_demo_spot",
    quick: bool = False,
    jobs: int = 2,
    overwrite: bool = False,
    echo: Callable[[str], None] = print,
) -> dict:
    """Spotting on synthetic long videos at 200 and 30 fps: generate, index, spot, evaluate.

    Each step resumes. ``quick``: 2 videos of 6 s per frame rate (else 8 of 8 s). Returns
    (and writes to ``OUT/spot_demo.json``) the steps and, per frame rate, the overall
    scores of each type (``tp``, ``fp``, ``fn``, ``precision``, ``recall``, ``f1``).

    Raises
    ------
    MertoolError
        A step failed (the message says which; re-running resumes).
    """
    from .synth_long import LongSynthConfig

    out = Path(out)
    size = {"subjects": 2, "videos": 1, "seconds": 6.0} if quick else {}
    results: dict = {}
    steps = [step for fps in (200.0, 30.0) for step in spot_steps(out, LongSynthConfig(fps=fps, **size), jobs, overwrite, results)]
    record = [run_step(step, f"[{i}/{len(steps)}]", overwrite, echo) for i, step in enumerate(steps, start=1)]
    keys = ("tp", "fp", "fn", "precision", "recall", "f1")
    scores = {tag: {kind: {k: r.row(kind)[k] for k in keys} for kind in ("micro", "macro", "all")} for tag, r in results.items()}
    summary = {"quick": quick, "steps": record, "scores": scores, "pictures": str(out / "pictures")}
    (out / "spot_demo.json").write_text(json.dumps(summary, indent=1))
    return summary


def format_spot_summary(summary: dict) -> str:
    """The spotting demo's end: F1 per frame rate and type."""
    lines = []
    for rate, kinds in summary["scores"].items():
        parts = [f"{k} F1 {v['f1']:.3f} (TP {v['tp']} FP {v['fp']} FN {v['fn']})" for k, v in kinds.items()]
        lines.append(f"{rate}: " + "; ".join(parts))
    lines.append(f"pictures (curves with true and spotted intervals): {summary['pictures']}/")
    return "\n".join(lines)
