"""``mertool keyframes``: repair missing/invalid apexes and spot apexes on aligned clips."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import MertoolError
from ..log import logger, setup_cli_logging
from ..preprocess.keyframes import METHODS, evaluate_apex, format_table, repair_apex
from ..samples import read_samples, write_samples


def register(app: typer.Typer) -> None:
    @app.command(
        "keyframes",
        epilog="Example: mertool keyframes work/samples.csv --aligned work/aligned.h5 -o work/samples.csv --evaluate",
    )
    def keyframes(
        samples_csv: Path = typer.Argument(..., help="samples.csv from `mertool index`."),
        aligned: Optional[Path] = typer.Option(None, "--aligned", help="aligned.h5 from `mertool align` (all frames)."),
        out: Optional[Path] = typer.Option(None, "-o", "--out", help="samples.csv to write (may be the input)."),
        method: str = typer.Option("regions", "--method", help=f"Apex spotting method: {', '.join(METHODS)}."),
        smooth: int = typer.Option(3, "--smooth", help="Moving-average window (frames) on the difference curve."),
        respot: bool = typer.Option(False, "--all", help="Re-estimate every apex, not only missing/invalid ones."),
        evaluate: bool = typer.Option(False, "--evaluate", help="Compare every method with the sheet apex and print a table."),
        within: int = typer.Option(3, "--within", help="Frame tolerance for the --evaluate 'share within' column."),
    ) -> None:
        """Estimate missing or invalid apex frames (flagged in apex_source) and evaluate spotting methods."""
        setup_cli_logging()
        if out is None and not evaluate:
            raise MertoolError("give -o/--out (the samples.csv to write) or --evaluate")
        if method != "midpoint" and aligned is None:
            raise MertoolError(f"--method {method} needs --aligned work/aligned.h5 (or use --method midpoint)")
        samples = read_samples(samples_csv)
        if evaluate:
            if aligned is None:
                raise MertoolError("--evaluate needs --aligned")
            results = evaluate_apex(samples, str(aligned), METHODS, smooth)
            if not results[0].errors:
                raise MertoolError(f"{samples_csv}: no clip with a sheet apex found in {aligned}; nothing to evaluate")
            typer.echo(format_table(results, within))
        if out is None:
            return
        fixed, notes = repair_apex(samples, str(aligned) if aligned else None, method, smooth, respot)
        if notes["fallback"]:
            logger.warning(
                f"{len(notes['fallback'])} clip(s) estimated by midpoint instead of {method}: " + "; ".join(notes["fallback"][:10])
            )
        write_samples(fixed, out)
        logger.info(f"{out}: {len(notes['repaired'])} apex(es) estimated, {len(fixed) - len(notes['repaired'])} kept from the sheet")
