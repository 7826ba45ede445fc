"""``mertool import``: precomputed u/v/strain arrays or images -> a stage "flow" file."""

from __future__ import annotations

from pathlib import Path

import typer

from ..log import setup_cli_logging
from ..stages.importer import import_flow
from .common import JobsOption, OverwriteOption, out_option


def register(app: typer.Typer) -> None:
    @app.command(
        "import",
        epilog="Example: mertool import megc_images/ --labels labels.csv --channels strain,v,u --size 112 -o work/flow.h5",
    )
    def import_(
        folder: Path = typer.Argument(..., help="Folder of per-sample .npy/.npz arrays or PNG/JPG images."),
        labels: Path = typer.Option(..., "--labels", help="CSV with sample, subject and label columns."),
        out: Path = out_option("Stage file to write (same layout as `mertool flow`)."),
        channels: str = typer.Option("u,v,strain", "--channels", help="Names of the stored channels in file order (images: B,G,R)."),
        size: int = typer.Option(0, "--size", help="Resize planes to SIZE x SIZE (0 keeps the files' size)."),
        sample_col: str = typer.Option("sample", "--sample-col", help="CSV column with the sample id / file name."),
        subject_col: str = typer.Option("subject", "--subject-col", help="CSV column with the subject."),
        label_col: str = typer.Option("label", "--label-col", help="CSV column with the class label."),
        jobs: int = JobsOption,
        overwrite: bool = OverwriteOption,
    ) -> None:
        """Import precomputed inputs (e.g. the composite benchmark's u/v/strain images) for `mertool train`."""
        setup_cli_logging()
        result = import_flow(
            folder, labels, out, channels=channels, size=size, sample_col=sample_col, subject_col=subject_col,
            label_col=label_col, jobs=jobs, overwrite=overwrite,
        )
        typer.echo(result.summary("flow (u, v, strain)"))
