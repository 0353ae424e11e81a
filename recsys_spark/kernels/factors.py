"""A factor model (ALS, BPR, content): users and items as vectors, scores as dot products."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsys_spark.kernels.topn import DEFAULT_BLOCK_ROWS, TopN, normalize_rows, self_mask, top_matches

# The models whose fit returns a FactorModel.
FACTOR_MODELS = ("als", "bpr", "graph", "content", "bias")
# Those whose vectors place customers and items by taste (audiences, lookalikes, a cart's
# neighbours, vector stores); the bias baseline's two numbers do not.
EMBEDDING_MODELS = tuple(m for m in FACTOR_MODELS if m != "bias")


@dataclass(frozen=True)
class FactorModel:
    user_factors: np.ndarray  # float32 users × f
    item_factors: np.ndarray  # float32 items × f
    # float32 items × f where a user's factors are their purchases (0/1) times it (graph)
    fold: np.ndarray | None = None

    def recommend(
        self,
        users: np.ndarray,
        user_items: sp.csr_matrix,
        n: int,
        exclude_items: np.ndarray | None = None,
        block_rows: int = DEFAULT_BLOCK_ROWS,
        threads: int = 1,
    ) -> TopN:
        """Top ``n`` items for each of ``users`` (row indexes); ``user_items`` holds their rows
        (their bought items are excluded), ``exclude_items`` is excluded for everyone."""
        return top_matches(
            self.user_factors[users], self.item_factors, n, user_items, exclude_items, block_rows, threads
        )

    def similar_items(self, items: np.ndarray, n: int) -> TopN:
        """Top ``n`` other items by cosine of the item factors."""
        vectors = normalize_rows(self.item_factors)
        return top_matches(vectors[items], vectors, n, self_mask(items, len(vectors)))

    def similar_users(self, users: np.ndarray, n: int) -> TopN:
        """Top ``n`` other users by cosine of the user factors (lookalikes)."""
        vectors = normalize_rows(self.user_factors)
        return top_matches(vectors[users], vectors, n, self_mask(users, len(vectors)))

    def audience(self, items: np.ndarray, item_users: sp.csr_matrix, n: int) -> TopN:
        """Top ``n`` users for each of ``items`` among those who have not bought it
        (``item_users``: the items' rows of the transposed matrix)."""
        return top_matches(self.item_factors[items], self.user_factors, n, item_users)
