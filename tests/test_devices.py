"""`mertool train --devices` (one worker process per device) and `--amp bf16` (mertool.train.devices)."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mertool.cli.main import cli
from mertool.errors import UsageError
from mertool.train.config import TrainConfig, identity, resolve_recipe
from mertool.train.devices import amp_mode, check_devices, device_map
from mertool.train.fold import FoldTrainer
from mertool.train.loso import make_folds
from mertool.train.stacked import Replica, StackedTrainer, stack_refusal
from train_fixtures import ensure_tiny, synthetic_flow, write_flow_h5

ensure_tiny()
CPU = torch.device("cpu")


def _flow28(tmp_path: Path) -> Path:
    x, labels, subjects = synthetic_flow(n_subjects=4, per_subject=6, size=28)
    return write_flow_h5(tmp_path / "f28.h5", x, labels, subjects)


def _probs(run: Path) -> np.ndarray:
    with open(run / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return np.array([[float(r[k]) for k in r if k.startswith("p_")] for r in rows])


def _fake_gpus(monkeypatch, n: int, bf16: bool = True) -> None:
    """Make torch report ``n`` CUDA devices (only the checks run; nothing is put on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Fake GPU")


# --- --devices --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Task:
    n: int
    device: str = ""
    threads: int = 0


def _where(task: _Task) -> tuple[int, str, int, int]:
    """Run in a device worker: the task, the device it was given, torch threads, the worker's pid."""
    if task.n < 0:
        raise ValueError(f"task {task.n} failed")
    return task.n, task.device, task.threads, os.getpid()


def test_device_map_runs_each_task_once_in_one_process_per_device():
    out = list(device_map(_where, [_Task(i) for i in range(6)], [CPU, CPU], threads=1, progress=False))
    assert sorted(n for n, *_ in out) == list(range(6))
    assert {d for _, d, _, _ in out} == {"cpu"} and {t for *_, t, _ in out} == {1}
    pids = {pid for *_, pid in out}
    assert len(pids) <= 2 and os.getpid() not in pids


def test_device_map_stops_on_a_failing_task():
    with pytest.raises(ValueError, match="task -1 failed"):
        list(device_map(_where, [_Task(0), _Task(-1), _Task(2)], [CPU], progress=False))


def test_devices_cpu_cpu_equals_jobs_2_and_one_process(tmp_path, capsys):
    """Two CPU device workers give the predictions of --jobs 2 and of one process (1e-4)."""
    flow = _flow28(tmp_path)
    base = ["train", str(flow), "--model", "ststnet-fast", "--epochs", "3", "-q"]
    assert cli([*base, "--device", "cpu", "-o", str(tmp_path / "one")]) == 0
    assert cli([*base, "--device", "cpu", "--jobs", "2", "-o", str(tmp_path / "jobs")]) == 0
    assert cli([*base, "--devices", "cpu,cpu", "-o", str(tmp_path / "devs")]) == 0
    np.testing.assert_allclose(_probs(tmp_path / "devs"), _probs(tmp_path / "one"), atol=1e-4)
    np.testing.assert_allclose(_probs(tmp_path / "devs"), _probs(tmp_path / "jobs"), atol=1e-4)
    # stacked groups are tasks too: two groups of 2 folds on the two device workers
    assert cli([*base, "--device", "cpu", "--fold-batch", "2", "-o", str(tmp_path / "st")]) == 0
    capsys.readouterr()
    assert cli([*base, "--devices", "cpu,cpu", "--fold-batch", "2", "-o", str(tmp_path / "stdevs")]) == 0
    assert capsys.readouterr().err.count("(stacked)") == 4
    np.testing.assert_allclose(_probs(tmp_path / "stdevs"), _probs(tmp_path / "st"), atol=1e-4)


def test_fold_batch_auto_with_devices_takes_what_fits_every_device(tmp_path, capsys, monkeypatch):
    """`--fold-batch auto --devices A,B`: a group may go to either device, so the smaller fit counts."""
    import mertool.train.tasks as tasks

    asked = []

    def fit(cfg, X, num_classes, device, most):
        asked.append(device)
        return (3, 2)[len(asked) - 1]  # the second device has room for fewer replicas

    monkeypatch.setattr(tasks, "auto_fold_batch", fit)
    flow = _flow28(tmp_path)
    assert cli(["train", str(flow), "--model", "ststnet-fast", "--epochs", "1", "--devices", "cpu,cpu",
                "--fold-batch", "auto", "-o", str(tmp_path / "r")]) == 0
    assert asked == [CPU, CPU] and "fold batch auto = 2 (of 4 folds to train)" in capsys.readouterr().err


def test_devices_are_not_part_of_the_identity():
    cfg = resolve_recipe(TrainConfig(model="ststnet-fast"))
    assert identity(dataclasses.replace(cfg, devices=["cpu", "cpu"]), "k") == identity(cfg, "k")


@pytest.mark.parametrize("devices,n_gpus,msg", [
    ("cuda:0,cuda:3", 2, "'cuda:3': only 2 CUDA device(s)"),
    ("cuda:0", 0, "no CUDA device is available"),
    ("gpu0", 2, "unknown device 'gpu0'"),
    ("cuda:0,cuda:0", 2, "names cuda:0 more than once"),
    ("cuda,cuda:0", 2, "names cuda:0 more than once"),
    ("cpu,cuda:1", 2, "mixes device types"),
    ("auto", 2, "not auto"),
    ("cpu,,cpu", 0, "unknown device ''"),
])
def test_bad_devices_are_one_error_line_before_any_work(tmp_path, capsys, monkeypatch, devices, n_gpus, msg):
    _fake_gpus(monkeypatch, n_gpus)
    flow, out = _flow28(tmp_path), tmp_path / "run"
    capsys.readouterr()
    assert cli(["train", str(flow), "--model", "ststnet-fast", "--epochs", "1", "-q", "--devices", devices,
                "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and msg in err and "Traceback" not in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("extra,msg", [(["--jobs", "2"], "leave device (auto) and jobs (1) unset"),
                                       (["--device", "cpu"], "leave device (auto) and jobs (1) unset")])
def test_devices_exclude_device_and_jobs(tmp_path, capsys, extra, msg):
    flow = _flow28(tmp_path)
    capsys.readouterr()
    assert cli(["train", str(flow), "--model", "ststnet-fast", "--epochs", "1", "-q", "--devices", "cpu,cpu",
                *extra, "-o", str(tmp_path / "r")]) == 2
    assert msg in capsys.readouterr().err


def test_devices_with_a_scheduler_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MERTOOL_SCHEDULER", "local:1")
    flow = _flow28(tmp_path)
    capsys.readouterr()
    assert cli(["train", str(flow), "--model", "ststnet-fast", "--epochs", "1", "-q", "--devices", "cpu,cpu",
                "-o", str(tmp_path / "r")]) == 2
    assert "with --scheduler the cluster's workers train them" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_check_devices_accepts_gpus_that_exist(monkeypatch):
    _fake_gpus(monkeypatch, 2)
    assert check_devices(["cuda:1", "cuda:0"]) == [torch.device("cuda", 1), torch.device("cuda", 0)]
    assert check_devices(["cpu", "cpu"]) == [CPU, CPU]
    with pytest.raises(UsageError):
        check_devices([])


# --- --amp bf16 -------------------------------------------------------------------------------


def test_amp_modes(monkeypatch):
    assert amp_mode(False, CPU)[0] is False and amp_mode(True, CPU)[0] is False  # the GPU default: none on CPU
    assert amp_mode("bf16", CPU) == (True, torch.bfloat16)
    _fake_gpus(monkeypatch, 1, bf16=False)
    gpu = torch.device("cuda", 0)
    assert amp_mode(True, gpu) == (True, torch.float16)
    with pytest.raises(UsageError, match="does not support bfloat16"):
        amp_mode("bf16", gpu)
    cfg = resolve_recipe(TrainConfig(model="ststnet-fast", fold_batch=2))
    assert "fp16 AMP" in stack_refusal(cfg, gpu, 3)  # fp16 needs a gradient scaler: fold by fold
    assert stack_refusal(dataclasses.replace(cfg, amp="bf16"), CPU, 3) is None
    _fake_gpus(monkeypatch, 1, bf16=True)
    assert amp_mode(True, gpu) == (True, torch.bfloat16)
    assert stack_refusal(cfg, gpu, 3) is None


def _easy(size: int = 28, per_subject: int = 8):
    """Three classes told apart by a constant flow direction: an easy problem."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.1, (4 * per_subject, 3, size, size)).astype(np.float32)
    y = np.arange(len(x)) % 3
    x[:, 0] += np.array([1.0, -1.0, 0.0], dtype=np.float32)[y, None, None]
    x[:, 1] += np.array([0.0, 0.0, 1.0], dtype=np.float32)[y, None, None]
    subjects = [f"s{i // per_subject}" for i in range(len(x))]
    return {"flow": torch.from_numpy(x)}, y, make_folds(subjects, "loso", 5, [], 0.0, 0)


@pytest.mark.parametrize("stacked", [False, True])
def test_bf16_trains_on_cpu_close_to_fp32(stacked):
    X, y, folds = _easy()
    cfg = resolve_recipe(TrainConfig(model="ststnet-fast", epochs=15, batch_size=8, lr=0.01, optimizer="adam",
                                     channels_last=False, model_kwargs={"dropout": 0.0}))
    half = dataclasses.replace(cfg, amp="bf16")

    def train(c):
        if stacked:
            return [r for r, _ in StackedTrainer(X, y, [Replica(f, i, 0) for i, f in enumerate(folds)], c, 3, CPU).run()]
        return [FoldTrainer(X, y, f, i, c, 3, CPU).run()[0] for i, f in enumerate(folds)]

    full, low = train(cfg), train(half)
    for a, b in zip(full, low):
        losses = [h["train_loss"] for h in b.history]
        assert np.isfinite(losses).all() and losses[-1] < losses[0]
        pa, pb = np.array(a.probs), np.array(b.probs)
        assert (pb.argmax(1) == y[b.test_index]).mean() == 1.0  # learnt the easy problem
        assert np.abs(pa - pb).max() < 0.1 and not np.array_equal(pa, pb)  # bf16 rounding, not another result
    assert identity(half, "k") != identity(cfg, "k")
    assert identity(dataclasses.replace(cfg, amp=True), "k") == identity(cfg, "k")


def test_cli_amp(tmp_path, capsys):
    flow = _flow28(tmp_path)
    base = ["train", str(flow), "--model", "ststnet-fast", "--epochs", "1", "-q", "--device", "cpu"]
    assert cli([*base, "--amp", "bf16", "-o", str(tmp_path / "bf16")]) == 0
    assert yaml.safe_load((tmp_path / "bf16" / "config.yaml").read_text())["amp"] == "bf16"
    assert json.loads((tmp_path / "bf16" / "metrics.json").read_text())["precision"] == "bf16"  # recorded as run
    assert "cpu,bf16" in (tmp_path / "bf16" / "folds.csv").read_text().splitlines()[1]
    capsys.readouterr()
    assert cli([*base, "--amp", "fp8", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--amp must be one of auto, bf16, off" in err
