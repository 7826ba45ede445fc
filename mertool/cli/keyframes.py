"""``mertool keyframes``: repair missing/invalid apexes and spot apexes on aligned clips."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..log import setup_cli_logging
from ..preprocess.keyframes import METHODS
from ..stages.keyframes import KeyframesConfig, run_keyframes
from .common import out_option

_D = KeyframesConfig()


def register(app: typer.Typer) -> None:
    @app.command(
        "keyframes",
        epilog="Example: mertool keyframes work/samples.csv --aligned work/aligned.h5 -o work/samples.csv --evaluate",
    )
    def keyframes(
        samples_csv: Path = typer.Argument(..., help="samples.csv from `mertool index`."),
        aligned: Optional[Path] = typer.Option(None, "--aligned", help="aligned.h5 from `mertool align` (all frames)."),
        out: Optional[Path] = out_option("samples.csv to write (may be the input).", default=None),
        method: str = typer.Option(_D.method, "--method", help=f"Apex spotting method: {', '.join(METHODS)}."),
        smooth: int = typer.Option(_D.smooth, "--smooth", help="Moving-average window (frames) on the difference curve."),
        respot: bool = typer.Option(_D.respot, "--all", help="Re-estimate every apex, not only missing/invalid ones."),
        evaluate: bool = typer.Option(False, "--evaluate", help="Compare every method with the sheet apex and print a table."),
        within: int = typer.Option(3, "--within", help="Frame tolerance for the --evaluate 'share within' column."),
    ) -> None:
        """Estimate missing or invalid apex frames (flagged in apex_source) and evaluate spotting methods."""
        setup_cli_logging()
        cfg = KeyframesConfig.resolve(method=method, smooth=smooth, respot=respot)
        result = run_keyframes(samples_csv, out, cfg, aligned=aligned, evaluate=evaluate, within=within)
        typer.echo(result.summary())
