"""README and CI stay in step; every verb's --help carries an example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mertool.cli.main import app, cli

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", quick, flags=re.S)


def test_readme_has_demo_and_test_commands_and_ci_runs_the_test_one():
    commands = _readme_commands()
    assert len(commands) == 2
    demo, tests = commands
    assert demo.strip().endswith("mertool demo")
    assert "pytest" in tests
    assert tests.strip() in (ROOT / ".ci" / "run").read_text()


def _verbs() -> list[str]:
    return sorted(c.name for c in app.registered_commands)


@pytest.mark.parametrize("verb", _verbs())
def test_every_verb_help_has_an_example(verb, capsys):
    assert cli([verb, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Example:" in out and f"mertool {verb}" in out
