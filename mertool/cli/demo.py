"""``mertool demo``: the whole chain on the built-in synthetic data."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..log import setup_cli_logging
from .common import out_option


def register(app: typer.Typer) -> None:
    @app.command("demo", epilog="Example: mertool demo -o mertool_demo   (about a minute: mertool demo --quick)")
    def demo(
        out: Path = out_option("Demo folder (data, work, pictures, runs).", default=Path("mertool_demo")),
        model: str = typer.Option("offtanet", "--model", "-m", help="Model to train (flow, dynimg or pairs inputs)."),
        quick: bool = typer.Option(False, "--quick", help="Small set (6 subjects, 36 clips of 16 frames)."),
        epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs per LOSO fold [default: 20, quick 30]."),
        jobs: int = typer.Option(2, "--jobs", "-j", help="Worker processes for clips and folds."),
        device: str = typer.Option("auto", "--device", help="Training device: auto | cpu | cuda."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Redo every step, replacing outputs made with other settings."),
        spot: bool = typer.Option(False, "--spot", help="Instead: spotting on synthetic long videos at 200 and 30 fps (synth -> index -> spot -> evaluate) in OUT/spot; prints F1."),
    ) -> None:
        """Generate the built-in set and run index, align, keyframes, flow, dynimg, train (LOSO) and report.

        Re-running the same command reuses every finished step.
        """
        from ..demo import format_spot_summary, format_summary, run_demo, run_spot_demo

        setup_cli_logging()
        if spot:
            summary = run_spot_demo(out / "spot", quick=quick, jobs=jobs, overwrite=overwrite, echo=typer.echo)
            typer.echo("")
            typer.echo(format_spot_summary(summary))
            return
        summary = run_demo(out, model=model, quick=quick, jobs=jobs, device=device, epochs=epochs,
                          overwrite=overwrite, echo=typer.echo)
        typer.echo("")
        typer.echo(format_summary(summary))
