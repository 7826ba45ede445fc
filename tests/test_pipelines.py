"""pipelines/*.sh: syntax (bash -n), shellcheck when installed, early clear failures,
and demo.sh end to end (slow tier)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "pipelines").glob("*.sh"))
LIBS = sorted((ROOT / "pipelines" / "lib").glob("*.bash"))
RECIPES = ["composite_offtanet.sh", "composite_ststnet.sh", "composite_offapexnet.sh", "offtanet3_offtanet.sh"]


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")  # the venv's mertool
    env["MPLBACKEND"] = "Agg"
    return env


def test_pipelines_exist():
    names = {p.name for p in SCRIPTS}
    assert {"demo.sh", *RECIPES} <= names


@pytest.mark.parametrize("script", SCRIPTS + LIBS, ids=lambda p: p.name)
def test_bash_syntax_strict_mode_and_executable(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in text
    assert os.access(script, os.X_OK)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (apt-get install shellcheck)")
@pytest.mark.parametrize("script", SCRIPTS + LIBS, ids=lambda p: p.name)
def test_shellcheck(script):
    result = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_fails_early_and_clearly_without_its_dataset(name, tmp_path):
    script = ROOT / "pipelines" / name
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, cwd=tmp_path, env=_env())
    assert result.returncode == 2 and "usage:" in result.stderr
    missing = tmp_path / "no_such_dataset"
    result = subprocess.run(["bash", str(script), str(missing)], capture_output=True, text=True, cwd=tmp_path, env=_env())
    assert result.returncode == 2
    assert f"error: {missing}: dataset root not found" in result.stderr
    assert not (tmp_path / "work").exists() and not (tmp_path / "runs").exists()  # nothing started


@pytest.mark.parametrize("name", ["composite_offtanet.sh", "offtanet3_offtanet.sh"])
def test_recipe_reports_a_root_that_is_not_the_dataset(name, tmp_path):
    """An existing but wrong folder stops at `mertool index` with one error line."""
    empty = tmp_path / "empty"
    empty.mkdir()
    result = subprocess.run(["bash", str(ROOT / "pipelines" / name), str(empty), str(tmp_path / "w")],
                            capture_output=True, text=True, cwd=tmp_path, env=_env())
    assert result.returncode == 1  # bad data (mertool's code for it, passed on by the script)
    assert "error:" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "w" / "aligned.h5").exists()


def test_demo_sh_rejects_unknown_model(tmp_path):
    result = subprocess.run(["bash", str(ROOT / "pipelines" / "demo.sh"), str(tmp_path / "d"), "nonesuch"],
                            capture_output=True, text=True, cwd=tmp_path, env=_env())
    assert result.returncode == 2 and "nonesuch" in result.stderr


@pytest.mark.slow
def test_demo_sh_runs_and_resumes(tmp_path):
    env = {**_env(), "QUICK": "1", "EPOCHS": "2", "JOBS": "1"}
    out = tmp_path / "d"
    cmd = ["bash", str(ROOT / "pipelines" / "demo.sh"), str(out), "offtanet", "ststnet-fast"]
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    table = (out / "results.md").read_text()
    assert "offtanet" in table and "ststnet-fast" in table
    for model in ("offtanet", "ststnet-fast"):
        metrics = json.loads((out / "runs" / model / "metrics.json").read_text())
        assert 0 <= metrics["uar"] <= 1
        assert (out / "runs" / model / "confusion.png").is_file()
    stamps = {p: p.stat().st_mtime_ns for p in (out / "work").glob("*.h5")}
    second = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in (out / "work").glob("*.h5")} == stamps  # reused, not redone


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_help_prints_the_scripts_usage_and_exits_0(script, tmp_path):
    for flag in ("--help", "-h"):
        result = subprocess.run(["bash", str(script), flag], capture_output=True, text=True, cwd=tmp_path, env=_env())
        assert result.returncode == 0, result.stderr
        assert f"Usage:  pipelines/{script.name}" in result.stdout and not result.stderr
    assert not any(tmp_path.iterdir())  # nothing started


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_no_script_starts_work_without_arguments(script, tmp_path):
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=60)
    assert result.returncode == 2 and "usage:" in result.stderr.lower()
    assert not any(tmp_path.iterdir())
