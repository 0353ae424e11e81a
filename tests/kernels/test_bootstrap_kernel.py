"""Bootstrap intervals from resampling weights (kernels.bootstrap), by hand."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_spark.kernels.bootstrap import interval


def test_a_constant_metric_has_a_point_interval_and_empty_resamples_are_left_out() -> None:
    weights = np.array([[1, 0, 2], [0, 0, 1]])  # 2 customers x 3 samples; sample 1 drew nobody
    low, high = interval(weights, np.array([[0.5], [0.5]]))
    assert low[0] == pytest.approx(0.5) and high[0] == pytest.approx(0.5)


def test_resampled_means_are_weighted_and_read_off_linearly() -> None:
    # Sample means: (1*0 + 0*1)/1 = 0, (0*0 + 1*1)/1 = 1, (1*0 + 1*1)/2 = 0.5.
    weights = np.array([[1, 0, 1], [0, 1, 1]])
    low, high = interval(weights, np.array([[0.0], [1.0]]), level=0.5)
    assert low[0] == pytest.approx(0.25) and high[0] == pytest.approx(0.75)  # 25th, 75th of 0, .5, 1
