"""Label value types: chosen from the largest value, not the number of labels."""

from __future__ import annotations

import numpy as np
import pytest

from carina.core.labels import label_dtype


@pytest.mark.parametrize(
    ("top", "dtype"),
    [(0, np.uint8), (255, np.uint8), (256, np.uint16), (65535, np.uint16), (65536, np.int32)],
)
def test_label_dtype_holds_the_largest_value(top: int, dtype: type) -> None:
    assert label_dtype(top) is dtype
    assert np.array([top], dtype=label_dtype(top))[0] == top
