import numpy as np
import pytest

from mertool.datasets.aus import AU_ORDER, au_matrix, au_vector, parse_aus


def _vec(aus):
    """Independent reference: one-hot by position in the published order."""
    v = np.zeros(21, np.float32)
    for au in aus:
        v[list(AU_ORDER).index(au)] = 1
    return v


def test_order_is_facesleuth_21():
    assert AU_ORDER == (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 16, 17, 18, 20, 23, 24, 25, 26, 28, 45)


@pytest.mark.parametrize(
    "cell, known, unknown",
    [
        ("4+L10", [4, 10], []),
        ("R12", [12], []),
        ("AU12", [12], []),
        ("au 12", [12], []),
        ("12B", [12], []),
        ("?", [], ["?"]),
        ("1+2+L4", [1, 2, 4], []),
        ("1, 2; 4 7", [1, 2, 4, 7], []),
        ("L12+R12", [12], []),
        ("R14A+L14", [14], []),
        ("AU4+AU7+AU43", [4, 7], ["AU43"]),
        ("12?", [12], []),
        ("B1+2E", [1, 2], []),
        ("4+foo", [4], ["foo"]),
        ("", [], []),
        ("/", [], []),
        (None, [], []),
        (float("nan"), [], []),
        (12.0, [12], []),
        (45, [45], []),
        (" 25 + 26 ", [25, 26], []),
        ("(4)+L10", [4, 10], []),
    ],
)
def test_parse_aus(cell, known, unknown):
    got_known, got_unknown = parse_aus(cell)
    assert got_known == known
    assert got_unknown == unknown
    vec = au_vector(cell)
    assert vec.dtype == np.float32 and vec.shape == (21,)
    np.testing.assert_array_equal(vec, _vec(known))


def test_vector_positions():
    vec = au_vector("1+45")
    assert vec[0] == 1 and vec[20] == 1 and vec.sum() == 2
    assert au_vector("12")[8] == 1


def test_matrix_counts_unknown_per_cell():
    matrix, unknown = au_matrix(["4+43+43", "?", "12", "L43"])
    np.testing.assert_array_equal(matrix[0], _vec([4]))
    np.testing.assert_array_equal(matrix[2], _vec([12]))
    assert matrix.shape == (4, 21)
    assert unknown == {"43": 1, "?": 1, "L43": 1}
