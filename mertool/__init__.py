"""mertool: a toolkit for micro-expression recognition.

Staged pipeline: index -> align -> keyframes -> flow / dynimg / pairs -> train -> report.
Each stage is a library function returning a :class:`~mertool.stages._driver.StageResult`;
the ``mertool`` CLI is a thin layer over the same calls. The public API::

    import mertool
    samples = mertool.load_dataset("manifest", sheet="clips.csv")       # list of Sample
    mertool.write_samples(samples, "work/samples.csv")
    mertool.run_align("work/samples.csv", "work/aligned.h5")
    mertool.run_flow("work/aligned.h5", "work/flow.h5", mertool.FlowConfig.resolve(preset="offtanet"))
    flow = mertool.open_stage("work/flow.h5").array("flow")             # N x 3 x 112 x 112
    mertool.train_run(mertool.TrainConfig(features="work/flow.h5", model="offtanet", out="runs/x"))
    mertool.predict_clip("runs/x", frames="clips/s01_ep1", onset=1, apex=9)

Names are imported on first use, so ``import mertool`` stays fast (no torch until needed).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> module that defines it
_API = {
    # stage files
    "open_stage": "mertool.stages.stagefile",
    "StageResult": "mertool.stages._driver",
    # samples and datasets
    "Sample": "mertool.samples",
    "read_samples": "mertool.samples",
    "write_samples": "mertool.samples",
    "load_dataset": "mertool.datasets",
    "list_datasets": "mertool.datasets",
    # stages
    "AlignConfig": "mertool.stages.align",
    "run_align": "mertool.stages.align",
    "run_index": "mertool.stages.index",
    "KeyframesConfig": "mertool.stages.keyframes",
    "run_keyframes": "mertool.stages.keyframes",
    "FlowConfig": "mertool.stages.flow",
    "run_flow": "mertool.stages.flow",
    "DynimgConfig": "mertool.stages.dynimg",
    "run_dynimg": "mertool.stages.dynimg",
    "PairsConfig": "mertool.stages.pairs",
    "run_pairs": "mertool.stages.pairs",
    "import_flow": "mertool.stages.importer",
    # recipes: how each model's input is made
    "plan_features": "mertool.recipes",
    "make_features": "mertool.recipes",
    # models
    "create_model": "mertool.models",
    "list_models": "mertool.models",
    "get_entry": "mertool.models",
    # training, evaluation, inference
    "TrainConfig": "mertool.train.config",
    "train_run": "mertool.train.run",
    "RunDir": "mertool.train.rundir",
    "predict_clip": "mertool.predict",
    # built-in data
    "SynthConfig": "mertool.synth",
    "generate": "mertool.synth",
    "run_demo": "mertool.demo",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'mertool' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
