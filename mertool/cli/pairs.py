"""``mertool pairs``: aligned onset/apex frame pairs for frame-pair models (FaceSleuth)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..log import setup_cli_logging
from ..stages.pairs import PairsConfig, run_pairs
from .common import (
    ConfigOption, ForModelOption, JobsOption, OverwriteOption, PreviewOption, SamplesOption, out_option, resolve_config,
)

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
        samples: Optional[Path] = SamplesOption,
        for_model: Optional[str] = ForModelOption,
        missing_apex: Optional[str] = typer.Option(
            None, "--missing-apex",
            help=f"Clips without an apex: skip or middle (middle frame) [default: {_D.missing_apex}].",
        ),
        invalid: Optional[str] = typer.Option(
            None, "--invalid",
            help="zero or keep: pixels that came from outside the source image (align's validity mask) set to 0 "
            f"in both frames, or kept [default: {_D.invalid}].",
        ),
        config: Optional[Path] = ConfigOption,
        jobs: int = JobsOption,
        overwrite: bool = OverwriteOption,
        preview: Optional[Path] = PreviewOption,
    ) -> None:
        """Stack each clip's aligned onset and apex frames (N x 3 x S x S uint8) with its meta and AUs."""
        setup_cli_logging()
        cfg = resolve_config(PairsConfig, config, "pairs", for_model, size=size, missing_apex=missing_apex,
                             invalid=invalid)
        result = run_pairs(aligned, out, cfg, samples_csv=samples, jobs=jobs, overwrite=overwrite, preview=preview)
        typer.echo(result.summary("onset/apex pairs"))
