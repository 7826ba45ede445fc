"""``mertool align``: face alignment of every clip in samples.csv."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..log import setup_cli_logging
from ..preprocess.align import AlignConfig, run_align
from ..samples import read_samples
from .common import ConfigOption, JobsOption, OverwriteOption, PreviewOption


def register(app: typer.Typer) -> None:
    @app.command(
        "align",
        epilog="Example: mertool align work/samples.csv -o work/aligned.h5 --size 224 --jobs 2 --preview work/preview",
    )
    def align(
        samples_csv: Path = typer.Argument(..., help="samples.csv from `mertool index`."),
        out: Path = typer.Option(..., "-o", "--out", help="aligned.h5 to write."),
        size: Optional[int] = typer.Option(None, help="Crop size in pixels [default: 224]."),
        margin: Optional[float] = typer.Option(None, help="Border around the face, fraction of the crop [default: 0.1]."),
        detector: Optional[str] = typer.Option(None, help="Face detector: hog or cnn [default: hog]."),
        upsample: Optional[int] = typer.Option(None, help="Detector upsampling, finds small faces [default: 1]."),
        frames: Optional[str] = typer.Option(None, help="all (onset..offset) or keyframes (onset, apex) [default: all]."),
        config: Optional[Path] = ConfigOption,
        jobs: int = JobsOption,
        overwrite: bool = OverwriteOption,
        preview: Optional[Path] = PreviewOption,
    ) -> None:
        """Detect the face on each clip's onset frame and align every frame with one similarity transform."""
        setup_cli_logging()
        cfg = AlignConfig.resolve(config, size=size, margin=margin, detector=detector, upsample=upsample, frames=frames)
        samples = read_samples(samples_csv)
        path, failed = run_align(samples, out, cfg, upstream=[samples_csv], jobs=jobs, overwrite=overwrite, preview=preview)
        typer.echo(f"{path}: {len(samples) - len(failed)} of {len(samples)} clips aligned")
