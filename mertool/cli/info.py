"""``mertool info``: provenance and shapes of a stage file; ``--verify`` re-checks its data."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import typer

from ..errors import MertoolError
from ..stages.align import valid_fraction_summary
from ..stages.contents import dataset_counts, flow_encoding
from ..stages.stagefile import open_stage


def register(app: typer.Typer) -> None:
    @app.command("info", epilog="Example: mertool info work/flow.h5 --verify")
    def info(
        path: Path = typer.Argument(..., help="A stage file (.h5)."),
        verify: bool = typer.Option(False, "--verify", help="Re-read every sample and check it against its stored checksum."),
    ) -> None:
        """Show a stage file's provenance, sample count and array shapes."""
        if path.is_dir():
            raise MertoolError(f"{path}: is a folder (a run? use `mertool report {path}`); info reads one .h5 stage file")
        sf = open_stage(path)
        a = sf.attrs
        typer.echo(f"file:      {path}")
        typer.echo(f"stage:     {sf.stage}   (mertool {a.get('mertool_version')}, created {a.get('created')})")
        typer.echo(f"key:       {sf.key}   config hash {sf.config_hash}")
        typer.echo(f"samples:   {len(sf)}   subjects {len(set(sf.meta.get('subject', [])))}")
        if "label" in sf.meta:
            counts = Counter(sf.meta["label"])
            typer.echo("labels:    " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
        if "dataset" in sf.meta:
            typer.echo("datasets:  " + ", ".join(f"{k or '-'}={v}" for k, v in dataset_counts(sf).items()))
        if sf.stage == "flow":
            typer.echo(f"encoding:  {flow_encoding(sf)}")
        valid = valid_fraction_summary(sf)
        if valid is not None:
            low = f"; under 80 %: {', '.join(sorted(valid['low']))}" if valid["low"] else ""
            typer.echo(f"valid:     min {valid['min']:.1%}, median {valid['median']:.1%} of each crop from the image{low}")
        for name, shape in sf.shapes().items():
            typer.echo(f"array:     {name} {shape}")
        typer.echo(f"storage:   {sf.compression} compression, {path.stat().st_size / 1e6:.1f} MB on disk")
        for up in sf.upstream():
            typer.echo(f"upstream:  {up['path']} (key {up['key']})")
        typer.echo("params:    " + json.dumps(sf.params, sort_keys=True))
        if sf.failed:
            typer.echo(f"failed:    {len(sf.failed)} sample(s)")
            for sid, why in sf.failed.items():
                typer.echo(f"  {sid}: {why}")
        if verify:
            problems = sf.verify()
            for problem in problems:
                typer.echo(f"  {problem}")
            if problems:
                raise MertoolError(f"{path}: verification failed ({len(problems)} problem(s), listed above)")
            typer.echo(f"verified:  every sample matches its checksum ({len(sf)} samples)")
