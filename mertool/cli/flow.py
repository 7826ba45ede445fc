"""``mertool flow``: onset->apex TV-L1 optical flow and optical strain."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..stages.stagefile import open_stage
from ..log import setup_cli_logging
from ..preprocess.flow import FlowConfig, run_flow
from .common import ConfigOption, JobsOption, OverwriteOption, PreviewOption


def register(app: typer.Typer) -> None:
    @app.command(
        "flow",
        epilog=(
            "Example: mertool flow work/aligned.h5 -o work/flow.h5 --preset offtanet "
            "--samples work/samples.csv --backend torch --preview work/preview_flow"
        ),
    )
    def flow(
        aligned_h5: Path = typer.Argument(..., help="aligned.h5 from `mertool align`."),
        out: Path = typer.Option(..., "-o", "--out", help="flow.h5 to write."),
        samples: Optional[Path] = typer.Option(
            None, "--samples", help="samples.csv whose apex overrides the aligned file's (from `mertool keyframes`)."
        ),
        preset: Optional[str] = typer.Option(None, help="offtanet (112, Sobel) or ststnet (28) [default: offtanet]."),
        size: Optional[int] = typer.Option(None, help="Side of the stored u, v, strain maps [default: per preset, 112]."),
        flow_size: Optional[int] = typer.Option(
            None, help="Frames resized (bicubic) to this before the flow; 0 = aligned size [default: 112]."
        ),
        pairs: Optional[str] = typer.Option(None, help="apex (onset->apex) or all (onset->every frame) [default: apex]."),
        normalise: Optional[str] = typer.Option(None, help="Per-sample normalisation: none, minmax or magnitude [default: none]."),
        strain: Optional[str] = typer.Option(None, help="Strain derivatives: sobel or central [default: sobel]."),
        backend: Optional[str] = typer.Option(None, help="TV-L1 implementation: opencv or torch [default: opencv]."),
        device: str = typer.Option("auto", help="torch backend device: auto, cpu or cuda."),
        batch_size: int = typer.Option(64, "--batch-size", help="torch backend: pairs solved at once."),
        compile: bool = typer.Option(
            False, "--compile", help="torch backend: fuse the solver with torch.compile (GPU speed-up after a one-off compile)."
        ),
        tau: Optional[float] = typer.Option(None, help="TV-L1 time step [default: 0.25]."),
        lambda_: Optional[float] = typer.Option(None, "--lambda", help="TV-L1 data weight [default: 0.15]."),
        theta: Optional[float] = typer.Option(None, help="TV-L1 coupling [default: 0.3]."),
        nscales: Optional[int] = typer.Option(None, help="Pyramid levels [default: 5]."),
        warps: Optional[int] = typer.Option(None, help="Warps per level [default: 5]."),
        epsilon: Optional[float] = typer.Option(None, help="Stopping threshold [default: 0.01]."),
        inner_iterations: Optional[int] = typer.Option(None, help="Inner iterations [default: 30]."),
        outer_iterations: Optional[int] = typer.Option(None, help="Outer iterations [default: 10]."),
        scale_step: Optional[float] = typer.Option(None, help="Pyramid scale step [default: 0.8]."),
        gamma: Optional[float] = typer.Option(None, help="Illumination term weight, opencv backend only [default: 0]."),
        median_filtering: Optional[int] = typer.Option(None, help="Median filter size of the flow: 1, 3 or 5 [default: 5]."),
        config: Optional[Path] = ConfigOption,
        jobs: int = JobsOption,
        overwrite: bool = OverwriteOption,
        preview: Optional[Path] = PreviewOption,
    ) -> None:
        """TV-L1 optical flow (u, v) and optical strain between onset and apex, as N x 3 x S x S."""
        setup_cli_logging()
        cfg = FlowConfig.resolve(
            config,
            preset=preset,
            size=size,
            flow_size=flow_size,
            pairs=pairs,
            normalise=normalise,
            strain=strain,
            backend=backend,
            tau=tau,
            lambda_=lambda_,
            theta=theta,
            nscales=nscales,
            warps=warps,
            epsilon=epsilon,
            inner_iterations=inner_iterations,
            outer_iterations=outer_iterations,
            scale_step=scale_step,
            gamma=gamma,
            median_filtering=median_filtering,
        )
        path = run_flow(
            aligned_h5, out, cfg, samples_csv=samples, jobs=jobs, overwrite=overwrite, preview=preview,
            device=device, batch_size=batch_size, compile=compile,
        )
        sf = open_stage(path)
        total = len(sf) + len(sf.failed)
        typer.echo(f"{path}: {len(sf)} of {total} samples, flow {cfg.size}x{cfg.size} ({cfg.backend})")
