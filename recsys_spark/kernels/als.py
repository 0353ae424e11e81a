"""ALS behind one name: implicit feedback (Hu, Koren, Volinsky 2008) through the `implicit`
library's CPU solver; explicit ratings by a numpy solver of MLlib's explicit objective.

Explicit ratings are factorized as biased matrix factorization (Koren, Bell, Volinsky 2009): ALS
fits what the bias baseline (``kernels.bias``) leaves of each rating, minimising, as Spark MLlib's
ALS with implicitPrefs off does (ALS-WR, Zhou et al. 2008),

    sum over rated (u, i) of (r_ui - baseline_ui - x_u . y_i)^2
        + lambda (sum_u n_u |x_u|^2 + sum_i n_i |y_i|^2)

items first, then customers, from unit-length Gaussian starts. Each vector carries its baseline
vector after its factors, so the dot product predicts baseline + x_u . y_i. Segments above
``models.mllib_min_pairs`` ratings run the same objective on MLlib
(``distributed.training.train_mllib_als``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from recsys_spark.kernels.factors import FactorModel


@dataclass(frozen=True)
class AlsParams:
    factors: int = 64
    regularization: float = 0.05
    iterations: int = 15
    alpha: float = 40.0  # a bought item's confidence: alpha × weight (implicit's; unbought items 1)
    seed: int = 42
    log_scale: bool = False  # weight -> log(1 + weight) for ALS alone (tuning may choose it)
    feedback: Literal["implicit", "explicit"] = "implicit"  # explicit: ratings (fit_explicit; MLlib if big)


BLOCK_VALUES = 1 << 22  # float64 values of a block of padded rows held at once (32 MiB)


def fit(
    user_items: sp.csr_matrix, params: AlsParams, threads: int = 1, baseline: FactorModel | None = None
) -> FactorModel:
    """Factorize the users × items weights (with explicit feedback: the ratings less the
    ``baseline``'s predictions); ``threads`` is the implicit solver's OpenMP thread count."""
    if params.feedback == "explicit":
        if baseline is None:
            raise ValueError("explicit ALS factorizes what the bias baseline leaves: it needs the baseline")
        return fit_explicit(user_items, params, baseline)
    # The solver parallelises over users itself; BLAS threads inside it only contend.
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=params.factors,
            regularization=params.regularization,
            alpha=params.alpha,
            iterations=params.iterations,
            random_state=params.seed,
            num_threads=threads,
        )
        weights = user_items.log1p() if params.log_scale else user_items
        model.fit(weights.astype(np.float32), show_progress=False)
    return FactorModel(np.asarray(model.user_factors), np.asarray(model.item_factors))


def fit_explicit(ratings: sp.csr_matrix, params: AlsParams, baseline: FactorModel) -> FactorModel:
    """Explicit ALS over the residuals of ``baseline`` (a FactorModel of the same users and
    items), each vector followed by its baseline vector."""
    ratings = sp.csr_matrix(ratings, dtype=np.float64)
    rows = np.repeat(np.arange(ratings.shape[0]), np.diff(ratings.indptr))
    base_users = np.asarray(baseline.user_factors, np.float64)
    base_items = np.asarray(baseline.item_factors, np.float64)
    predicted = np.einsum("nf,nf->n", base_users[rows], base_items[ratings.indices])
    residuals = sp.csr_matrix((ratings.data - predicted, ratings.indices, ratings.indptr), ratings.shape)
    by_item = residuals.T.tocsr()
    rng = np.random.default_rng(params.seed)
    users = _unit_rows(rng.normal(size=(ratings.shape[0], params.factors)))
    items = _unit_rows(rng.normal(size=(ratings.shape[1], params.factors)))
    for _ in range(params.iterations):
        items = _ridge_rows(by_item, users, params.regularization)
        users = _ridge_rows(residuals, items, params.regularization)
    return FactorModel(
        np.hstack([users, base_users]).astype(np.float32), np.hstack([items, base_items]).astype(np.float32)
    )


def _ridge_rows(targets: sp.csr_matrix, other: np.ndarray, regularization: float) -> np.ndarray:
    """Per row of ``targets``: argmin_x sum_j (t_j - x . o_j)^2 + regularization n |x|^2 over
    its n entries j (0 without entries). Rows are taken in order of their entry counts, in
    blocks padded to their longest row (at most ``BLOCK_VALUES`` values), so that each block's
    Gram matrices are one batched matrix product."""
    factors = other.shape[1]
    counts = np.diff(targets.indptr)
    solved = np.zeros((targets.shape[0], factors))
    order = np.argsort(counts, kind="stable")
    order = order[counts[order] > 0]
    start = 0
    while start < len(order):
        padded_sizes = np.arange(1, len(order) - start + 1) * counts[order[start:]] * factors
        stop = start + max(1, int(np.searchsorted(padded_sizes, BLOCK_VALUES, side="right")))
        rows = order[start:stop]
        seen, values = _padded(targets, rows, other)
        gram = np.matmul(seen.transpose(0, 2, 1), seen)
        gram += regularization * counts[rows][:, None, None] * np.eye(factors)
        rhs = np.matmul(seen.transpose(0, 2, 1), values[:, :, None])
        solved[rows] = np.linalg.solve(gram, rhs)[:, :, 0]
        start = stop
    return solved


def _padded(targets: sp.csr_matrix, rows: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows x longest x f: each row's entries' ``other`` vectors, rows x longest: their values),
    zero-padded: padding adds nothing to a Gram matrix or a right-hand side."""
    lengths = np.diff(targets.indptr)[rows]
    position = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    source = np.repeat(targets.indptr[rows], lengths) + position
    block = np.repeat(np.arange(len(rows)), lengths)
    seen = np.zeros((len(rows), lengths.max(), other.shape[1]))
    values = np.zeros((len(rows), lengths.max()))
    seen[block, position] = other[targets.indices[source]]
    values[block, position] = targets.data[source]
    return seen, values


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
