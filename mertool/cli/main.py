"""The ``mertool`` command: a typer app assembled from one module per verb group.

Each module in ``VERBS`` defines ``register(app)``; a new verb is one module plus one
entry there. User mistakes arrive here as :class:`~mertool.errors.MertoolError` and
leave as one ``error: ...`` line and exit code 2.
"""

from __future__ import annotations

import sys

import typer
from typer.exceptions import TyperException

from ..errors import MertoolError
from . import align, demo, dynimg, flow, importer, index, info, keyframes, models, pairs, synth, train

app = typer.Typer(
    name="mertool",
    help="Micro-expression recognition toolkit: index -> align -> keyframes -> flow/dynimg -> train -> report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# One module per verb group, in the order `mertool --help` lists their commands.
VERBS = (index, align, flow, dynimg, pairs, info, models, train, keyframes, importer, synth, demo)

for _verb in VERBS:
    _verb.register(app)


def cli(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` and return the exit code (used by tests and ``main``)."""
    try:
        result = app(args=argv, prog_name="mertool", standalone_mode=False)
    except MertoolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except TyperException as exc:  # usage errors: typer's own one-line message
        show = getattr(exc, "show", None)
        show() if show else print(f"error: {exc.format_message()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


def main() -> None:
    sys.exit(cli())
