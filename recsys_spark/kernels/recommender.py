"""The interface every fitted model implements (numpy/scipy; no Spark).

Each model module has ``fit(user_items, params, ...)`` returning a model with these methods:
``als``, ``bpr`` and ``content`` return a ``FactorModel``, ``itemknn`` an ``ItemKnnModel``,
``popularity`` a ``PopularityModel``. Training, batch scoring and the served model only call
these, so a new model is a new ``fit`` and, at most, a new class with these two methods.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

from recsys_spark.kernels.topn import TopN


@runtime_checkable
class Recommender(Protocol):
    def recommend(
        self,
        users: np.ndarray,
        user_items: sp.csr_matrix,
        n: int,
        exclude_items: np.ndarray | None = None,
        block_rows: int = ...,
    ) -> TopN:
        """Top ``n`` items for ``users`` (row indexes; ``user_items`` holds their rows, whose
        items are excluded), ``exclude_items`` excluded for everyone."""
        ...

    def similar_items(self, items: np.ndarray, n: int) -> TopN:
        """Top ``n`` other items for each of ``items``."""
        ...
