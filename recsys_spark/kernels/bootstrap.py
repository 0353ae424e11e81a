"""Bootstrap confidence intervals of means from per-customer resampling weights (numpy only).

The weights (how often each customer counts in each resample) are drawn elsewhere; here every
resample's weighted mean of every metric is one matrix product, and the interval is read off
their percentiles.
"""

from __future__ import annotations

import numpy as np


def interval(weights: np.ndarray, values: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) per metric: the ``level`` percentile interval of the resampled means.

    ``weights``: customers × samples (counts); ``values``: customers × metrics. A resample that
    drew nobody has no mean and is left out. Percentiles interpolate linearly, as Spark's
    ``percentile`` does.
    """
    weights = np.asarray(weights, np.float64)
    totals = weights.sum(axis=0)
    sums = weights.T @ np.nan_to_num(np.asarray(values, np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(totals[:, None] > 0, sums / totals[:, None], np.nan)
    tail = (1 - level) / 2
    low, high = np.nanpercentile(means, [100 * tail, 100 * (1 - tail)], axis=0)
    return low, high
