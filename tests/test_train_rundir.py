"""Run identity, the run directory's layout (RunDir), default run names, hooks and augment lookup."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from mertool.cli.main import cli
from mertool.errors import MertoolError
from mertool.train.config import IDENTITY_KEYS, TrainConfig, identity, legacy_identity, resolve_recipe
from mertool.train.fold import model_hook
from mertool.train.rundir import RunDir
from train_fixtures import ensure_tiny, synthetic_flow, write_flow_h5

ensure_tiny()
QUICK = ["--model", "tinyflow", "--epochs", "2", "-q", "--device", "cpu"]


@pytest.fixture
def flow_file(tmp_path: Path) -> Path:
    x, labels, subjects = synthetic_flow(n_subjects=3, per_subject=4)
    return write_flow_h5(tmp_path / "flow.h5", x, labels, subjects)


def test_identity_is_the_computed_fields_only():
    execution = {"device", "devices", "jobs", "checkpoint_every", "channels_last"}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(IDENTITY_KEYS) == fields - execution  # a new field must be classified here
    cfg = resolve_recipe(TrainConfig(model="tinyflow", device="cpu", seed=3))
    same = dataclasses.replace(cfg, device="auto", jobs=4, checkpoint_every=1, channels_last=False)
    assert identity(cfg, "k") == identity(same, "k")
    assert identity(cfg, "k") != identity(dataclasses.replace(cfg, lr=0.5), "k") != identity(cfg, "other")
    # what mertool recorded before IDENTITY_KEYS (computed with that version), so older runs resume
    assert legacy_identity(cfg, "0123456789abcdef") == "6a776f51a8d0daed"


def test_execution_switch_resumes_a_finished_run(flow_file, tmp_path):
    run = tmp_path / "r"
    assert cli(["train", str(flow_file), *QUICK, "-o", str(run)]) == 0
    mtime = (run / "folds" / "s1" / "final.pt").stat().st_mtime_ns
    cfg = tmp_path / "exec.yaml"
    cfg.write_text(yaml.safe_dump({"channels_last": False, "checkpoint_every": 1}))
    assert cli(["train", str(flow_file), *QUICK, "-o", str(run), "--config", str(cfg), "--jobs", "2"]) == 0
    assert (run / "folds" / "s1" / "final.pt").stat().st_mtime_ns == mtime  # nothing retrained
    assert yaml.safe_load((run / "config.yaml").read_text())["channels_last"] is False


def test_default_run_dir_is_named_after_the_model(flow_file, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli(["train", str(flow_file), *QUICK]) == 0
    assert (tmp_path / "runs" / "tinyflow" / "metrics.json").is_file()
    capsys.readouterr()
    assert cli(["train", str(flow_file), *QUICK, "--oracle"]) == 0
    assert (tmp_path / "runs" / "tinyflow_ORACLE" / "metrics_ORACLE.json").is_file()
    err = capsys.readouterr().err
    assert f"{Path('runs') / 'tinyflow_ORACLE'}: UF1" in err and "ORACLE (best epoch on test, not honest)" in err
    assert RunDir.for_model("offtanet").path == Path("runs/offtanet")
    assert RunDir.for_model("offtanet", oracle=True, root="x").path == Path("x/offtanet_ORACLE")


def test_rundir_names_and_cached_reads(tmp_path):
    rd = RunDir(tmp_path / "run")
    assert rd.fold("sub 01/a").path == tmp_path / "run" / "folds" / "sub_01_a"
    assert rd.final_weights("s1") == tmp_path / "run" / "folds" / "s1" / "final.pt"
    assert rd.fold("s1").checkpoint.name == "checkpoint.pt" and rd.fold("s1").log.name == "log.csv"
    assert [rd.predictions(True).name, rd.metrics_file(True).name, rd.plot("curves", True).name] == [
        "predictions_ORACLE.csv", "metrics_ORACLE.json", "curves_ORACLE.png"]
    assert rd.metrics() is None and not rd.is_run
    with pytest.raises(MertoolError, match="not a mertool run"):
        rd.info()
    rd.prepare("abc")
    rd.write_info({"identity": "abc", "status": "running"})
    rd.write_config({"model": "tinyflow"})
    with pytest.raises(MertoolError, match="unfinished"):
        rd.finished()
    (rd.path / "run.json").write_text(json.dumps({"identity": "abc", "status": "done"}))
    assert rd.info()["status"] == "running"  # read once: the cache holds what this RunDir wrote
    assert RunDir(rd.path).finished()["status"] == "done"
    with pytest.raises(MertoolError, match="--overwrite"):
        RunDir(rd.path).prepare("other")
    assert RunDir(rd.path).prepare("other", also=("abc",))["identity"] == "abc"  # an alias resumes
    assert RunDir(rd.path).prepare("other", overwrite=True) == {} and not rd.run_json.exists()


def test_model_hooks_are_found_by_declared_name():
    class Logged(torch.nn.Linear):
        def epoch_log(self) -> dict[str, float]:
            return {"x": 1.0}

    m = Logged(2, 2)
    assert model_hook(m, "epoch_log")() == {"x": 1.0}
    assert model_hook(m, "param_groups") is None and model_hook(torch.nn.Linear(2, 2), "epoch_log") is None
    with pytest.raises(ValueError, match="not a model hook"):
        model_hook(m, "forward")


def test_family_augmentations_found_without_importing_models_first():
    code = (
        "from mertool.train.augment import get_augment, list_augments\n"
        "assert {'none', 'hflip', 'flow_hflip', 'dynimg_fliprot', 'facesleuth_pair'} <= set(list_augments())\n"
        "from mertool.models.dianet import dynimg_fliprot\n"
        "assert get_augment('dynimg_fliprot') is dynimg_fliprot\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
