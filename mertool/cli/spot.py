"""``mertool spot``: micro- and macro-expression spotting in long videos (and ``--evaluate``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..log import setup_cli_logging
from ..stages.spot import SpotConfig, evaluate_spots, run_spot, write_preview
from .common import ConfigOption, JobsOption, OverwriteOption, out_option

_D = SpotConfig()


def register(app: typer.Typer) -> None:
    @app.command(
        "spot",
        epilog="Example: mertool spot work/long.csv -o work/spots.csv --fps 200 --evaluate work/long.csv --preview work/spot",
    )
    def spot(
        samples_csv: Path = typer.Argument(..., help="samples.csv naming the videos (each frames folder / video file is spotted over all its frames)."),
        out: Path = out_option("Spotting CSV to write; spots.h5 (curves) and <name>_samples.csv (the spotted clips) go beside it."),
        fps: Optional[float] = typer.Option(None, help="Frame rate of the videos [default: the dataset's, for the long-video sets (see `mertool datasets`)]."),
        method: Optional[str] = typer.Option(None, help=f"Per-frame features: flow (block optical flow) or lbp (classic LBP chi-square) [default: {_D.method}]."),
        rate: Optional[float] = typer.Option(None, help=f"Frames per second analysed (every round(fps/rate)-th frame) [default: {_D.rate:g}]."),
        micro_window: Optional[float] = typer.Option(None, help=f"Half window of the micro pass, seconds [default: {_D.micro_window:g}]."),
        macro_window: Optional[float] = typer.Option(None, help=f"Half window of the macro pass, seconds; 0 = micro only [default: {_D.macro_window:g}]."),
        z: Optional[float] = typer.Option(None, help=f"Threshold: robust SDs of the difference curve's noise a peak must clear [default: {_D.z:g}]."),
        regions: Optional[str] = typer.Option(None, help=f"Landmark regions, comma-separated: brows, eyes, nose, mouth [default: {_D.regions}]."),
        size: Optional[int] = typer.Option(None, help=f"Aligned crop size in pixels [default: {_D.size}]."),
        crop: Optional[str] = typer.Option(None, help=f"Crop policy: similarity, box or none (frames already face crops) [default: {_D.crop}]."),
        upsample: Optional[int] = typer.Option(None, help=f"Face-detector upsampling on each video's first frame [default: {_D.upsample}]."),
        evaluate: Optional[Path] = typer.Option(None, "--evaluate", metavar="SHEET", help="samples.csv of true intervals: print MEGC-style TP/FP/FN, P, R, F1 (IoU >= 0.5) and write <name>_eval.csv."),
        preview: Optional[Path] = typer.Option(None, "--preview", help="Folder for one curve picture per video (first 8), true intervals drawn with --evaluate."),
        config: Optional[Path] = ConfigOption,
        jobs: int = JobsOption,
        overwrite: bool = OverwriteOption,
    ) -> None:
        """Spot micro- and macro-expressions (onset, apex, offset) in long videos; optionally score them."""
        setup_cli_logging()
        cfg = SpotConfig.resolve(config, fps=fps, method=method, rate=rate, micro_window=micro_window, macro_window=macro_window,
                                 z=z, regions=regions, size=size, crop=crop, upsample=upsample)
        result = run_spot(samples_csv, out, cfg, jobs=jobs, overwrite=overwrite)
        typer.echo(result.summary())
        scores = evaluate_spots(out, evaluate) if evaluate is not None else None
        if scores is not None:
            typer.echo(scores.table())
            typer.echo(scores.summary())
        if preview is not None:
            paths = write_preview(out, preview, scores)
            typer.echo(f"pictures: {preview}/ ({len(paths)} files)")
