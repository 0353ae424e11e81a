"""The bias baseline for explicit ratings: global mean + item bias + customer bias (Koren,
"Factor in the Neighbors", TKDD 2010, section 2.1). numpy/scipy only; no Spark.

The biases are damped means of the residuals, item biases first:

    b_i = sum_u (r_ui - mu) / (item_regularization + n_i)
    b_u = sum_i (r_ui - mu - b_i) / (user_regularization + n_u)

so an item rated by few customers stays near the global mean. The prediction
mu + b_u + b_i is the dot product of customer [1, mu + b_u] and item [b_i, 1]: a rank-2 factor
model, scored, stored and served as the other factor models are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsys_spark.kernels.factors import FactorModel


@dataclass(frozen=True)
class BiasParams:
    item_regularization: float = 25.0  # ratings' weight an item bias is shrunk with (Koren: 25)
    user_regularization: float = 10.0  # and a customer bias (Koren: 10)


def fit(ratings: sp.csr_matrix, params: BiasParams) -> FactorModel:
    """The biases of the users x items ``ratings`` (each stored entry is a rating)."""
    ratings = sp.csr_matrix(ratings, dtype=np.float64)
    if ratings.nnz == 0:
        raise ValueError("no ratings to fit the bias baseline on")
    mean = float(ratings.data.mean())
    rated = ratings.copy()
    rated.data = np.ones_like(rated.data)
    residual = ratings.copy()
    residual.data = residual.data - mean
    item_bias = _damped_sums(residual.T.tocsr(), rated.T.tocsr(), params.item_regularization)
    residual.data = residual.data - item_bias[residual.indices]
    user_bias = _damped_sums(residual, rated, params.user_regularization)
    users = np.column_stack([np.ones_like(user_bias), mean + user_bias])
    items = np.column_stack([item_bias, np.ones_like(item_bias)])
    return FactorModel(users.astype(np.float32), items.astype(np.float32))


def _damped_sums(values: sp.csr_matrix, counts: sp.csr_matrix, regularization: float) -> np.ndarray:
    """Per row: the sum of ``values`` over (``regularization`` + the row's entries)."""
    sums = np.asarray(values.sum(axis=1)).ravel()
    entries = np.asarray(counts.sum(axis=1)).ravel()
    return sums / (regularization + entries)
