"""``mertool pairs``: aligned onset/apex frame pairs for frame-pair models (FaceSleuth)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..log import setup_cli_logging
from ..stages.pairs import PairsConfig, run_pairs
from .common import ConfigOption, JobsOption, OverwriteOption, PreviewOption, out_option

_D = PairsConfig()


def register(app: typer.Typer) -> None:
    @app.command(
        "pairs",
        epilog="Example: mertool pairs work/aligned.h5 -o work/pairs.h5 --size 224 --samples work/samples_kf.csv",
    )
    def pairs(
        aligned: Path = typer.Argument(..., help="aligned.h5 from `mertool align`."),
        out: Path = out_option("pairs.h5 to write."),
        size: Optional[int] = typer.Option(None, "--size", help=f"Output side in pixels [default: {_D.size}]."),
        samples: Optional[Path] = typer.Option(
            None, "--samples",
            help="samples.csv with a row per aligned sample (e.g. from `mertool keyframes`); "
            "a known apex (not -1) replaces the aligned file's.",
        ),
        missing_apex: Optional[str] = typer.Option(
            None, "--missing-apex",
            help=f"Clips without an apex: skip or middle (middle frame) [default: {_D.missing_apex}].",
        ),
        config: Optional[Path] = ConfigOption,
        jobs: int = JobsOption,
        overwrite: bool = OverwriteOption,
        preview: Optional[Path] = PreviewOption,
    ) -> None:
        """Stack each clip's aligned onset and apex frames (N x 3 x S x S uint8) with its meta and AUs."""
        setup_cli_logging()
        cfg = PairsConfig.resolve(config, size=size, missing_apex=missing_apex)
        result = run_pairs(aligned, out, cfg, samples_csv=samples, jobs=jobs, overwrite=overwrite, preview=preview)
        typer.echo(result.summary("onset/apex pairs"))
