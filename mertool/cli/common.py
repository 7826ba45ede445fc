"""Option types shared by verbs (so every verb spells them the same way)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer


def out_option(help: str, default: Any = ...) -> Any:
    """The ``-o/--out`` option with a verb's own help text.

    Parameters
    ----------
    help : str
        What the verb writes there (``"flow.h5 to write."``).
    default : optional
        Required when omitted; else the default value (``None`` or a path).

    Examples
    --------
    ``out: Path = out_option("aligned.h5 to write.")`` in a verb's signature.
    """
    return typer.Option(default, "-o", "--out", help=help)


ConfigOption: Optional[Path] = typer.Option(None, "--config", help="YAML file of options (CLI flags override it).")
OverwriteOption: bool = typer.Option(False, "--overwrite", help="Replace an output made with other parameters or inputs.")
JobsOption: int = typer.Option(1, "--jobs", "-j", help="Parallel worker processes (-1 = all cores).")
PreviewOption: Optional[Path] = typer.Option(None, "--preview", help="Folder for PNG previews of a few samples.")
