"""``mertool index`` and ``mertool datasets``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional

import typer

from ..datasets import list_datasets, load_dataset
from ..log import logger, setup_cli_logging
from ..samples import write_samples


def register(app: typer.Typer) -> None:
    @app.command(
        "index",
        epilog="Example: mertool index --dataset manifest --sheet my_clips.csv -o work/samples.csv",
    )
    def index(
        dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset adapter (see `mertool datasets`)."),
        root: Optional[Path] = typer.Option(None, "--root", help="Dataset root folder."),
        sheet: Optional[Path] = typer.Option(None, "--sheet", help="Annotation sheet / manifest CSV."),
        out: Path = typer.Option(..., "-o", "--out", help="samples.csv to write."),
        protocol: Optional[str] = typer.Option(None, "--protocol", help="Class map (casme2-5, samm-5, mmew-7, megc2019-3, offtanet-3, raw); default: the dataset's own."),
        min_class_count: int = typer.Option(0, "--min-class-count", help="Drop classes with fewer samples (DIANet: 10); dropped classes are reported."),
    ) -> None:
        """Index a dataset's clips into samples.csv (one row per clip)."""
        setup_cli_logging()
        samples = load_dataset(dataset, root=root, sheet=sheet, protocol=protocol, min_class_count=min_class_count)
        write_samples(samples, out)
        labels = Counter(s.label for s in samples)
        subjects = len({s.subject for s in samples})
        logger.info(
            f"{out}: {len(samples)} samples, {subjects} subjects, labels "
            + ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
        )

    @app.command("datasets", epilog="Example: mertool datasets")
    def datasets() -> None:
        """List the dataset adapters."""
        for name, desc in list_datasets().items():
            typer.echo(f"{name:12s} {desc}")
