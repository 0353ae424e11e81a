"""Popularity: an item's score is how many users bought it, optionally decayed by recency.

With a half-life h, a user's purchase of an item counts 0.5 ** (age_days / h), where age_days is
the time since their latest purchase of it; without one every buyer counts 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsys_spark.kernels.routing import GLOBAL_SEGMENT
from recsys_spark.kernels.topn import DEFAULT_BLOCK_ROWS, TopN, self_mask, top_matches


def has_own_list(segment: str, users: int, items: int, min_users: int, min_items: int) -> bool:
    """Whether ``segment`` is served its own best sellers: the overall segment always, another
    when it is big enough to train (models.min_segment_users / min_segment_items); the customers
    of a smaller one get overall popularity. Batch lists, the top-up and the served model ask here."""
    return segment == GLOBAL_SEGMENT or (users >= min_users and items >= min_items)


@dataclass(frozen=True)
class PopularityParams:
    half_life_days: float | None = None


@dataclass(frozen=True)
class PopularityModel:
    item_scores: np.ndarray  # float32, one per item

    def recommend(
        self,
        users: np.ndarray,
        user_items: sp.csr_matrix,
        n: int,
        exclude_items: np.ndarray | None = None,
        block_rows: int = DEFAULT_BLOCK_ROWS,
    ) -> TopN:
        """The most popular items each user has not bought (a rank-1 factor model: user = [1])."""
        ones = np.ones((user_items.shape[0], 1), np.float32)
        return top_matches(ones, self.item_scores[:, None], n, user_items, exclude_items, block_rows)

    def similar_items(self, items: np.ndarray, n: int) -> TopN:
        """The most popular other items (the baseline for any item-to-item list)."""
        mask = self_mask(items, len(self.item_scores))
        return top_matches(np.ones((len(items), 1), np.float32), self.item_scores[:, None], n, mask)


def fit(
    user_items: sp.csr_matrix, params: PopularityParams, ages_days: sp.csr_matrix | None = None
) -> PopularityModel:
    """Item scores from the users × items matrix; ``ages_days`` (same pattern) is needed with a half-life."""
    if params.half_life_days is None:
        counted = user_items.copy()
        counted.data = np.ones_like(counted.data)
    else:
        if ages_days is None or ages_days.nnz != user_items.nnz:
            raise ValueError("popularity with a half-life needs the age in days of every user × item pair")
        counted = ages_days.copy()
        counted.data = np.power(0.5, counted.data / params.half_life_days)
    return PopularityModel(np.asarray(counted.sum(axis=0), dtype=np.float32).ravel())
