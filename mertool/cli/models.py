"""``mertool models``: the model registry with inputs, parameter counts and (with ``--flops``) FLOPs."""

from __future__ import annotations

from typing import Optional

import typer

from ..errors import UsageError

FORMATS = ("table", "markdown", "csv")
CONVENTION_HELP = (
    "FLOP convention: macs, flops (2 x MACs) or torchstat (the Off-TANet paper's); implies --flops [default: macs]."
)


def register(app: typer.Typer) -> None:
    @app.command(
        "models",
        epilog="Example: mertool models   |   mertool models --flops   |   mertool models offtanet --convention torchstat "
        "--format markdown   |   mertool models --recipe ststnet",
    )
    def models(
        names: Optional[list[str]] = typer.Argument(None, help="Models to show (default: all registered)."),
        num_classes: int = typer.Option(3, "--num-classes", help="Classifier size the parameter counts are for."),
        flops: Optional[bool] = typer.Option(
            None, "--flops/--no-flops",
            help="Count FLOPs: one forward pass per model, seconds on a CPU [default: off, unless --convention is given].",
        ),
        convention: Optional[str] = typer.Option(None, "--convention", help=CONVENTION_HELP),
        fmt: str = typer.Option("table", "--format", help=f"Output: {', '.join(FORMATS)}."),
        recipe: Optional[str] = typer.Option(
            None, "--recipe", metavar="MODEL",
            help="Print how MODEL's input is made: one 'verb<TAB>output<TAB>flags' line per stage (read by pipelines/*.sh).",
        ),
    ) -> None:
        """List registered models: input, trainable parameters, FLOPs (with --flops), and where each recipe comes from."""
        if recipe is not None:
            from ..recipes import recipe_text

            typer.echo(recipe_text(recipe))
            return
        # torch is imported here, not at CLI start-up, so `mertool --help` stays fast.
        from ..models.describe import describe_models
        from ..models.flops import CONVENTIONS
        from ..table import format_table

        flops = convention is not None if flops is None else flops
        convention = convention or "macs"
        if num_classes < 2:
            raise UsageError(f"--num-classes must be >= 2, got {num_classes}")
        if convention not in CONVENTIONS:
            raise UsageError(f"unknown --convention {convention!r}; choose from {', '.join(CONVENTIONS)}")
        if fmt not in FORMATS:
            raise UsageError(f"unknown --format {fmt!r}; choose from {', '.join(FORMATS)}")
        columns, rows = describe_models(names, num_classes=num_classes, flops=flops, convention=convention,
                                        raw=fmt == "csv")
        typer.echo(format_table(rows, columns, "text" if fmt == "table" else fmt))
        if fmt == "table":
            counted = f"per sample, convention {convention!r} (see mertool.models.flops)" if flops else "add --flops to count"
            typer.echo(f"\nparams: trainable, for a {num_classes}-class head; FLOPs: {counted}")
            typer.echo("encoding: the input the recipe was made for (signed displacement, minmax-byte 0..255 images,"
                       " minmax-unit 0..1; - = any); recipe source: paper, authors' code or mertool's own")
