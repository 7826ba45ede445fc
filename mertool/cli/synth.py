"""``mertool synth``: the built-in synthetic micro-expression set."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional

import typer

from ..log import logger, setup_cli_logging
from ..synth import DEFAULT_CLASSES, MOTION_CLASSES, SynthConfig, generate, parse_range, plan
from .common import ConfigOption, JobsOption, OverwriteOption, out_option


def register(app: typer.Typer) -> None:
    @app.command(
        "synth",
        epilog=(
            "Example: mertool synth -o work/synth --subjects 12 --per-class 4 --seed 0 && "
            "mertool index --dataset manifest --sheet work/synth/manifest.csv -o work/samples.csv"
        ),
    )
    def synth(
        out: Path = out_option("Folder to write (image folders, manifest.csv, synth.json)."),
        subjects: Optional[int] = typer.Option(None, "--subjects", help="Subjects (LOSO folds) [default: 12]."),
        per_class: Optional[int] = typer.Option(None, "--per-class", help="Clips per class per subject [default: 4]."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Master seed; same seed, same files [default: 0]."),
        classes: Optional[str] = typer.Option(
            None, "--classes",
            help=f"Comma-separated classes from {', '.join(MOTION_CLASSES)} [default: {','.join(DEFAULT_CLASSES)}].",
        ),
        frames: Optional[int] = typer.Option(None, "--frames", help="Frames per clip [default: 30]."),
        amplitude: Optional[str] = typer.Option(
            None, "--amplitude", help="LO,HI apex displacement in pixels, drawn per clip [default: 1.0,2.5]."
        ),
        axis: Optional[float] = typer.Option(
            None, "--axis",
            help="Make every motion run along this axis (degrees from the face's horizontal, 90 = vertical) "
            "[default: the native AU directions].",
        ),
        size: Optional[int] = typer.Option(None, "--size", help="Frame width and height in pixels [default: 256]."),
        jitter: Optional[float] = typer.Option(None, "--jitter", help="Global head jitter bound, pixels [default: 0.3]."),
        blink: Optional[float] = typer.Option(None, "--blink", help="Probability of a blink per clip [default: 0.3]."),
        noise: Optional[str] = typer.Option(None, "--noise", help="LO,HI sensor-noise sd per subject, grey levels [default: 0.5,2.0]."),
        image_format: Optional[str] = typer.Option(None, "--format", help="jpg (quality 95) or png [default: jpg]."),
        apex_at: Optional[str] = typer.Option(
            None, "--apex-at", help="LO,HI: the apex falls uniformly in this fraction of onset..offset [default: 0.35,0.6]."
        ),
        config: Optional[Path] = ConfigOption,
        jobs: int = JobsOption,
        overwrite: bool = OverwriteOption,
    ) -> None:
        """Generate synthetic micro-expression clips on real faces, with known label, apex and motion."""
        setup_cli_logging()
        cfg = SynthConfig.resolve(
            config,
            subjects=subjects,
            per_class=per_class,
            seed=seed,
            classes=tuple(c for c in classes.split(",") if c.strip()) if classes is not None else None,
            frames=frames,
            amplitude=parse_range(amplitude, "--amplitude") if amplitude is not None else None,
            axis=axis,
            size=size,
            jitter=jitter,
            blink=blink,
            noise=parse_range(noise, "--noise") if noise is not None else None,
            image_format=image_format,
            apex_at=parse_range(apex_at, "--apex-at") if apex_at is not None else None,
        )
        manifest = generate(out, cfg, jobs=jobs, overwrite=overwrite)
        counts = Counter(p.label for p in plan(cfg))
        logger.info(
            f"{manifest}: {sum(counts.values())} clips, {cfg.subjects} subjects, "
            + ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        )
        typer.echo(f"next: mertool index --dataset manifest --sheet {manifest} -o SAMPLES_CSV")
