"""Stages: the only code that reads and writes stage files.

Each stage module holds a config (a :class:`~mertool.config.StageConfig`), a pure
per-sample function and one call of :func:`._driver.run_stage`, which owns the loop:
pending samples -> compute (worker processes or device batches) -> add or fail ->
finish -> previews. The algorithms themselves live in :mod:`mertool.preprocess` and do
no I/O.
"""
