"""The ``mertool`` command: a typer app assembled from one module per verb group.

Each module in ``VERBS`` defines ``register(app)``; a new verb is one module plus one
entry there. Every failure leaves as one ``error: ...`` line, without a traceback, and
an exit code that says whose move it is:

- 0: done (samples that failed are listed as warnings and by ``mertool info``);
- 1: bad data or files (:class:`~mertool.errors.MertoolError`: a missing, corrupt or
  stale input, an output held by another run, a folder that cannot be written, a full
  disk);
- 2: a wrong command (:class:`~mertool.errors.UsageError`, typer's usage errors: an
  unknown option or name, a bad option value or config file);
- 130: interrupted with Ctrl-C (re-run the same command to resume).

Global options (before the verb) reach the stages as environment variables, so worker
processes and library calls see them too; :func:`cli` puts the variables back as they were
when it returns:

- ``--wait`` (``MERTOOL_WAIT=1``): queue behind another run writing the same output;
- ``--verify-content`` (``MERTOOL_VERIFY_CONTENT=1``): identify clips by a hash of their
  frame files;
- ``--scheduler ADDRESS|local[:N]`` (``MERTOOL_SCHEDULER``): run the stages' per-sample
  work on a dask.distributed cluster (see :mod:`mertool.cluster`);
- ``--quiet`` / ``-q`` (``MERTOOL_QUIET=1``): no progress bars, and only warnings and
  errors from the ``mertool`` logger (``mertool train -q``, after the verb, only hides
  train's epoch bar).

``--version`` prints ``mertool X.Y.Z`` (:data:`mertool.__version__`, which the package
metadata also reads). ``--install-completion`` / ``--show-completion`` install or print
the shell completion script (typer's; the shell is detected).
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, Optional

import typer
from typer.exceptions import TyperException

from .. import __version__
from ..cluster import SCHEDULER_ENV
from ..errors import MertoolError
from ..log import QUIET_ENV, logger, setup_cli_logging
from ..samples import VERIFY_CONTENT_ENV
from ..lock import WAIT_ENV
from . import align, demo, dynimg, flow, importer, index, info, keyframes, models, pairs, spot, synth, train

HELP = "Micro-expression recognition toolkit: index -> align -> keyframes -> flow/dynimg -> train -> report."
app = typer.Typer(
    name="mertool",
    help=HELP,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},  # subcommands inherit it
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

INTERRUPTED = 130
#: The environment variables the global options set; :func:`cli` restores them.
GLOBAL_ENV = (WAIT_ENV, VERIFY_CONTENT_ENV, SCHEDULER_ENV, QUIET_ENV)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"mertool {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    version: bool = typer.Option(
        False, "--version", is_eager=True, expose_value=False, callback=_print_version,
        help="Print the version and exit.",
    ),
    wait: bool = typer.Option(
        False, "--wait", help=f"If another run is writing the same output, wait for it instead of stopping ({WAIT_ENV}=1)."
    ),
    verify_content: bool = typer.Option(
        False, "--verify-content",
        help=f"Identify clips by a hash of their frame files, not their sizes and times ({VERIFY_CONTENT_ENV}=1).",
    ),
    scheduler: Optional[str] = typer.Option(
        None, "--scheduler", metavar="ADDRESS|local[:N]",
        help=f"Run per-sample work on a dask cluster: a scheduler address or file, or local:N workers here ({SCHEDULER_ENV}; needs mertool[dask]).",
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help=f"No progress bars; print only warnings and errors ({QUIET_ENV}=1).",
    ),
) -> None:
    if wait:
        os.environ[WAIT_ENV] = "1"
    if verify_content:
        os.environ[VERIFY_CONTENT_ENV] = "1"
    if scheduler is not None:
        os.environ[SCHEDULER_ENV] = scheduler
    if quiet:
        os.environ[QUIET_ENV] = "1"
        logger.setLevel(logging.WARNING)


def _no_eof(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` with ``EOFError`` (a file cut short) as a MertoolError: click would
    report it as "aborted" with the Ctrl-C exit code."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except EOFError as exc:
            raise MertoolError(f"an input file ends early ({exc or 'end of file'}); it is truncated or empty") from None

    return run


# One module per verb group, in the order `mertool --help` lists their commands.
VERBS = (index, align, flow, dynimg, pairs, info, models, train, keyframes, importer, spot, synth, demo)


def _one_line(command: Any) -> str:
    """A command's whole first docstring paragraph on one line (click would cut it to the width)."""
    doc = command.help or command.callback.__doc__ or ""
    return " ".join(doc.strip().split("\n\n")[0].split())


for _verb in VERBS:
    _verb.register(app)
for _command in app.registered_commands:
    _command.short_help = _command.short_help or _one_line(_command)
    _command.callback = _no_eof(_command.callback)


def _os_error_line(exc: OSError) -> str:
    """One line for an OSError no stage turned into a MertoolError."""
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return f"disk full writing {exc.filename or 'a file'}; free space and re-run: finished work is kept"
    reason = exc.strerror or str(exc)
    return f"{exc.filename}: {reason}" if exc.filename else reason


def cli(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` and return the exit code (used by tests and ``main``).

    The environment variables of the global options and the logger's level are put back
    as they were, so one process can run several commands.
    """
    saved = {name: os.environ.get(name) for name in GLOBAL_ENV}
    setup_cli_logging()
    level = logger.level
    args = (sys.argv[1:] if argv is None else list(argv)) or ["--help"]  # a bare `mertool`: help, exit 0
    try:
        result = app(args=args, prog_name="mertool", standalone_mode=False)
    except MertoolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"error: {_os_error_line(exc)}", file=sys.stderr)
        return 1
    except typer.Exit as exc:
        return exc.exit_code
    except SystemExit as exc:  # shell completion and --install/--show-completion exit this way
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return INTERRUPTED
    except TyperException as exc:  # usage errors: typer's own one-line message
        show = getattr(exc, "show", None)
        show() if show else print(f"error: {exc.format_message()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        result = INTERRUPTED
    finally:
        _restore(saved)
        logger.setLevel(level)
    if result == INTERRUPTED:  # typer turns Ctrl-C into this exit code
        print("interrupted; re-run the same command to resume", file=sys.stderr)
    return result if isinstance(result, int) else 0


def _restore(saved: dict[str, str | None]) -> None:
    """Put the environment variables ``saved`` back (unset those that were unset)."""
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def main() -> None:
    sys.exit(cli())
