"""The conventions a user expects of a command: ``--version``, shell completion, a global
``--quiet``, ``--scheduler``, true dependency floors and a wheel that builds with
everything mertool needs at run time."""

from __future__ import annotations

import ast
import logging
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import shellingham

import mertool
from mertool.cli import main as cli_main
from mertool.cli.main import cli
from mertool.log import logger

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


# --- version -----------------------------------------------------------------------------------

def test_version_prints_the_package_version_and_exits_0(capsys):
    assert cli(["--version"]) == 0
    assert capsys.readouterr().out == f"mertool {mertool.__version__}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+", mertool.__version__)


def test_the_package_metadata_reads_its_version_from_mertool(pyproject):
    project = pyproject["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "mertool.__version__"}


# --- shell completion --------------------------------------------------------------------------

@pytest.fixture
def bash(monkeypatch):
    """Shell detection answers bash (under pytest the parent process is no shell)."""
    monkeypatch.setattr(shellingham, "detect_shell", lambda *a, **k: ("bash", "/bin/bash"))
    monkeypatch.delenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", raising=False)


def test_show_completion_prints_a_script_that_calls_mertool_back(bash, capsys):
    assert cli(["--show-completion"]) == 0
    script = capsys.readouterr().out
    assert "_MERTOOL_COMPLETE=complete_bash" in script and "complete -o default -F _mertool_completion mertool" in script


def test_install_completion_writes_only_under_home(bash, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cli(["--install-completion"]) == 0
    assert "bash completion installed in" in capsys.readouterr().out
    script = tmp_path / ".bash_completions" / "mertool.sh"
    assert "_MERTOOL_COMPLETE=complete_bash" in script.read_text()
    assert str(script) in (tmp_path / ".bashrc").read_text()  # sourced from .bashrc
    assert sorted(p.name for p in tmp_path.iterdir()) == [".bash_completions", ".bashrc"]


def _complete(words: str, env: dict[str, str] | None = None) -> list[str]:
    """What the installed script gets back from ``mertool`` for the command line ``words``."""
    env = {**os.environ, **(env or {}), "_MERTOOL_COMPLETE": "complete_bash",
           "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1))}
    run = subprocess.run([sys.executable, "-m", "mertool"], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


def test_completion_completes_verbs_and_their_options():
    # the real path: bash sets the variables and runs `mertool` with no arguments
    assert "flow" in _complete("mertool fl") and "train" not in _complete("mertool fl")
    assert {"--backend", "--preset"} <= set(_complete("mertool flow --"))


def test_completion_in_process_returns_an_exit_code_instead_of_exiting(monkeypatch, capsys):
    monkeypatch.setenv("_MERTOOL_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", "mertool tra")
    monkeypatch.setenv("COMP_CWORD", "1")
    assert cli([]) == 0
    assert capsys.readouterr().out.split() == ["train"]


# --- global options ----------------------------------------------------------------------------

def _global_env():
    return {name: os.environ.get(name) for name in cli_main.GLOBAL_ENV}


@pytest.fixture
def seen(monkeypatch):
    """``mertool models`` replaced by a command that records the global variables and logs."""
    record = {}

    def fake_models() -> None:
        record.update(_global_env(), level=logger.getEffectiveLevel())
        logger.info("an info line")
        logger.warning("a warning line")

    command = next(c for c in cli_main.app.registered_commands if c.name == "models")
    monkeypatch.setattr(command, "callback", fake_models)
    return record


def test_global_options_set_their_variables_for_the_command_and_are_restored(monkeypatch, seen, capsys):
    for name in cli_main.GLOBAL_ENV:
        monkeypatch.delenv(name, raising=False)
    assert cli(["--quiet", "--scheduler", "local:2", "--wait", "--verify-content", "models"]) == 0
    assert seen == {"MERTOOL_WAIT": "1", "MERTOOL_VERIFY_CONTENT": "1", "MERTOOL_SCHEDULER": "local:2",
                    "MERTOOL_QUIET": "1", "level": logging.WARNING}
    assert _global_env() == dict.fromkeys(cli_main.GLOBAL_ENV)  # nothing left behind
    assert logger.getEffectiveLevel() == logging.INFO
    assert cli(["models"]) == 0
    assert seen == {**dict.fromkeys(cli_main.GLOBAL_ENV), "level": logging.INFO}


def test_quiet_keeps_warnings_and_drops_info(seen, capsys):
    assert cli(["models"]) == 0
    assert capsys.readouterr().err == "an info line\nwarning: a warning line\n"
    assert cli(["-q", "models"]) == 0
    assert capsys.readouterr().err == "warning: a warning line\n"


def test_a_variable_set_before_the_command_is_put_back(monkeypatch, seen):
    monkeypatch.setenv("MERTOOL_SCHEDULER", "tcp://example:8786")
    assert cli(["--scheduler", "local:1", "models"]) == 0 and seen["MERTOOL_SCHEDULER"] == "local:1"
    assert os.environ["MERTOOL_SCHEDULER"] == "tcp://example:8786"


def test_train_keeps_its_own_quiet_flag(capsys):
    assert cli(["train", "-h"]) == 0
    assert "-q, --quiet" in capsys.readouterr().out


# --- dependencies and the wheel ----------------------------------------------------------------

def _imported_top_level_modules() -> set[str]:
    """Top-level modules the package imports (module-level or inside functions)."""
    found = set()
    for path in (ROOT / "mertool").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


#: distribution name -> the module it provides (or, for data-only packages, where mertool names it)
MODULE_OF = {
    "torch": "torch", "numpy": "numpy", "opencv-contrib-python-headless": "cv2", "dlib-bin": "dlib",
    "h5py": "h5py", "typer": "typer", "joblib": "joblib", "tqdm": "tqdm", "scikit-learn": "sklearn",
    "pyyaml": "yaml", "pandas": "pandas", "matplotlib": "matplotlib", "scikit-image": "skimage",
    "scikit-video": "skvideo",
}
#: run-time dependencies mertool never imports itself, and why they are needed
NOT_IMPORTED = {
    "face-recognition-models": "dlib's model files, found with importlib.util.find_spec (faces.py)",
    "openpyxl": "pandas.read_excel's engine for the datasets' .xlsx sheets",
}


def test_every_runtime_dependency_is_used_and_every_import_is_declared(pyproject):
    declared = {re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0].lower() for d in pyproject["project"]["dependencies"]}
    assert declared == set(MODULE_OF) | set(NOT_IMPORTED)
    imported = _imported_top_level_modules()
    assert "face_recognition_models" in (ROOT / "mertool" / "faces.py").read_text()
    assert "read_excel" in (ROOT / "mertool" / "datasets" / "casme_sq.py").read_text()
    third_party = imported - set(sys.stdlib_module_names) - {"mertool", "__future__"}
    optional = {"distributed", "dask"}  # the [dask] extra, imported only under --scheduler
    assert third_party - optional == set(MODULE_OF.values())


def test_floors_cover_the_apis_the_code_calls(pyproject):
    floors = {re.split(r"[<>=]", d)[0]: d for d in pyproject["project"]["dependencies"]}
    code = "\n".join(p.read_text() for p in (ROOT / "mertool").rglob("*.py"))
    if "torch.OutOfMemoryError" in code:  # public from torch 2.4 (torch._C.OutOfMemoryError)
        assert floors["torch"] == "torch>=2.4"
    if 'return_as="generator_unordered"' in code:
        assert floors["joblib"] == "joblib>=1.4"
    if "typer.exceptions import" in code:  # typer/exceptions.py is new in 0.28
        assert floors["typer"] == "typer>=0.28"


def _package_files() -> set[str]:
    """Every file the source tree has under mertool/ (what a wheel must carry)."""
    return {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "mertool").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def test_the_wheel_builds_and_carries_the_whole_package(tmp_path):
    pytest.importorskip("build")
    src = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(ROOT / "mertool", src / "mertool", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    out = tmp_path / "dist"
    run = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (wheel,) = out.glob("mertool-*.whl")
    assert wheel.name.startswith(f"mertool-{mertool.__version__}-py3-none-any")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = f"mertool-{mertool.__version__}.dist-info"
        metadata = zf.read(f"{info}/METADATA").decode()
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
    assert {n for n in names if n.startswith("mertool/")} == _package_files()
    assert "mertool = mertool.cli.main:main" in entry_points
    assert f"Version: {mertool.__version__}" in metadata
    requires = re.findall(r"^Requires-Dist: ([^;\n]+)$", metadata, re.M)
    assert "torch>=2.4" in requires and not any(r.startswith("setuptools") for r in requires)
    assert any(r.startswith("dask[distributed]") for r in re.findall(r"^Requires-Dist: (.+extra == \"dask\")", metadata, re.M))
    (sdist,) = out.glob("mertool-*.tar.gz")
    assert sdist.name == f"mertool-{mertool.__version__}.tar.gz"
