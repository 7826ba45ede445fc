"""The one table renderer (mertool.table): text, Markdown and CSV from mapping or sequence rows."""

from __future__ import annotations

import csv
import io

import pytest

from mertool.table import format_table


def test_text_pads_columns_to_the_widest_cell_and_strips_trailing_blanks():
    out = format_table([["a", 1, "x"], ["bbbb", 22, ""]], ["name", "n", "note"])
    assert out.splitlines() == ["name  n   note", "a     1   x", "bbbb  22"]


def test_text_right_alignment_separator_and_minimum_widths_reproduce_a_fixed_width_layout():
    # The apex-spotting table (keyframes --evaluate) as it was written with f-strings.
    rows = [("regions", 12, 1.2345, 1.0, 83.3333), ("midpoint", 3, 10.0, 9.5, 0.0)]
    expected = [f"{'method':10s} {'clips':>5s} {'mean':>7s} {'median':>7s} {'<=3 fr':>7s}"]
    expected += [f"{m:10s} {n:5d} {a:7.2f} {b:7.1f} {w:6.1f}%" for m, n, a, b, w in rows]
    cells = [[m, n, f"{a:.2f}", f"{b:.1f}", f"{w:.1f}%"] for m, n, a, b, w in rows]
    out = format_table(cells, ["method", "clips", "mean", "median", "<=3 fr"], align="lrrrr", sep=" ",
                       widths=(10, 5, 7, 7, 7))
    assert out.splitlines() == expected


def test_mapping_rows_are_read_by_column_and_missing_or_none_cells_are_empty():
    rows = [{"run": "r1", "UF1": "0.5000", "extra": "ignored"}, {"run": "r2", "UF1": None}]
    assert format_table(rows, ["run", "UF1", "time_s"]).splitlines() == ["run  UF1     time_s", "r1   0.5000", "r2"]
    parsed = list(csv.DictReader(io.StringIO(format_table(rows, ["run", "UF1", "time_s"], "csv"))))
    assert parsed == [{"run": "r1", "UF1": "0.5000", "time_s": ""}, {"run": "r2", "UF1": "", "time_s": ""}]


def test_markdown_has_a_rule_row_that_carries_right_alignment():
    out = format_table([["a", "1"]], ["name", "n"], "markdown", align="lr")
    assert out == "| name | n |\n|---|---:|\n| a | 1 |"


def test_csv_quotes_as_the_csv_module_does_and_has_no_trailing_newline():
    out = format_table([["a, b", 3, None]], ["x", "y", "z"], "csv")
    assert out == 'x,y,z\n"a, b",3,'


def test_empty_table_is_its_header():
    assert format_table([], ["a", "bb"]) == "a  bb"
    assert format_table([], ["a", "bb"], "markdown") == "| a | bb |\n|---|---|"


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        ({"fmt": "html"}, "unknown table format"),
        ({"align": "l"}, "align"),
        ({"align": "lc"}, "align"),
        ({"widths": (3,)}, "widths"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        format_table([["a", "b"]], ["x", "y"], **kwargs)


def test_a_sequence_row_of_the_wrong_length_is_an_error():
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        format_table([["a", "b"]], ["x", "y", "z"])
