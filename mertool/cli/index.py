"""``mertool index`` and ``mertool datasets``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..log import setup_cli_logging
from .common import out_option


def register(app: typer.Typer) -> None:
    @app.command(
        "index",
        epilog="Example: mertool index --dataset manifest --sheet my_clips.csv -o work/samples.csv",
    )
    def index(
        dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset adapter (see `mertool datasets`)."),
        root: Optional[Path] = typer.Option(None, "--root", help="Dataset root folder."),
        sheet: Optional[Path] = typer.Option(None, "--sheet", help="Annotation sheet / manifest CSV."),
        out: Path = out_option("samples.csv to write."),
        protocol: Optional[str] = typer.Option(None, "--protocol", help="Class map (casme2-5, samm-5, mmew-7, megc2019-3, offtanet-3, raw); default: the dataset's own."),
        min_class_count: int = typer.Option(0, "--min-class-count", help="Drop classes with fewer samples (DIANet: 10); dropped classes are reported."),
    ) -> None:
        """Index a dataset's clips into samples.csv (one row per clip)."""
        from ..stages.index import run_index  # the adapters import pandas: not at CLI start-up

        setup_cli_logging()
        result = run_index(dataset, out, root=root, sheet=sheet, protocol=protocol, min_class_count=min_class_count)
        typer.echo(result.summary())

    @app.command("datasets", epilog="Example: mertool datasets")
    def datasets() -> None:
        """List the dataset adapters."""
        from ..datasets import list_datasets

        for name, desc in list_datasets().items():
            typer.echo(f"{name:12s} {desc}")
