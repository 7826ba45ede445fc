"""``mertool dynimg``: phase-aware dynamic images (DIANet) from aligned clips."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..log import setup_cli_logging
from ..stages.dynimg import DynimgConfig, run_dynimg
from .common import (
    ConfigOption, ForModelOption, JobsOption, OverwriteOption, PreviewOption, SamplesOption, out_option, resolve_config,
)

_D = DynimgConfig()


def register(app: typer.Typer) -> None:
    @app.command(
        "dynimg",
        epilog=(
            "Example: mertool dynimg work/aligned.h5 -o work/dynimg.h5 --phases onset,offset "
            "--kind linear --size 224 --samples work/samples.csv --preview work/preview/dynimg"
        ),
    )
    def dynimg(
        aligned: Path = typer.Argument(..., help="aligned.h5 from `mertool align` (all frames onset..offset)."),
        out: Path = out_option("dynimg.h5 to write."),
        phases: Optional[str] = typer.Option(
            None, "--phases",
            help="onset,offset = DI-Onset (onset..apex) and DI-Offset (apex..offset, ranked backwards); "
            f"whole = one DI over onset..offset [default: {_D.phases}].",
        ),
        kind: Optional[str] = typer.Option(
            None, "--kind", help=f"Rank-pooling weights: linear (DIANet, 2t-T-1) or exact (Bilen et al.) [default: {_D.kind}].",
        ),
        size: Optional[int] = typer.Option(None, "--size", help=f"Output side in pixels [default: {_D.size}]."),
        channels: Optional[int] = typer.Option(
            None, "--channels", help=f"3 = RGB, 1 = gray, e.g. for SAMM [default: {_D.channels}]."
        ),
        normalize: Optional[str] = typer.Option(
            None, "--normalize", "--normalise",
            help=f"Per-image rescaling: minmax (0..255), standardize (mean 0, sd 1) or none [default: {_D.normalize}].",
        ),
        frame_norm: Optional[str] = typer.Option(
            None, "--frame-norm",
            help="Per-frame preprocessing: none, or mean (subtract each frame's channel means, over the valid pixels "
            f"with --invalid zero) [default: {_D.frame_norm}].",
        ),
        invalid: Optional[str] = typer.Option(
            None, "--invalid",
            help="zero or keep: pixels that came from outside the source image (align's validity mask) set to 0, "
            f"the images normalised over the valid ones; or the mask ignored [default: {_D.invalid}].",
        ),
        samples: Optional[Path] = SamplesOption,
        for_model: Optional[str] = ForModelOption,
        config: Optional[Path] = ConfigOption,
        jobs: int = JobsOption,
        overwrite: bool = OverwriteOption,
        preview: Optional[Path] = PreviewOption,
    ) -> None:
        """Phase-aware dynamic images by approximate rank pooling (N x P x C x S x S)."""
        setup_cli_logging()
        cfg = resolve_config(
            DynimgConfig, config, "dynimg", for_model, phases=phases, kind=kind, size=size, channels=channels,
            normalize=normalize, frame_norm=frame_norm, invalid=invalid,
        )
        result = run_dynimg(aligned, out, cfg, samples_csv=samples, jobs=jobs, overwrite=overwrite, preview=preview)
        typer.echo(result.summary(f"{len(cfg.phase_list())} dynamic image(s) each"))
