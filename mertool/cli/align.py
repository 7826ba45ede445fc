"""``mertool align``: face alignment of every clip in samples.csv."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..log import setup_cli_logging
from ..stages.align import AlignConfig, run_align
from ..stages.stagefile import DEFAULT_COMPRESSION
from .common import ConfigOption, JobsOption, OverwriteOption, PreviewOption, out_option

_D = AlignConfig()


def register(app: typer.Typer) -> None:
    @app.command(
        "align",
        epilog="Example: mertool align work/samples.csv -o work/aligned.h5 --size 224 --jobs 2 --preview work/preview",
    )
    def align(
        samples_csv: Path = typer.Argument(..., help="samples.csv from `mertool index`."),
        out: Path = out_option("aligned.h5 to write."),
        size: Optional[int] = typer.Option(None, help=f"Crop size in pixels [default: {_D.size}]."),
        margin: Optional[float] = typer.Option(
            None, help=f"Border around the face: similarity, fraction of the crop; box, of the landmark box [default: {_D.margin}]."
        ),
        detector: Optional[str] = typer.Option(None, help=f"Face detector: hog or cnn [default: {_D.detector}]."),
        upsample: Optional[int] = typer.Option(None, help=f"Detector upsampling, finds small faces [default: {_D.upsample}]."),
        frames: Optional[str] = typer.Option(None, help=f"all (onset..offset) or keyframes (onset, apex) [default: {_D.frames}]."),
        crop: Optional[str] = typer.Option(
            None,
            help="similarity (eye template, zoomed in just enough to stay inside the image), box (landmark box + "
            "margin, square, resized), none (frames already face crops: resized as they are), or auto: none for "
            f"datasets declared pre-cropped (casme2, samm), similarity otherwise [default: {_D.crop}].",
        ),
        compression: Optional[str] = typer.Option(
            None,
            help="How aligned.h5 stores frames (chunked one frame each): lzf, gzip (level 4), gzip:LEVEL (1-9) or none. "
            "A storage choice, not content: the key stays; an up-to-date file asked for another is re-packed, "
            f"not recomputed [default: {DEFAULT_COMPRESSION} for a new file].",
        ),
        config: Optional[Path] = ConfigOption,
        jobs: int = JobsOption,
        overwrite: bool = OverwriteOption,
        preview: Optional[Path] = PreviewOption,
    ) -> None:
        """Detect the face on each clip's onset frame and crop every frame with one transform (see --crop)."""
        setup_cli_logging()
        cfg = AlignConfig.resolve(
            config, size=size, margin=margin, detector=detector, upsample=upsample, frames=frames, crop=crop
        )
        result = run_align(samples_csv, out, cfg, jobs=jobs, overwrite=overwrite, preview=preview, compression=compression)
        typer.echo(result.summary("aligned"))
