"""The package's shape: short functions, an acyclic import graph, and imports only downwards.

Floors, lowest first: helpers (errors, log, io, config, device, table, parallel, samples,
faces) -> pure algorithms, models, dataset adapters -> stages, synth -> train, synth_long -> recipes ->
predict, demo -> cli. A module may import its own floor's package or lower floors only;
lazy imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mertool"
MAX_LINES = 80  # per function, docstring excluded
FLOORS = [
    ("mertool.cli", 6), ("mertool.__main__", 6), ("mertool.demo", 5), ("mertool.predict", 5), ("mertool.recipes", 4),
    ("mertool.train", 3), ("mertool.synth_long", 3), ("mertool.stages", 2), ("mertool.synth", 2),
    ("mertool.preprocess", 1), ("mertool.models", 1), ("mertool.datasets", 1),
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - max(node.level - 1, 0)] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            candidates = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        found |= {c for c in candidates if c in known and c not in (name, "mertool")}
    return found


def _floor(name: str) -> int:
    return next((f for prefix, f in FLOORS if name == prefix or name.startswith(prefix + ".")), 0)


GRAPH = {name: _imports(name, path, _modules()) for name, path in _modules().items() if name != "mertool"}


def test_functions_are_short():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                first = node.body[0]
                if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                    lines -= first.end_lineno - first.lineno + 1
                if lines > MAX_LINES:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_import_graph_has_no_cycles():
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif not state.get(nxt):
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(GRAPH):
        if not state.get(node):
            visit(node, [])
    assert not cycles, cycles


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_go_down_only(module):
    up = [t for t in GRAPH[module] if _floor(t) > _floor(module)]
    assert not up, f"{module} imports higher floors: {up}"
    if 0 < _floor(module) and module != "mertool.__main__":  # no sideways imports (e.g. models -> datasets)
        side = [t for t in GRAPH[module] if _floor(t) == _floor(module) and t.split(".")[1] != module.split(".")[1]]
        assert not side, f"{module} imports across its floor: {side}"


def test_the_library_never_imports_the_cli_and_models_never_import_train():
    assert not [m for m, ts in GRAPH.items() if _floor(m) < 6 and any(t.startswith("mertool.cli") for t in ts)]
    assert not [m for m, ts in GRAPH.items() if m.startswith("mertool.models") and any(t.startswith("mertool.train") for t in ts)]
    assert not [m for m, ts in GRAPH.items() if m.startswith("mertool.preprocess") and any(t.startswith("mertool.stages") for t in ts)]


def test_no_raw_hdf5_outside_the_stage_file_module():
    users = [p.name for p in PACKAGE.rglob("*.py") if "import h5py" in p.read_text() and p.name != "stagefile.py"]
    assert not users, users
