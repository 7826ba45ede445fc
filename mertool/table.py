"""The one table renderer: aligned text, Markdown or CSV (``mertool models``, ``report``, ``keyframes``)."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

FORMATS = ("text", "markdown", "csv")


def _cells(rows: Sequence[Mapping[str, Any] | Sequence[Any]], columns: Sequence[str]) -> list[list[Any]]:
    out = []
    for row in rows:
        if isinstance(row, Mapping):
            out.append([row.get(c, "") for c in columns])
        elif len(row) != len(columns):
            raise ValueError(f"a row has {len(row)} cells for {len(columns)} columns: {list(row)!r}")
        else:
            out.append(list(row))
    return out


def format_table(
    rows: Sequence[Mapping[str, Any] | Sequence[Any]],
    columns: Sequence[str],
    fmt: str = "text",
    *,
    align: str | None = None,
    sep: str = "  ",
    widths: Sequence[int] | None = None,
) -> str:
    """Render rows as an aligned text table, a Markdown table or CSV.

    Parameters
    ----------
    rows : sequence of mappings or of sequences
        A mapping row is read by column name (missing keys are empty cells); a sequence
        row holds one cell per column. Cells are written with ``str()`` (``None`` is
        empty), so format numbers before passing them where a fixed precision matters.
    columns : sequence of str
        Column names: the header line, and the keys of mapping rows.
    fmt : {"text", "markdown", "csv"}
        ``text``: columns padded to their widest cell and joined by ``sep``, trailing
        blanks stripped. ``markdown``: a GitHub table. ``csv``: header plus rows (values
        as the csv module writes them).
    align : str, optional
        One letter per column, ``"l"`` (left, the default) or ``"r"`` (right), for text
        and Markdown (``---:``).
    sep : str
        Text column separator.
    widths : sequence of int, optional
        Minimum text column widths (default: the widest cell or header).

    Returns
    -------
    str
        The table, without a trailing newline.

    Raises
    ------
    ValueError
        Unknown ``fmt``, ``align`` or ``widths`` not matching ``columns``, or a sequence
        row whose length differs from ``columns``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown table format {fmt!r}; choose from {', '.join(FORMATS)}")
    align = align or "l" * len(columns)
    if len(align) != len(columns) or set(align) - {"l", "r"}:
        raise ValueError(f"align must be one of l/r per column ({len(columns)}), got {align!r}")
    if widths is not None and len(widths) != len(columns):
        raise ValueError(f"widths must give one width per column ({len(columns)}), got {len(widths)}")
    cells = _cells(rows, columns)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(cells)
        return buf.getvalue().rstrip("\n")
    text = [list(columns)] + [["" if v is None else str(v) for v in row] for row in cells]
    if fmt == "markdown":
        rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
        lines = ["| " + " | ".join(row) + " |" for row in text]
        return "\n".join(lines[:1] + [rule] + lines[1:])
    fit = [max(len(row[i]) for row in text) for i in range(len(columns))]
    fit = [max(f, w) for f, w in zip(fit, widths)] if widths is not None else fit
    pad = [str.rjust if a == "r" else str.ljust for a in align]
    return "\n".join(sep.join(p(v, w) for p, v, w in zip(pad, row, fit)).rstrip() for row in text)
