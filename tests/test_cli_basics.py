"""CLI basics: help output, ``-h``, bare ``mertool``, the normalise/normalize spellings,
``mertool models`` without FLOPs by default, and ``mertool train``'s epoch progress and
resume message."""

from __future__ import annotations

import functools
import re
import sys
from pathlib import Path

import pytest

from mertool.cli import dynimg as dynimg_cli
from mertool.cli import flow as flow_cli
from mertool.cli.main import app, cli
from mertool.config import config_hash
from mertool.stages.dynimg import DynimgConfig
from mertool.stages.flow import FlowConfig
from mertool.train import fold as fold_mod
from train_fixtures import ensure_tiny, synthetic_flow, write_flow_h5

ensure_tiny()


def _squash(text: str) -> str:
    return " ".join(text.split())


# --- help ------------------------------------------------------------------------------------

def test_help_lists_whole_one_line_descriptions(capsys):
    assert cli(["--help"]) == 0
    out = capsys.readouterr().out
    commands = _squash(out[out.index("Commands:"):])
    assert "..." not in commands
    for command in app.registered_commands:
        first = _squash((command.callback.__doc__ or "").strip().split("\n\n")[0])
        assert first and f"{command.name} {first}" in commands, command.name


def test_dash_h_and_bare_mertool_print_help(capsys, monkeypatch):
    assert cli(["--help"]) == 0
    full = capsys.readouterr().out
    assert cli(["-h"]) == 0
    assert capsys.readouterr().out == full
    assert cli([]) == 0
    assert capsys.readouterr().out == full
    monkeypatch.setattr(sys, "argv", ["mertool"])  # what `main()` sees for a bare `mertool`
    assert cli() == 0
    assert capsys.readouterr().out == full
    assert cli(["flow", "-h"]) == 0
    sub = capsys.readouterr().out
    assert sub.startswith("Usage: mertool flow") and "-h, --help" in sub


def test_flow_help_example_uses_the_cpu_backend(capsys):
    assert cli(["flow", "--help"]) == 0
    out = _squash(capsys.readouterr().out)
    example = out[out.index("Example: mertool flow"):]
    command = example[: example.index("(")]
    assert "--backend opencv" in command and "torch" not in command


# --- normalise / normalize ---------------------------------------------------------------------

@pytest.mark.parametrize("cls, field, other, value", [
    (FlowConfig, "normalise", "normalize", "minmax"),
    (DynimgConfig, "normalize", "normalise", "standardize"),
])
def test_both_spellings_resolve_to_the_recorded_field(tmp_path, cls, field, other, value):
    own = cls.resolve(**{field: value})
    alias = cls.resolve(**{other: value})
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text(f"{other}: {value}\n")
    from_yaml = cls.resolve(yaml_file)
    for cfg in (alias, from_yaml):
        assert getattr(cfg, field) == value and cfg.to_dict() == own.to_dict()
        assert other not in cfg.to_dict() and cfg.hash() == config_hash(own.to_dict())
    assert getattr(cls(), field) != value  # the value came from the alias, not the default


@pytest.mark.parametrize("verb, module, runner, field", [
    ("flow", flow_cli, "run_flow", "normalise"),
    ("dynimg", dynimg_cli, "run_dynimg", "normalize"),
])
def test_cli_accepts_both_flag_spellings(tmp_path, monkeypatch, verb, module, runner, field):
    seen = []

    class _Done(Exception):
        pass

    def capture(_inp, _out, cfg, **_kw):
        seen.append(getattr(cfg, field))
        raise _Done

    monkeypatch.setattr(module, runner, capture)
    for flag, value in (("--normalise", "none"), ("--normalize", "minmax")):
        with pytest.raises(_Done):
            cli([verb, str(tmp_path / "aligned.h5"), "-o", str(tmp_path / "out.h5"), flag, value])
    assert seen == ["none", "minmax"]


def test_cli_bad_normalise_value_is_one_error_line(tmp_path, capsys):
    assert cli(["flow", str(tmp_path / "a.h5"), "-o", str(tmp_path / "f.h5"), "--normalize", "zscore"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "normalise" in err and "Traceback" not in err


# --- models ------------------------------------------------------------------------------------

def test_models_counts_no_flops_by_default(capsys, monkeypatch):
    import mertool.models.describe as describe

    def no_forward(*_a, **_k):
        raise AssertionError("FLOPs counted without --flops")

    real = describe.count_flops
    monkeypatch.setattr(describe, "count_flops", no_forward)
    assert cli(["models", "ststnet"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("ststnet "))
    assert row.split()[4:6] == ["1,683", "-"] and "add --flops" in out
    with pytest.raises(AssertionError, match="without --flops"):  # --flops does run the counter
        cli(["models", "ststnet", "--flops"])
    monkeypatch.setattr(describe, "count_flops", real)
    capsys.readouterr()
    assert cli(["models", "ststnet", "--convention", "flops", "--format", "csv"]) == 0  # a convention implies --flops
    assert int(capsys.readouterr().out.splitlines()[1].split(",")[5]) > 0


# --- train progress ------------------------------------------------------------------------------

@pytest.fixture
def flow_file(tmp_path: Path) -> Path:
    x, labels, subjects = synthetic_flow(n_subjects=3, per_subject=6)
    return write_flow_h5(tmp_path / "flow.h5", x, labels, subjects)


def _train(flow_file: Path, out: Path, *extra: str) -> list[str]:
    return ["train", str(flow_file), "--model", "tinyflow", "--epochs", "6", "--device", "cpu", "-o", str(out), *extra]


def test_train_shows_epoch_progress_with_eta(flow_file, tmp_path, capsys, monkeypatch):
    import tqdm.auto

    import mertool.log

    monkeypatch.setattr(tqdm.auto, "tqdm", functools.partial(tqdm.auto.tqdm, mininterval=0))  # draw every epoch
    monkeypatch.setattr(mertool.log, "_stderr_is_terminal", lambda: True)  # as at a terminal
    assert cli(_train(flow_file, tmp_path / "run")) == 0
    err = capsys.readouterr().err
    for subject in ("s1", "s2", "s3"):
        bar = re.findall(rf"fold {subject}:\s+\d+%.*?\| ?(\d)/6 \[[\d:]+<[\d:?]+", err)
        assert bar and bar[-1] == "6", (subject, err)
    assert cli(_train(flow_file, tmp_path / "quiet", "-q")) == 0
    err = capsys.readouterr().err
    assert "epoch/s" not in err and "s/epoch" not in err and "\r" not in err
    monkeypatch.setenv("MERTOOL_QUIET", "1")  # mertool --quiet
    assert cli(_train(flow_file, tmp_path / "quiet2")) == 0
    assert "\r" not in capsys.readouterr().err


def test_progress_bars_stay_quiet_when_stderr_is_not_a_terminal(flow_file, tmp_path, capsys):
    assert cli(_train(flow_file, tmp_path / "run")) == 0  # pytest captures stderr: not a terminal
    assert "\r" not in capsys.readouterr().err


def test_train_says_which_fold_resumes_from_which_epoch(flow_file, tmp_path, capsys, monkeypatch):
    real_save = fold_mod.atomic_torch_save

    def save_then_die(obj, path):
        real_save(obj, path)
        if "s2" in str(path) and obj["epoch"] == 4:
            raise KeyboardInterrupt

    cfg = tmp_path / "c.yaml"
    cfg.write_text("checkpoint_every: 2\n")
    monkeypatch.setattr(fold_mod, "atomic_torch_save", save_then_die)
    assert cli(_train(flow_file, tmp_path / "run", "-q", "--config", str(cfg))) == 130
    monkeypatch.setattr(fold_mod, "atomic_torch_save", real_save)
    capsys.readouterr()
    assert cli(_train(flow_file, tmp_path / "run", "-q", "--config", str(cfg))) == 0
    err = capsys.readouterr().err
    assert "resuming fold s2 from epoch 5 (4 of 6 done)" in err
    assert "resuming fold s3" not in err and "resuming fold s1" not in err
