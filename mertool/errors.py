"""User-facing errors.

A :class:`MertoolError` is a user mistake or bad input (missing file, wrong stage file,
bad sheet). The CLI prints its message as one line and exits non-zero, without a
traceback. Programming errors stay ordinary exceptions.
"""


class MertoolError(Exception):
    """Bad input or a user mistake; the message names the file/sample and what is wrong."""
