"""Explicit ALS (kernels/als.py, feedback explicit) against MLlib's explicit objective written
out: each half-step solves its rows' weighted-lambda ridge exactly, the objective never rises, and
the vectors carry the bias baseline's after their factors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_spark.kernels import als, bias
from recsys_spark.kernels.factors import FactorModel

RNG = np.random.default_rng(11)
# 30 viewers x 20 films, about a third rated, 1 to 5 stars in halves; one row spans many blocks.
RATED = RNG.random((30, 20)) < 0.35
RATED[:, 0] = RATED[0, :] = True
RATINGS = sp.csr_matrix(np.where(RATED, RNG.integers(2, 11, size=(30, 20)) / 2.0, 0.0))
PARAMS = als.AlsParams(factors=4, regularization=0.1, iterations=1, feedback="explicit")
BASELINE = bias.fit(RATINGS, bias.BiasParams())


def objective(model: FactorModel, regularization: float) -> float:
    """MLlib's explicit ALS-WR objective over the residuals, written out densely."""
    users, items = model.user_factors[:, :4].astype(float), model.item_factors[:, :4].astype(float)
    predicted = model.user_factors.astype(float) @ model.item_factors.T.astype(float)
    errors = np.where(RATED, RATINGS.toarray() - predicted, 0.0)
    shrink = (RATED.sum(axis=1) * (users**2).sum(axis=1)).sum() + (
        RATED.sum(axis=0) * (items**2).sum(axis=1)
    ).sum()
    return float((errors**2).sum() + regularization * shrink)


def test_each_customer_solves_its_weighted_ridge_and_the_objective_falls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(als, "BLOCK_VALUES", 3 * 4)  # blocks of about three ratings: many blocks
    values = []
    for iterations in (1, 2, 4, 8):
        model = als.fit(RATINGS, dataclasses.replace(PARAMS, iterations=iterations), baseline=BASELINE)
        values.append(objective(model, 0.1))
    assert all(later <= earlier + 1e-6 for earlier, later in zip(values, values[1:], strict=False))
    items = model.item_factors[:, :4].astype(float)
    residual = RATINGS.toarray() - BASELINE.user_factors.astype(float) @ BASELINE.item_factors.T
    for u in range(30):  # the last half-step: (Y_u'Y_u + lambda n_u I) x_u = Y_u' r_u, solved directly
        seen = items[RATED[u]]
        lhs = seen.T @ seen + 0.1 * RATED[u].sum() * np.eye(4)
        np.testing.assert_allclose(
            model.user_factors[u, :4], np.linalg.solve(lhs, seen.T @ residual[u, RATED[u]]), atol=1e-5
        )


def test_the_vectors_end_with_the_baseline_so_the_dot_product_predicts_the_rating() -> None:
    model = als.fit(RATINGS, PARAMS, baseline=BASELINE)
    np.testing.assert_array_equal(model.user_factors[:, 4:], BASELINE.user_factors)
    np.testing.assert_array_equal(model.item_factors[:, 4:], BASELINE.item_factors)
    factors_part = model.user_factors[:, :4] @ model.item_factors[:, :4].T
    np.testing.assert_allclose(
        model.user_factors @ model.item_factors.T,
        BASELINE.user_factors @ BASELINE.item_factors.T + factors_part,
        atol=1e-5,
    )


def test_explicit_als_without_a_baseline_is_refused() -> None:
    with pytest.raises(ValueError, match="bias baseline"):
        als.fit(RATINGS, PARAMS)
