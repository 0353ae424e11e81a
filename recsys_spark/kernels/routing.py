"""Cold-start routing: which list a customer gets, decided in this one place (numpy only).

The batch scoring (through a pandas UDF) and the served pyfunc both call ``routes``.
"""

from __future__ import annotations

import numpy as np

# The segment of every customer: overall popularity, rules mined over all baskets, metrics over
# everyone, and the one segment of data without a segment column.
GLOBAL_SEGMENT = "all"

POPULARITY = "popularity"  # no history: the segment's popularity
SHORT_HISTORY = "short_history"  # a few orders: the hybrid, weighted towards content and rules
CHAMPION = "champion"  # everyone else: the published model


def routes(orders: np.ndarray, short_history_orders: int) -> np.ndarray:
    """One route per customer from their number of orders (NaN or 0: no history). Customers with
    fewer than ``short_history_orders`` orders take the short-history route; 0 turns it off."""
    orders = np.nan_to_num(np.asarray(orders, dtype=np.float64), nan=0.0)
    return np.where(
        orders <= 0, POPULARITY, np.where(orders < short_history_orders, SHORT_HISTORY, CHAMPION)
    ).astype(object)
