"""User-facing errors.

A :class:`MertoolError` is bad input (missing or corrupt file, wrong stage file, bad
sheet, disk full); a :class:`UsageError` is a mistake in the command itself (an option
value, a config file's option, an unknown name). The CLI prints either as one
``error:`` line without a traceback and exits 1 (bad data) or 2 (usage). Programming
errors stay ordinary exceptions.
"""

from collections.abc import Iterable


class MertoolError(Exception):
    """Bad input or a user mistake; the message names the file/sample and what is wrong."""

    exit_code = 1


class UsageError(MertoolError):
    """A wrong option value, config option or name: the command must change, not the data."""

    exit_code = 2


def unknown_name(what: str, name: str, known: Iterable[str], cutoff: float = 0.6) -> UsageError:
    """The error for a name no registry holds, suggesting the closest known names."""
    import difflib

    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=cutoff)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return UsageError(f"unknown {what} {name!r}{hint}; known: {', '.join(known)}")
