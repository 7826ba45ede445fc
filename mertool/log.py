"""The package logger; the CLI shows INFO and up on stderr (``warning: ...`` prefixes)."""

import logging
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
