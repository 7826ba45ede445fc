"""``mertool models``: the model registry with inputs, parameter counts and FLOPs."""

from __future__ import annotations

from typing import Optional

import typer

from ..errors import MertoolError

FORMATS = ("table", "markdown", "csv")
CONVENTION_HELP = "FLOP convention: macs, flops (2 x MACs) or torchstat (the Off-TANet paper's)."


def _human(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def format_summaries(rows: list, fmt: str = "table") -> str:
    """Render model summaries as an aligned text table, Markdown or CSV."""
    if fmt not in FORMATS:
        raise MertoolError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    conv = rows[0].convention if rows else "macs"
    head = ["model", "input", "params", f"FLOPs ({conv})", "description"]
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["model", "stage", "input", "num_classes", "params", f"flops_{conv}", "description"])
        for r in rows:
            w.writerow([r.name, r.stage, r.input_text, r.num_classes, r.params, "" if r.flops is None else r.flops, r.description])
        return buf.getvalue().rstrip("\n")
    body = [[r.name, r.input_text, f"{r.params:,}", _human(r.flops), r.description] for r in rows]
    if fmt == "markdown":
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
        return "\n".join(lines + ["| " + " | ".join(b) + " |" for b in body])
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    fmt_row = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells[:-1], widths)) + "  " + cells[-1]  # noqa: E731
    return "\n".join([fmt_row(head)] + [fmt_row(b) for b in body])


def register(app: typer.Typer) -> None:
    @app.command(
        "models",
        epilog="Example: mertool models   |   mertool models offtanet --convention torchstat --format markdown",
    )
    def models(
        names: Optional[list[str]] = typer.Argument(None, help="Models to show (default: all registered)."),
        num_classes: int = typer.Option(3, "--num-classes", help="Classifier size the parameter counts are for."),
        flops: bool = typer.Option(True, "--flops/--no-flops", help="Count FLOPs (one forward pass per model)."),
        convention: str = typer.Option("macs", "--convention", help=CONVENTION_HELP),
        fmt: str = typer.Option("table", "--format", help=f"Output: {', '.join(FORMATS)}."),
    ) -> None:
        """List registered models: input stage and shape, trainable parameters, FLOPs per sample."""
        # torch is imported here, not at CLI start-up, so `mertool --help` stays fast.
        from ..models import list_models
        from ..models.flops import CONVENTIONS, summarize_model

        if num_classes < 2:
            raise MertoolError(f"--num-classes must be >= 2, got {num_classes}")
        if convention not in CONVENTIONS:
            raise MertoolError(f"unknown --convention {convention!r}; choose from {', '.join(CONVENTIONS)}")
        if fmt not in FORMATS:
            raise MertoolError(f"unknown --format {fmt!r}; choose from {', '.join(FORMATS)}")
        rows = [summarize_model(n, num_classes, flops, convention) for n in (names or list_models())]
        typer.echo(format_summaries(rows, fmt))
        if fmt == "table":
            typer.echo(f"\nparams: trainable, for a {num_classes}-class head; FLOPs: per sample, convention {convention!r}"
                       " (see mertool.models.flops)")
