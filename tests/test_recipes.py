"""Recipes: every model's input is made from its registry entry alone, demo and predict use it.

The built-in synthetic set (real faces, known labels) is made once for the module; a toy
model with an input size no shipped model uses is registered to show that a new size
needs nothing but its registry entry.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mertool.cli.main import cli
from mertool.errors import MertoolError
from mertool.models import get_entry, list_models
from mertool.models._registry import _REGISTRY, InputSpec, register_model
from mertool.recipes import features_path, make_features, options_for, plan_features, recipe_text
from mertool.samples import read_samples
from mertool.stages.dynimg import DynimgConfig
from mertool.stages.flow import FlowConfig
from mertool.stages.pairs import PairsConfig
from mertool.stages.stagefile import open_stage


@pytest.mark.parametrize("model", list_models())
def test_every_registered_model_has_a_recipe_that_makes_its_shapes(model):
    spec = get_entry(model).input
    steps = plan_features(model)
    assert [s.verb for s in steps[:2]] == ["align", "keyframes"] and steps[-1].verb == spec.stage
    opts = steps[-1].options
    shape = next(iter(spec.arrays.values()))
    if spec.stage == "flow":  # N x 3 x S x S
        assert (3, FlowConfig.resolve(**opts).size, FlowConfig.resolve(**opts).size) == shape
    elif spec.stage == "dynimg":  # N x P x C x S x S
        cfg = DynimgConfig.resolve(**opts)
        assert (len(cfg.phase_list()), cfg.channels, cfg.size, cfg.size) == shape
    else:  # pairs: onset and apex, 3 x S x S each
        side = PairsConfig.resolve(**opts).size
        assert all(s == (3, side, side) for s in spec.arrays.values())


def test_recipe_text_and_for_model_errors(capsys):
    lines = recipe_text("ststnet", "w").splitlines()
    assert lines[-1] == "flow\tw/flow28.h5\t--preset ststnet"
    assert options_for("dianet-small", "dynimg")["size"] == 64
    with pytest.raises(MertoolError, match="not fed by `mertool dynimg`"):
        options_for("offtanet", "dynimg")
    assert cli(["flow", "x.h5", "-o", "y.h5", "--for-model", "dianet"]) == 2
    assert "not fed by `mertool flow`" in capsys.readouterr().err


class _Toy(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.head = nn.Linear(3, num_classes)

    def forward(self, flow: torch.Tensor) -> torch.Tensor:
        return self.head(flow.mean(dim=(2, 3)))


@pytest.fixture
def toy_model():
    """A model reading 40 x 40 flow maps: one registry entry, nothing else."""
    name = "toy-flow40"
    register_model(name, InputSpec("flow", {"flow": (3, 40, 40)}), "test: new input size",
                   {"epochs": 1, "batch_size": 4, "lr": 0.01, "optimizer": "adam"})(lambda num_classes, **kw: _Toy(num_classes))
    yield name
    _REGISTRY.pop(name)


@pytest.fixture(scope="module")
def built_in(tmp_path_factory):
    """A tiny built-in set (2 subjects x 3 classes x 1 clip of 10 frames) and its samples.csv."""
    from mertool.stages.index import run_index
    from mertool.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("builtin")
    manifest = generate(root / "data", SynthConfig(subjects=2, per_class=1, frames=10), progress=False)
    run_index("manifest", root / "samples.csv", sheet=manifest)
    return root


def test_a_model_with_a_new_input_size_gets_its_features_from_its_entry(toy_model, built_in, tmp_path):
    from mertool.demo import demo_steps

    assert plan_features(toy_model)[-1].options == {"preset": "ststnet", "size": 40}
    work = tmp_path / "work"
    path = make_features(toy_model, built_in / "samples.csv", work, progress=False)
    assert path == features_path(toy_model, work) == work / "flow40.h5"
    assert open_stage(path).array("flow").shape == (6, 3, 40, 40)
    steps = {s.name: s.command for s in demo_steps(tmp_path / "demo", model=toy_model)}
    assert f"work/flow40.h5 --model {toy_model}" in steps["train"] and "--size 40" in steps["flow"]


@pytest.mark.parametrize("model", ["facesleuth-small", "dianet-small"])
def test_predict_replays_the_recipe_for_every_family(model, built_in, tmp_path):
    """predict on a clip folder = the ensemble on that clip's training features."""
    from mertool.predict import predict_clip, predict_inputs
    from mertool.train.config import TrainConfig
    from mertool.train.run import train_run

    features = make_features(model, built_in / "samples.csv", tmp_path / "work", progress=False)
    run = tmp_path / "run"
    train_run(features, run, TrainConfig.resolve(model=model, epochs=1, batch_size=3, device="cpu"), progress=False)
    sf = open_stage(features)
    sample = read_samples(tmp_path / "work" / "samples_kf.csv")[0]
    spec = get_entry(model).input
    cached_inputs = {name: sf.sample(sample.sample_id)[name][None] for name in spec.arrays}
    if spec.meta:
        from mertool.train.data import meta_vectors

        cached_inputs.update({f: meta_vectors(f, [sf.meta_of(sample.sample_id)[f]], sf.path) for f in spec.meta})
    cached = predict_inputs(run, cached_inputs)[0]
    res = predict_clip(run, frames=sample.frames, onset=sample.onset, apex=sample.apex, offset=sample.offset,
                       aus=sample.aus, device="cpu")
    got = np.array([res["probabilities"][c] for c in sorted(res["probabilities"])])
    assert np.allclose(got, cached, atol=1e-5), (got, cached)
    assert res["models"] == 2 and (res["onset"], res["apex"], res["offset"]) == (sample.onset, sample.apex, sample.offset)


def _readme_block(start: str) -> str:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = text[text.index(start):]
    return code[: code.index("```")]


def test_readme_extension_examples_work(built_in, tmp_path):
    """The README's 'Extending mertool' code runs as printed (imports made absolute)."""
    ns: dict = {}
    exec(_readme_block("from torch import nn\nfrom mertool.models import InputSpec, register_model"), ns)
    try:
        assert plan_features("mynet40")[-1].command() == "mertool flow --preset ststnet --size 40"
    finally:
        _REGISTRY.pop("mynet40")
    stage = _readme_block("# mertool/stages/meanframe.py").replace("from ..", "from mertool.").replace(
        "from ._driver", "from mertool.stages._driver").replace("from .stagefile", "from mertool.stages.stagefile")
    exec(stage, ns)
    from mertool.stages.align import run_align

    aligned = run_align(built_in / "samples.csv", tmp_path / "aligned.h5", progress=False).path
    result = ns["run_meanframe"](aligned, tmp_path / "mean.h5", progress=False)
    assert result.done == 6 and open_stage(result.path).array("mean").shape == (6, 224, 224, 3)
