"""User-facing errors.

A :class:`MertoolError` is a user mistake or bad input (missing file, wrong stage file,
bad sheet). The CLI prints its message as one line and exits non-zero, without a
traceback. Programming errors stay ordinary exceptions.
"""

from collections.abc import Iterable


class MertoolError(Exception):
    """Bad input or a user mistake; the message names the file/sample and what is wrong."""


def unknown_name(what: str, name: str, known: Iterable[str], cutoff: float = 0.6) -> MertoolError:
    """The error for a name no registry holds, suggesting the closest known names."""
    import difflib

    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=cutoff)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return MertoolError(f"unknown {what} {name!r}{hint}; known: {', '.join(known)}")
