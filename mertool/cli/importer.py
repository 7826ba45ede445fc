"""``mertool import``: precomputed u/v/strain arrays or images -> a stage "flow" file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..log import setup_cli_logging
from ..stages.contents import ENCODINGS, flow_encoding
from ..stages.importer import SCALES, import_flow
from .common import JobsOption, OverwriteOption, out_option


def register(app: typer.Typer) -> None:
    @app.command(
        "import",
        epilog="Example: mertool import megc_images/ --labels labels.csv --channels strain,v,u -o work/flow.h5  "
        "(the composite images at 0..255, as STSTNet reads them)",
    )
    def import_(
        folder: Path = typer.Argument(..., help="Folder of per-sample .npy/.npz arrays or PNG/JPG images."),
        labels: Path = typer.Option(..., "--labels", help="CSV with sample, subject and label columns."),
        out: Path = out_option("Stage file to write (same layout as `mertool flow`)."),
        channels: str = typer.Option("u,v,strain", "--channels", help="Names of the stored channels in file order (images: B,G,R)."),
        size: int = typer.Option(0, "--size", help="Resize planes to SIZE x SIZE (0 keeps the files' size)."),
        scale: str = typer.Option(
            "raw", "--scale",
            help=f"{' | '.join(SCALES)}: image values as read (0..255, 8-bit images) or divided to 0..1; arrays keep theirs.",
        ),
        encoding: Optional[str] = typer.Option(
            None, "--encoding",
            help=f"{' | '.join(ENCODINGS)}: how u is encoded, recorded for `mertool train` "
            "[default: images minmax-byte (raw) or minmax-unit (unit), arrays signed].",
        ),
        allow_missing: bool = typer.Option(
            False, "--allow-missing", help="Import the CSV rows that have a file when some have none (else: stop)."
        ),
        sample_col: str = typer.Option("sample", "--sample-col", help="CSV column with the sample id / file name."),
        subject_col: str = typer.Option("subject", "--subject-col", help="CSV column with the subject."),
        label_col: str = typer.Option("label", "--label-col", help="CSV column with the class label."),
        jobs: int = JobsOption,
        overwrite: bool = OverwriteOption,
    ) -> None:
        """Import precomputed inputs (e.g. the composite benchmark's u/v/strain images) for `mertool train`."""
        setup_cli_logging()
        result = import_flow(
            folder, labels, out, channels=channels, size=size, scale=scale, encoding=encoding,
            allow_missing=allow_missing, sample_col=sample_col, subject_col=subject_col, label_col=label_col,
            jobs=jobs, overwrite=overwrite,
        )
        typer.echo(result.summary(f"flow (u, v, strain), encoding {flow_encoding(result.path)}"))
