"""The package logger; the CLI shows INFO and up on stderr (``warning: ...`` prefixes)."""

import logging
import os
import sys

logger = logging.getLogger("mertool")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now (so redirection and test capture work)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


class _LevelPrefix(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno == logging.INFO else f"{record.levelname.lower()}: {text}"


def setup_cli_logging(verbose: bool = False) -> None:
    if any(isinstance(h, _StderrHandler) for h in logger.handlers):
        return
    handler = _StderrHandler()
    handler.setFormatter(_LevelPrefix("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


#: Set by ``mertool --quiet``: no progress bars, warnings and errors only.
QUIET_ENV = "MERTOOL_QUIET"


def progress_bar(iterable=None, *, progress: bool = True, **kwargs):
    """A tqdm bar on stderr, shown only when wanted and useful.

    Hidden when ``progress`` is false, under ``--quiet`` (``MERTOOL_QUIET=1``), or when
    stderr is not a terminal (a log file or a batch job gets no carriage-return noise).
    """
    from tqdm.auto import tqdm

    wanted = progress and os.environ.get(QUIET_ENV, "") in ("", "0") and _stderr_is_terminal()
    return tqdm(iterable, disable=not wanted, **kwargs)


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
