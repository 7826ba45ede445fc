"""``mertool demo``: the whole chain on the built-in synthetic set.

synth -> index -> align -> keyframes -> flow -> dynimg [-> pairs] -> train (LOSO) -> report.
Each step is an ordinary ``mertool`` verb (the same commands ``pipelines/demo.sh``
runs), so the demo doubles as a worked example; every verb resumes, so a re-run reuses
finished steps. The demo adds one picture of its own: the mean flow of each class.

Layout under ``OUT``::

    data/            synthetic clips, manifest.csv, synth.json
    work/            samples.csv, aligned.h5, samples_kf.csv, flow.h5, dynimg.h5
    pictures/        aligned/ (contact sheet), flow/ (colour wheels), dynimg/, class_flow.png
    runs/<model>/    metrics.json, predictions.csv, confusion.png, curves.png, ...
    results.md       the metrics table
    demo.json        steps, seconds per step, metrics
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import MertoolError
from .synth import SynthConfig

# Default set: 12 subjects x 3 classes x 4 clips = 144 clips of 30 frames (LOSO: 12 folds).
FULL = SynthConfig()
QUICK = SynthConfig(subjects=6, per_class=2, frames=16)
# Epochs and batch size per LOSO fold: enough optimiser steps for the small quick set too.
EPOCHS = {"full": 20, "quick": 30}
BATCH = {"full": 32, "quick": 16}


@dataclasses.dataclass
class Step:
    """One demo step: a ``mertool`` command line and the file or folder it makes."""

    name: str
    argv: list[str]
    output: Path

    def command(self) -> str:
        return "mertool " + " ".join(shlex.quote(a) for a in self.argv)


def _synth_argv(cfg: SynthConfig) -> list[str]:
    return [
        "--subjects", str(cfg.subjects), "--per-class", str(cfg.per_class), "--frames", str(cfg.frames),
        "--classes", ",".join(cfg.classes), "--amplitude", ",".join(f"{a:g}" for a in cfg.amplitude),
        "--seed", str(cfg.seed),
    ]


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
    """The demo's command lines, in order.

    Parameters
    ----------
    out : path
        Demo folder.
    model : str
        A registered model that reads ``flow``, ``dynimg`` or ``pairs`` features.
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
        Pass ``--overwrite`` to the stages, replacing outputs made with other settings.

    Raises
    ------
    MertoolError
        Unknown model, or a model whose inputs the demo cannot make.
    """
    from .models import get_entry

    entry = get_entry(model)
    spec = entry.input
    out = Path(out)
    data, work, pics, run = out / "data", out / "work", out / "pictures", out / "runs" / model
    cfg = synth or (QUICK if quick else FULL)
    mode = "quick" if quick else "full"
    epochs = epochs or EPOCHS[mode]
    if epochs < 1 or jobs == 0:
        raise MertoolError(f"demo: epochs ({epochs}) must be >= 1 and jobs ({jobs}) non-zero")
    j = str(jobs)
    (shape,) = spec.arrays.values() if len(spec.arrays) == 1 else (None,)
    flow_args = ["--preset", "offtanet"]
    dyn_args = ["--size", "112"]
    extra: list[Step] = []
    if spec.stage == "flow":
        features = work / "flow.h5"
        side = shape[-1]
        if side != 112:
            flow_args = ["--preset", "ststnet", "--size", str(side)]
    elif spec.stage == "dynimg":
        features = work / "dynimg.h5"
        dyn_args = ["--size", str(shape[-1]), "--channels", str(shape[-3])]
    elif spec.stage == "pairs":
        features = work / "pairs.h5"
        side = next(iter(spec.arrays.values()))[-1]
        extra = [Step("pairs", ["pairs", str(work / "aligned.h5"), "-o", str(features), "--size", str(side),
                                "--samples", str(work / "samples_kf.csv")], features)]
    else:
        raise MertoolError(f"demo: model {model!r} reads {spec.stage!r} features; the demo makes flow, dynimg and pairs")
    steps = [
        Step("synth", ["synth", "-o", str(data), *_synth_argv(cfg), "--jobs", j], data / "manifest.csv"),
        Step("index", ["index", "--dataset", "manifest", "--sheet", str(data / "manifest.csv"),
                       "-o", str(work / "samples.csv")], work / "samples.csv"),
        Step("align", ["align", str(work / "samples.csv"), "-o", str(work / "aligned.h5"), "--jobs", j,
                       "--preview", str(pics / "aligned")], work / "aligned.h5"),
        Step("keyframes", ["keyframes", str(work / "samples.csv"), "--aligned", str(work / "aligned.h5"),
                           "-o", str(work / "samples_kf.csv")], work / "samples_kf.csv"),
        Step("flow", ["flow", str(work / "aligned.h5"), "-o", str(work / "flow.h5"), *flow_args,
                      "--samples", str(work / "samples_kf.csv"), "--jobs", j, "--preview", str(pics / "flow")],
             work / "flow.h5"),
        Step("dynimg", ["dynimg", str(work / "aligned.h5"), "-o", str(work / "dynimg.h5"), *dyn_args,
                        "--samples", str(work / "samples_kf.csv"), "--jobs", j, "--preview", str(pics / "dynimg")],
             work / "dynimg.h5"),
        *extra,
        Step("train", ["train", str(features), "--model", model, "-o", str(run), "--epochs", str(epochs),
                       "--batch-size", str(BATCH[mode]), "--seed", "0", "--device", device, "--jobs", j], run / "metrics.json"),
        Step("report", ["report", str(run), "--markdown", str(out / "results.md")], out / "results.md"),
    ]
    if overwrite:
        for step in steps:
            if step.name in ("synth", "align", "flow", "dynimg", "pairs", "train"):
                step.argv.append("--overwrite")
    return steps


def class_flow_picture(flow_h5: str | Path, out_png: str | Path, tile: int = 160) -> Path:
    """Mean onset->apex flow (colour wheel) and strain of each class, one column per class.

    The same magnitude scale is used for every class, so their strengths compare.
    """
    import cv2

    from .stages.stagefile import open_stage
    from .preprocess.render import flow_to_rgb, strain_to_rgb

    sf = open_stage(flow_h5, expect="flow")
    flows = sf.array("flow")
    labels = np.array(sf.meta["label"])
    classes = sorted(set(labels.tolist()))
    means = {c: flows[labels == c].mean(axis=0) for c in classes}
    top_flow = max(float(np.percentile(np.hypot(m[0], m[1]), 99.5)) for m in means.values()) or 1.0
    top_strain = max(float(np.percentile(m[2], 99.5)) for m in means.values()) or 1.0
    columns = []
    for c in classes:
        m = means[c]
        wheel = cv2.resize(flow_to_rgb(m[0], m[1], top_flow), (tile, tile), interpolation=cv2.INTER_AREA)
        strain = cv2.resize(strain_to_rgb(m[2], top_strain), (tile, tile), interpolation=cv2.INTER_AREA)
        head = np.full((24, tile, 3), 255, np.uint8)
        n = int((labels == c).sum())
        cv2.putText(head, f"{c} (n={n})", (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        columns.append(np.concatenate([head, wheel, strain], axis=0))
    picture = np.concatenate(columns, axis=1)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_png), picture[:, :, ::-1])
    return out_png


def pictures(out: str | Path, model: str = "offtanet") -> dict[str, list[Path]]:
    """Where the demo's pictures are (only those that exist)."""
    out = Path(out)
    pics, run = out / "pictures", out / "runs" / model
    found = {
        "aligned contact sheet": sorted((pics / "aligned").glob("*.png")),
        "flow colour wheels (onset | apex | flow | strain)": sorted((pics / "flow").glob("*.png")),
        "mean flow per class": [p for p in [pics / "class_flow.png"] if p.is_file()],
        "dynamic images": sorted((pics / "dynimg").glob("*.png")),
        "confusion matrix": [p for p in [run / "confusion.png"] if p.is_file()],
        "learning curves": [p for p in [run / "curves.png"] if p.is_file()],
    }
    return found


def run_demo(
    out: str | Path = "mertool_demo",
    model: str = "offtanet",
    quick: bool = False,
    jobs: int = 2,
    device: str = "auto",
    epochs: Optional[int] = None,
    synth: Optional[SynthConfig] = None,
    overwrite: bool = False,
    runner: Optional[Callable[[list[str]], int]] = None,
    echo: Callable[[str], None] = print,
) -> dict:
    """Run every demo step (resuming finished ones) and summarise.

    Parameters
    ----------
    runner : callable, optional
        Runs one command line and returns its exit code (default: the in-process CLI).
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
        A step failed (its own error line has been printed); re-running resumes.
    """
    if runner is None:
        from .cli.main import cli as runner
    out = Path(out)
    steps = demo_steps(out, model, quick, jobs, device, epochs, synth, overwrite)
    record = []
    start = time.perf_counter()
    for i, step in enumerate(steps, start=1):
        echo(f"[{i}/{len(steps)}] {step.name}: {step.command()}")
        t0 = time.perf_counter()
        rc = runner(step.argv)
        seconds = time.perf_counter() - t0
        if rc != 0:
            raise MertoolError(
                f"demo step {step.name!r} failed (exit {rc}); fix the cause and re-run to resume"
                + ("" if overwrite else " (or add --overwrite if the settings changed)")
            )
        record.append({"name": step.name, "command": step.command(), "seconds": round(seconds, 2)})
        echo(f"[{i}/{len(steps)}] {step.name}: done in {seconds:.1f} s")
        if step.name == "flow" and step.output.is_file():
            class_flow_picture(step.output, out / "pictures" / "class_flow.png")
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
