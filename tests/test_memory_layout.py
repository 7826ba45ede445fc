"""Training memory layout (config ``channels_last``): the auto rule, equal results in both layouts, old configs."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import yaml

from mertool.cli.main import cli
from mertool.errors import MertoolError, UsageError
from mertool.models import get_entry
from mertool.models._registry import _REGISTRY
from mertool.train.config import TrainConfig, legacy_identity, resolve_recipe
from mertool.train.devices import channels_last_for
from mertool.train.fold import FoldTrainer
from mertool.train.loso import make_folds
from train_fixtures import TINY, ensure_tiny, synthetic_flow, write_flow_h5

ensure_tiny()
CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)  # a device name only: no GPU is used


@pytest.fixture
def prefers(monkeypatch):
    """Set the tiny model's registry preference for channels-last on CPU."""

    def set_preference(value: bool) -> None:
        monkeypatch.setitem(_REGISTRY, TINY, dataclasses.replace(get_entry(TINY), cpu_channels_last=value))

    return set_preference


@pytest.mark.parametrize("preference", [True, False])
def test_auto_is_channels_last_on_cuda_and_the_model_preference_on_cpu(prefers, preference):
    prefers(preference)
    assert channels_last_for("auto", TINY, CUDA) is True
    assert channels_last_for("auto", TINY, CPU) is preference
    for explicit in (True, False):  # an explicit value wins on every device
        assert channels_last_for(explicit, TINY, CPU) is explicit
        assert channels_last_for(explicit, TINY, CUDA) is explicit


@pytest.mark.parametrize("bad", ["yes please", "nhwc", 1, 0, None, 2.0])
def test_a_bad_value_is_one_clear_error(bad):
    with pytest.raises(MertoolError, match=r"channels_last must be auto, true or false, got"):
        TrainConfig(model=TINY, channels_last=bad).validate()
    with pytest.raises(UsageError, match=r"channels_last must be auto, true or false"):
        channels_last_for(bad, TINY, CPU)


def test_default_is_auto():
    assert TrainConfig().channels_last == "auto"
    assert resolve_recipe(TrainConfig(model=TINY)).channels_last == "auto"


@pytest.mark.parametrize("text,value", [("true", True), ("false", False), ("auto", "auto"), ("'true'", True),
                                        ("no", False)])
def test_config_files_with_true_false_or_auto_load(tmp_path, text, value):
    path = tmp_path / "c.yaml"
    path.write_text(f"model: {TINY}\nchannels_last: {text}\n")
    got = TrainConfig.resolve(path).channels_last
    assert got == value and type(got) is type(value)


def test_cli_names_the_bad_value_in_one_line(tmp_path, capsys):
    x, labels, subjects = synthetic_flow(n_subjects=3, per_subject=3)
    flow = write_flow_h5(tmp_path / "flow.h5", x, labels, subjects)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("channels_last: sometimes\n")
    rc = cli(["train", str(flow), "--model", TINY, "-q", "--device", "cpu", "--config", str(cfg),
              "-o", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc != 0 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        "error: channels_last must be auto, true or false, got 'sometimes'"]


def _fold(model: str, channels_last, **kw):
    size = get_entry(model).input.arrays["flow"][-1]
    x, labels, subjects = synthetic_flow(n_subjects=3, per_subject=6, size=size)
    y = np.array([sorted(set(labels)).index(c) for c in labels])
    cfg = resolve_recipe(TrainConfig(model=model, channels_last=channels_last, seed=1, **kw))
    fold = make_folds(subjects, "loso", 5, [], 0.0, cfg.seed)[0]
    return FoldTrainer({"flow": torch.from_numpy(x)}, y, fold, 0, cfg, 3, CPU)


@pytest.mark.parametrize("model,kw", [
    (TINY, {}),
    ("ststnet", {"batch_size": 8, "lr": 1e-3, "model_kwargs": {"dropout": 0.0}}),
])
def test_training_in_either_layout_ends_at_the_same_model(model, kw):
    """SGD (Adam turns round-off in gradients that are truly zero into full steps), 3 epochs."""
    results = {}
    for layout in (True, False):
        trainer = _fold(model, layout, epochs=3, optimizer="sgd", momentum=0.9, **kw)
        result, weights = trainer.run()
        fmt = torch.channels_last if layout else torch.contiguous_format
        conv = next(p for p in trainer.model.parameters() if p.ndim == 4)
        assert trainer.fmt == fmt and conv.is_contiguous(memory_format=fmt)
        results[layout] = result, weights
    (a, wa), (b, wb) = results[True], results[False]
    assert a.history[0]["train_loss"] != a.history[-1]["train_loss"]  # it trained
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)
    for key in wa:
        np.testing.assert_allclose(wa[key].float().numpy(), wb[key].float().numpy(), atol=1e-5, err_msg=key)
    for ra, rb in zip(a.history, b.history):
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], abs=1e-5)


@pytest.mark.parametrize("preference", [True, False])
def test_fold_trainer_follows_auto(prefers, preference):
    prefers(preference)
    trainer = _fold(TINY, "auto", epochs=1)
    trainer.setup()
    assert trainer.fmt == (torch.channels_last if preference else torch.contiguous_format)


def test_run_recorded_with_channels_last_true_resumes_under_auto(tmp_path):
    """A run directory from before ``auto`` (identity hashed with channels_last: true) resumes, nothing retrained."""
    x, labels, subjects = synthetic_flow(n_subjects=3, per_subject=4)
    flow = write_flow_h5(tmp_path / "flow.h5", x, labels, subjects)
    run = tmp_path / "r"
    quick = ["train", str(flow), "--model", TINY, "--epochs", "2", "-q", "--device", "cpu", "-o", str(run)]
    assert cli(quick) == 0
    # make it the old run: identity and config.yaml as mertool recorded them with channels_last true
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert recorded["channels_last"] == "auto"
    old_cfg = dataclasses.replace(TrainConfig.resolve(run / "config.yaml"), channels_last=True)
    info = json.loads((run / "run.json").read_text())
    info["identity"] = legacy_identity(old_cfg, info["inputs"][0]["key"])
    (run / "run.json").write_text(json.dumps(info))
    (run / "config.yaml").write_text(yaml.safe_dump({**recorded, "channels_last": True}))
    final = run / "folds" / "s1" / "final.pt"
    mtime = final.stat().st_mtime_ns
    assert cli(quick) == 0
    assert final.stat().st_mtime_ns == mtime  # resumed: nothing retrained
    # control: an identity the run never had is refused, so the resume above was not vacuous
    info["identity"] = legacy_identity(dataclasses.replace(old_cfg, lr=0.5), info["inputs"][0]["key"])
    (run / "run.json").write_text(json.dumps(info))
    assert cli(quick) != 0


def test_legacy_identity_hashes_auto_as_the_old_default():
    cfg = resolve_recipe(TrainConfig(model=TINY, device="cpu", seed=3))
    key = "0123456789abcdef"
    assert legacy_identity(cfg, key) == legacy_identity(dataclasses.replace(cfg, channels_last=True), key)
    assert legacy_identity(cfg, key) != legacy_identity(dataclasses.replace(cfg, channels_last=False), key)
