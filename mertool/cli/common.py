"""Option types shared by verbs (so every verb spells them the same way)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

OutOption = typer.Option(..., "-o", "--out", help="Output file.")
ConfigOption: Optional[Path] = typer.Option(None, "--config", help="YAML file of options (CLI flags override it).")
OverwriteOption: bool = typer.Option(False, "--overwrite", help="Replace an output made with other parameters or inputs.")
JobsOption: int = typer.Option(1, "--jobs", "-j", help="Parallel worker processes (-1 = all cores).")
PreviewOption: Optional[Path] = typer.Option(None, "--preview", help="Folder for PNG previews of a few samples.")
