"""The package logger; the CLI shows INFO and up on stderr as ``warning: ...`` lines etc."""

import logging

logger = logging.getLogger("mertool")


def setup_cli_logging(verbose: bool = False) -> None:
    if logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname_lower)s%(message)s"))
    handler.addFilter(_LevelPrefix())
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


class _LevelPrefix(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.levelname_lower = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return True
