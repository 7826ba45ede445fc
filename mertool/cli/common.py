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
OverwriteOption: bool = typer.Option(
    False, "--overwrite",
    help="Replace an output made with other parameters or inputs (if only some clips' frames changed: recompute those).",
)
JobsOption: int = typer.Option(1, "--jobs", "-j", help="Parallel worker processes (-1 = all cores).")


def _writable_preview(folder: Optional[Path]) -> Optional[Path]:
    """Check the ``--preview`` folder before any work: created if missing, and writable."""
    from ..io import writable_folder

    return None if folder is None else writable_folder(folder, "preview folder")


PreviewOption: Optional[Path] = typer.Option(
    None, "--preview", help="Folder for PNG previews of a few samples.", callback=_writable_preview
)
SamplesOption: Optional[Path] = typer.Option(
    None, "--samples",
    help="samples.csv whose apex overrides the aligned file's (e.g. from `mertool keyframes`): it needs a row for "
    "every sample; a row with a known apex (not -1) replaces the aligned file's, a row with -1 keeps it.",
)
ForModelOption: Optional[str] = typer.Option(
    None, "--for-model", metavar="MODEL",
    help="Take the options MODEL's recipe gives this verb (see `mertool models --recipe MODEL`); flags override them.",
)


def resolve_config(config_cls: Any, yaml: Optional[Path], verb: str, for_model: Optional[str], **flags: Any) -> Any:
    """A stage config from defaults <- YAML <- the ``--for-model`` recipe <- explicit flags."""
    recipe: dict[str, Any] = {}
    if for_model is not None:
        from ..recipes import options_for

        recipe = options_for(for_model, verb)
    return config_cls.resolve(yaml, **{**recipe, **{k: v for k, v in flags.items() if v is not None}})
