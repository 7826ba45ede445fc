"""``mertool import``: precomputed u/v/strain arrays or images -> a stage "flow" file."""

from __future__ import annotations

from pathlib import Path

import typer

from ..stages.stagefile import open_stage
from ..importer import import_flow
from ..log import logger, setup_cli_logging
from .common import OverwriteOption


def register(app: typer.Typer) -> None:
    @app.command(
        "import",
        epilog="Example: mertool import megc_images/ --labels labels.csv --channels strain,v,u --size 112 -o work/flow.h5",
    )
    def import_(
        folder: Path = typer.Argument(..., help="Folder of per-sample .npy/.npz arrays or PNG/JPG images."),
        labels: Path = typer.Option(..., "--labels", help="CSV with sample, subject and label columns."),
        out: Path = typer.Option(..., "-o", "--out", help="Stage file to write (same layout as `mertool flow`)."),
        channels: str = typer.Option("u,v,strain", "--channels", help="Names of the stored channels in file order (images: B,G,R)."),
        size: int = typer.Option(0, "--size", help="Resize planes to SIZE x SIZE (0 keeps the files' size)."),
        sample_col: str = typer.Option("sample", "--sample-col", help="CSV column with the sample id / file name."),
        subject_col: str = typer.Option("subject", "--subject-col", help="CSV column with the subject."),
        label_col: str = typer.Option("label", "--label-col", help="CSV column with the class label."),
        overwrite: bool = OverwriteOption,
    ) -> None:
        """Import precomputed inputs (e.g. the composite benchmark's u/v/strain images) for `mertool train`."""
        setup_cli_logging()
        path, _ = import_flow(folder, labels, out, channels, size, sample_col, subject_col, label_col, overwrite)
        sf = open_stage(path, expect="flow")
        logger.info(f"{path}: {len(sf)} samples, flow {sf.shapes()['flow']}")
