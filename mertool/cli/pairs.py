"""``mertool pairs``: aligned onset/apex frame pairs for frame-pair models (FaceSleuth)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..log import setup_cli_logging
from ..preprocess.pairs import PairsConfig, run_pairs
from .common import ConfigOption, OverwriteOption


def register(app: typer.Typer) -> None:
    @app.command(
        "pairs",
        epilog="Example: mertool pairs work/aligned.h5 -o work/pairs.h5 --size 224 --samples work/samples_kf.csv",
    )
    def pairs(
        aligned: Path = typer.Argument(..., help="aligned.h5 from `mertool align`."),
        out: Path = typer.Option(..., "-o", "--out", help="pairs.h5 to write."),
        size: Optional[int] = typer.Option(None, help="Output side in pixels [default: 224]."),
        samples: Optional[Path] = typer.Option(
            None, "--samples", help="samples.csv whose apex frames (when known) replace the aligned file's."
        ),
        missing_apex: Optional[str] = typer.Option(
            None, "--missing-apex", help="Clips without an apex: skip or middle (middle frame) [default: skip]."
        ),
        config: Optional[Path] = ConfigOption,
        overwrite: bool = OverwriteOption,
    ) -> None:
        """Stack each clip's aligned onset and apex frames (N x 3 x S x S uint8) with its meta and AUs."""
        setup_cli_logging()
        cfg = PairsConfig.resolve(config, size=size, missing_apex=missing_apex)
        path, failed = run_pairs(aligned, out, cfg, samples_csv=samples, overwrite=overwrite)
        from ..stages.stagefile import open_stage

        typer.echo(f"{path}: {len(open_stage(path))} onset/apex pairs ({len(failed)} clip(s) left out)")
