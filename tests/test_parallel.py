"""mertool.parallel.parallel_map on this machine's worker processes."""

from __future__ import annotations

import os
from pathlib import Path

from mertool.parallel import parallel_map


def _write_relative(name: str) -> str:
    Path(name).write_text(name)
    return os.getcwd()


def test_pooled_workers_resolve_relative_paths_in_the_caller_s_folder(tmp_path, monkeypatch):
    """Workers are pooled across calls: a later call from another folder must not write into the first one's."""
    for folder in ("first", "second"):
        (tmp_path / folder).mkdir()
        monkeypatch.chdir(tmp_path / folder)
        names = [f"{folder}_{i}.txt" for i in range(4)]
        seen = set(parallel_map(_write_relative, names, jobs=2, progress=False))
        assert seen == {str(tmp_path / folder)}
        assert sorted(p.name for p in (tmp_path / folder).iterdir()) == sorted(names)
