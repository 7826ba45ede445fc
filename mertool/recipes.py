"""Recipes: how each model's input is *made*, derived from what it consumes.

The model registry says what a model reads (:class:`~mertool.models.InputSpec`: stage
file kind and exact array shapes). :func:`plan_features` turns that into the stage
steps that make such a file: align (every frame) -> keyframes (fill missing apexes) ->
the feature stage with the options that give the model's shapes. The demo
(:func:`make_features`), ``mertool <verb> --for-model M``, ``mertool models --recipe M``
(read by pipelines/*.sh) and ``mertool predict`` all use this one plan, so a model with a
new input size needs only its registry entry; a new kind of feature stage registers one
maker with :func:`feature_maker`.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import MertoolError, UsageError

#: Side of the aligned frames a recipe starts from, unless its maker says otherwise.
ALIGN_SIZE = 224


@dataclasses.dataclass(frozen=True)
class FeatureStep:
    """One stage of a recipe.

    Attributes
    ----------
    verb : str
        ``align``, ``keyframes``, ``flow``, ``dynimg``, ``pairs`` (a ``mertool`` verb).
    options : dict
        Stage config fields that differ from the stage's defaults.
    output : str
        File name of the step's output inside the work folder.
    """

    verb: str
    options: dict[str, Any]
    output: str

    def flags(self) -> list[str]:
        """The options as command-line flags (``size=28`` -> ``--size 28``)."""
        out: list[str] = []
        for key, value in self.options.items():
            out += [f"--{key.replace('_', '-')}", str(value)]
        return out

    def command(self) -> str:
        return " ".join(["mertool", self.verb, *map(shlex.quote, self.flags())])


Maker = Callable[[Any], list[FeatureStep]]
_MAKERS: dict[str, tuple[Maker, int]] = {}


def feature_maker(stage: str, align_size: int = ALIGN_SIZE) -> Callable[[Maker], Maker]:
    """Register ``maker(input_spec) -> [FeatureStep]`` for models reading ``stage`` files.

    ``align_size`` is the side the clips are aligned at before the maker's steps.
    """

    def wrap(fn: Maker) -> Maker:
        _MAKERS[stage] = (fn, align_size)
        return fn

    return wrap


def _only_shape(spec: Any) -> tuple[int, ...]:
    if len(spec.arrays) != 1:
        raise MertoolError(f"{spec.stage!r} models read one array; got {', '.join(spec.arrays)}")
    return tuple(next(iter(spec.arrays.values())))


# Flow presets resize the frames to 112 px before TV-L1 (Off-TANet's released preprocessing
# resizes the dataset crop once): aligning at 112 makes that the only resize.
@feature_maker("flow", align_size=112)
def _flow_steps(spec: Any) -> list[FeatureStep]:
    channels, side, _ = _only_shape(spec)
    if channels != 3:
        raise MertoolError(f"flow files hold 3 channels (u, v, strain); the model reads {channels}")
    from .stages.contents import NORMALISE_ENCODING
    from .stages.flow import FlowConfig

    # Off-TANet's preset makes 112 px maps; STSTNet's makes the same flow, area-resized.
    preset = "offtanet" if side == 112 else "ststnet"
    options: dict[str, Any] = {"preset": preset}
    if side not in (112, 28):
        options["size"] = side
    name = f"flow{side}.h5"
    # A model made for another encoding than its preset's (Off-ApexNet: raw displacement at
    # 28 px) gets the normalisation that makes it, in a file of its own.
    if spec.encoding and NORMALISE_ENCODING[FlowConfig.PRESETS[preset]["normalise"]] != spec.encoding:
        options["normalise"] = next(n for n, e in NORMALISE_ENCODING.items() if e == spec.encoding)
        name = f"flow{side}_{spec.encoding}.h5"
    return [FeatureStep("flow", options, name)]


@feature_maker("dynimg")
def _dynimg_steps(spec: Any) -> list[FeatureStep]:
    phases, channels, side, _ = _only_shape(spec)
    by_count = {2: "onset,offset", 1: "whole"}
    if phases not in by_count:
        raise MertoolError(f"dynimg models read 1 (whole) or 2 (onset, offset) phases; the model reads {phases}")
    options: dict[str, Any] = {"phases": by_count[phases], "size": side, "channels": channels}
    return [FeatureStep("dynimg", options, f"dynimg{side}.h5")]


@feature_maker("pairs")
def _pairs_steps(spec: Any) -> list[FeatureStep]:
    sides = {shape[-1] for shape in spec.arrays.values()}
    if len(sides) != 1:
        raise MertoolError(f"pairs models read onset and apex frames of one size; got {sorted(sides)}")
    side = sides.pop()
    return [FeatureStep("pairs", {"size": side}, f"pairs{side}.h5")]


def plan_features(model: str) -> list[FeatureStep]:
    """The stage steps that make a registered model's training input.

    Parameters
    ----------
    model : str
        A registered model name (``mertool models``).

    Returns
    -------
    list of FeatureStep
        ``align`` (every frame; 112 px for flow models, else 224), ``keyframes`` (apex
        spotted where the sheet lacks it), then the feature stage with the options that
        give the model's input shapes.

    Raises
    ------
    MertoolError
        Unknown model, or one reading a stage kind no maker is registered for.

    Examples
    --------
    >>> [s.command() for s in plan_features("ststnet")][-1]
    'mertool flow --preset ststnet'
    """
    from .models import get_entry

    spec = get_entry(model).input
    if spec.stage not in _MAKERS:
        raise MertoolError(
            f"model {model!r} reads {spec.stage!r} files; recipes know {', '.join(sorted(_MAKERS))}"
        )
    maker, size = _MAKERS[spec.stage]
    tag = "" if size == ALIGN_SIZE else str(size)  # aligned.h5 / aligned112.h5: one work folder serves all
    return [
        FeatureStep("align", {"size": size, "frames": "all"}, f"aligned{tag}.h5"),
        FeatureStep("keyframes", {}, f"samples_kf{tag}.csv"),
        *maker(spec),
    ]


def options_for(model: str, verb: str) -> dict[str, Any]:
    """The options a model's recipe gives one verb (``mertool flow --for-model M``).

    Raises
    ------
    MertoolError
        The model's recipe has no such step (e.g. ``dynimg`` for a flow model).
    """
    for step in plan_features(model):
        if step.verb == verb:
            return dict(step.options)
    verbs = ", ".join(s.verb for s in plan_features(model))
    raise UsageError(f"model {model!r} is not fed by `mertool {verb}` (its recipe: {verbs})")


def recipe_text(model: str, work: str = "WORK") -> str:
    """``mertool models --recipe M``: one ``verb<TAB>output<TAB>flags`` line per step."""
    lines = [f"{s.verb}\t{work}/{s.output}\t{' '.join(map(shlex.quote, s.flags()))}".rstrip() for s in plan_features(model)]
    return "\n".join(lines)


def features_path(model: str, work: str | Path) -> Path:
    """Where :func:`make_features` writes a model's training input under ``work``."""
    return Path(work) / plan_features(model)[-1].output


def run_step(
    step: FeatureStep,
    work: str | Path,
    samples_csv: str | Path,
    *,
    aligned: str | Path | None = None,
    apexes: str | Path | None = None,
    jobs: int = 1,
    overwrite: bool = False,
    preview: str | Path | None = None,
    progress: bool = True,
) -> Any:
    """Run one recipe step inside ``work``.

    ``samples_csv`` feeds align and keyframes; ``aligned`` (the align step's output) feeds
    keyframes and the feature stage, ``apexes`` (the keyframes output, if any) the feature
    stage's ``--samples``. Returns the stage's result (:class:`~mertool.stages._driver.
    StageResult`, or the keyframes result).
    """
    from .stages import align, dynimg, flow, keyframes, pairs

    out = Path(work) / step.output
    common = {"jobs": jobs, "overwrite": overwrite, "preview": preview, "progress": progress}
    if step.verb == "align":
        return align.run_align(samples_csv, out, align.AlignConfig.resolve(**step.options), **common)
    if step.verb == "keyframes":
        return keyframes.run_keyframes(samples_csv, out, keyframes.KeyframesConfig.resolve(**step.options), aligned=aligned)
    stages = {"flow": (flow.run_flow, flow.FlowConfig), "dynimg": (dynimg.run_dynimg, dynimg.DynimgConfig),
              "pairs": (pairs.run_pairs, pairs.PairsConfig)}
    if step.verb not in stages:
        raise MertoolError(f"recipe step {step.verb!r} has no runner")
    run, config = stages[step.verb]
    return run(aligned, out, config.resolve(**step.options), samples_csv=apexes, **common)


def make_features(
    model: str,
    samples_csv: str | Path,
    work: str | Path,
    *,
    jobs: int = 1,
    overwrite: bool = False,
    previews: str | Path | None = None,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> Path:
    """Make a model's training input from a samples.csv by running its recipe.

    Parameters
    ----------
    model : str
        A registered model.
    samples_csv : path
        samples.csv from ``mertool index`` (or :func:`mertool.samples.write_samples`).
    work : path
        Folder for the stage files (each step resumes or is found up to date).
    previews : path, optional
        Folder whose ``<verb>/`` subfolders get each stage's preview pictures.
    echo : callable, optional
        Receives one line per finished step (its summary).

    Returns
    -------
    Path
        The feature file ``mertool train`` reads.
    """
    Path(work).mkdir(parents=True, exist_ok=True)
    plan = plan_features(model)
    inputs = {"aligned": Path(work) / plan[0].output, "apexes": Path(work) / plan[1].output}
    for step in plan:
        preview = None if previews is None or step.verb == "keyframes" else Path(previews) / step.verb
        result = run_step(step, work, samples_csv, **inputs, jobs=jobs, overwrite=overwrite, preview=preview,
                          progress=progress)
        if echo is not None:
            echo(result.summary())
    return features_path(model, work)


#: stage-file kind (as recorded in a file's ``stage`` attribute) -> the verb that writes it
VERB_OF_STAGE = {"aligned": "align", "flow": "flow", "dynimg": "dynimg", "pairs": "pairs"}


def replay(pipeline: list[dict], samples_csv: str | Path, work: str | Path) -> Path:
    """Re-make a feature file for other clips with exactly the recorded stage parameters.

    Parameters
    ----------
    pipeline : list of dict
        ``{"stage", "params", ...}`` of a feature file and its upstream stage files, nearest
        first (:func:`mertool.stages.stagefile.pipeline_of`; a run records it in run.json).
    samples_csv : path
        The clips (their apex is used as given: there is no keyframes step in a replay).
    work : path
        Folder for the replayed stage files.

    Returns
    -------
    Path
        The replayed feature file.

    Raises
    ------
    MertoolError
        The pipeline is not align -> one feature stage, or its parameters do not fit this
        mertool version.
    """
    stages = [p["stage"] for p in pipeline]
    if len(pipeline) < 2 or stages[-1] != "aligned" or stages[0] not in VERB_OF_STAGE or stages[0] == "aligned":
        raise MertoolError(
            f"cannot replay the recorded feature pipeline ({' <- '.join(stages) or 'none recorded'}): "
            "it needs a feature file made from an aligned.h5 that can still be read"
        )
    align, feature = (FeatureStep(VERB_OF_STAGE[p["stage"]], dict(p["params"]), f"{p['stage']}.h5")
                      for p in (pipeline[-1], pipeline[0]))
    if align.options.get("crop") == "auto":  # the new clip has no dataset: use the policy the clips got
        align.options["crop"] = _crop_used(pipeline[-1]["path"])
    for step in (align, feature):
        try:
            run_step(step, work, samples_csv, aligned=Path(work) / align.output, progress=False)
        except TypeError as exc:  # parameters recorded by another mertool version
            raise MertoolError(f"the recorded {step.verb} parameters do not fit this mertool ({exc})") from None
    return Path(work) / feature.output


def _crop_used(aligned_h5: str | Path) -> str:
    """The crop policy most clips of a recorded aligned.h5 got (``auto`` resolves per dataset)."""
    from collections import Counter

    from .stages.stagefile import open_stage

    policies = open_stage(aligned_h5).meta.get("crop") or ["auto"]
    return Counter(policies).most_common(1)[0][0]
