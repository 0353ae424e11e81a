"""Score intervals (kernels/intervals.py): ALS's posterior against the formula written out,
and ItemKNN's and content's bootstraps against a direct resampling."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_spark.kernels.intervals import (
    Z_95,
    Posterior,
    als_intervals,
    content_intervals,
    itemknn_intervals,
)

RNG = np.random.default_rng(3)
Y = RNG.normal(size=(12, 4))  # 12 items, 4 factors
X = RNG.normal(size=(3, 4))


@pytest.mark.parametrize("engine", ["implicit", "mllib"])
def test_the_als_interval_is_the_score_plus_minus_the_posterior_deviation(engine: str) -> None:
    weights = np.zeros((3, 12))
    weights[0, [0, 3]] = [2.0, 1.0]
    weights[1, [1, 2, 5, 7]] = [1.0, 3.0, 1.0, 2.0]
    posterior = Posterior(alpha=10.0, regularization=0.5, log_scale=False, engine=engine)  # type: ignore[arg-type]
    items = np.array([[4, 6, -1], [0, 3, 11], [-1, -1, -1]])
    scores = np.einsum("uf,unf->un", X, Y[np.maximum(items, 0)])
    low, high = als_intervals(Y, sp.csr_matrix(weights), items, scores, posterior)
    for u in (0, 1):
        bought = weights[u] > 0
        if engine == "implicit":  # implicit: c = alpha w on bought items, 1 elsewhere; lambda as given
            confidence, lam = np.where(bought, 10.0 * weights[u], 1.0), 0.5
        else:  # MLlib: c = 1 + alpha w; lambda times the customer's purchases
            confidence, lam = 1.0 + 10.0 * weights[u], 0.5 * bought.sum()
        covariance = np.linalg.inv(Y.T @ np.diag(confidence) @ Y + lam * np.eye(4))
        for rank, item in enumerate(items[u]):
            if item < 0:
                assert np.isnan(low[u, rank]) and np.isnan(high[u, rank])
                continue
            deviation = np.sqrt(Y[item] @ covariance @ Y[item])
            assert low[u, rank] == pytest.approx(scores[u, rank] - Z_95 * deviation, rel=1e-9)
            assert high[u, rank] == pytest.approx(scores[u, rank] + Z_95 * deviation, rel=1e-9)
    assert np.isnan(low[2]).all()


def test_customers_with_fewer_purchases_get_wider_als_intervals() -> None:
    """Each purchase adds alpha w y y' (>= 0 here) to the precision: nested histories narrow."""
    weights = np.zeros((3, 12))
    weights[0, [0]] = 1.0
    weights[1, [0, 1, 2]] = 1.0
    weights[2, [0, 1, 2, 3, 4, 5, 6]] = 1.0
    items = np.tile(np.arange(7, 12), (3, 1))
    low, high = als_intervals(
        Y, sp.csr_matrix(weights), items, np.zeros((3, 5)), Posterior(40.0, 0.1, False, "implicit")
    )
    width = high - low
    assert (width[0] > width[1]).all() and (width[1] > width[2]).all()


def test_the_itemknn_interval_is_the_bootstrap_percentiles_of_the_history() -> None:
    similarity = sp.csr_matrix(RNG.random((6, 6)))
    history = sp.csr_matrix(np.array([[1.0, 2.0, 0, 0.5, 0, 0], [0, 0, 3.0, 0, 0, 0]]))
    items = np.array([[4, 5], [0, -1]])
    low, high = itemknn_intervals(similarity, history, items, np.array(["c1", "c2"], dtype=object))
    bought, weights = np.array([0, 1, 3]), np.array([1.0, 2.0, 0.5])
    rng = np.random.default_rng(zlib.crc32(b"c1"))
    draws = rng.multinomial(3, [1 / 3] * 3, 200)
    resampled = draws @ (similarity.toarray()[np.ix_(bought, [4, 5])] * weights[:, None])
    np.testing.assert_allclose(low[0], np.percentile(resampled, 2.5, axis=0))
    np.testing.assert_allclose(high[0], np.percentile(resampled, 97.5, axis=0))
    # One bought item: every resample is the history itself, the interval a point.
    score = 3.0 * similarity[2, 0]
    assert low[1, 0] == pytest.approx(score) and high[1, 0] == pytest.approx(score)
    assert np.isnan(low[1, 1]) and np.isnan(high[1, 1])


def test_the_content_interval_is_the_bootstrap_of_the_profile() -> None:
    vectors = RNG.normal(size=(6, 3))
    history = sp.csr_matrix(np.array([[1.0, 0, 2.0, 0, 0, 0], [0, 0, 0, 1.0, 0, 0]]))
    items = np.array([[1, 4], [0, -1]])
    low, high = content_intervals(vectors, history, items, np.array(["c1", "c2"], dtype=object))
    rng = np.random.default_rng(zlib.crc32(b"c1"))
    draws = rng.multinomial(2, [0.5, 0.5], 200)
    profiles = (draws * [1.0, 2.0]) @ vectors[[0, 2]]
    profiles /= np.linalg.norm(profiles, axis=1, keepdims=True)
    resampled = profiles @ vectors[[1, 4]].T
    np.testing.assert_allclose(low[0], np.percentile(resampled, 2.5, axis=0))
    np.testing.assert_allclose(high[0], np.percentile(resampled, 97.5, axis=0))
    # One bought item: the profile is that item's direction, the interval a point.
    cosine = vectors[3] @ vectors[0] / np.linalg.norm(vectors[3])
    assert low[1, 0] == pytest.approx(cosine) and high[1, 0] == pytest.approx(cosine)
