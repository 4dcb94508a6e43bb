"""l2_normalize: the one place vectors become unit-norm float32 rows."""

from __future__ import annotations

import numpy as np
import pytest

from edgemine.models.vectors import l2_normalize


def test_rows_become_unit_norm_float32() -> None:
    raw = np.array([[3.0, 4.0], [0.0, -2.0], [1e-3, 1e-3]], dtype=np.float64)
    out = l2_normalize(raw)
    assert out.dtype == np.float32
    assert out.shape == (3, 2)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(out[0], [0.6, 0.8], atol=1e-6)
    np.testing.assert_allclose(out[1], [0.0, -1.0], atol=1e-6)


def test_input_is_not_modified_and_one_vector_becomes_a_row() -> None:
    raw = np.array([[3.0, 4.0]], dtype=np.float32)
    out = l2_normalize(raw)
    assert raw[0, 0] == 3.0
    assert out is not raw
    single = l2_normalize([0.0, 5.0])
    assert single.shape == (1, 2)
    np.testing.assert_allclose(single, [[0.0, 1.0]])


def test_zero_rows_are_rejected_naming_them() -> None:
    with pytest.raises(ValueError, match=r"all-zero.*\[1, 3\]"):
        l2_normalize([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.0]])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_rejected(bad: float) -> None:
    with pytest.raises(ValueError, match="NaN or infinite"):
        l2_normalize([[1.0, bad], [1.0, 0.0]])


def test_non_2d_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="2-D"):
        l2_normalize(np.ones((2, 2, 2)))
