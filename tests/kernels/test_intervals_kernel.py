"""Score intervals (kernels/intervals.py): ALS's posterior against the formula written out,
ItemKNN's, UserKNN's, content's and the graph filter's bootstraps against a direct resampling, and BPR's
linearised re-fit against BPR's objective written out and optimised directly."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp

from recsys_spark.kernels import userknn
from recsys_spark.kernels.intervals import (
    Z_95,
    Posterior,
    als_intervals,
    bpr_curvature,
    bpr_intervals,
    content_intervals,
    graph_intervals,
    itemknn_intervals,
    userknn_intervals,
)

RNG = np.random.default_rng(3)


def centred(score: np.ndarray, resampled: np.ndarray) -> np.ndarray:
    """The score plus the 2.5th and 97.5th percentiles of the resampled scores' deviations
    from their mean: rows low, high."""
    resampled = np.asarray(resampled)
    return score + np.percentile(resampled, [2.5, 97.5], axis=0) - resampled.mean(axis=0)


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


def test_the_itemknn_interval_is_the_bootstrap_of_the_history_around_the_score() -> None:
    similarity = sp.csr_matrix(RNG.random((6, 6)))
    history = sp.csr_matrix(np.array([[1.0, 2.0, 0, 0.5, 0, 0], [0, 0, 3.0, 0, 0, 0]]))
    items = np.array([[4, 5], [0, -1]])
    low, high = itemknn_intervals(similarity, history, items, np.array(["c1", "c2"], dtype=object))
    bought, weights = np.array([0, 1, 3]), np.array([1.0, 2.0, 0.5])
    rng = np.random.default_rng(zlib.crc32(b"c1"))
    draws = rng.multinomial(3, [1 / 3] * 3, 200)
    contributions = similarity.toarray()[np.ix_(bought, [4, 5])] * weights[:, None]
    np.testing.assert_allclose([low[0], high[0]], centred(contributions.sum(axis=0), draws @ contributions))
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
    profile = [1.0, 2.0] @ vectors[[0, 2]]
    score = profile / np.linalg.norm(profile) @ vectors[[1, 4]].T
    np.testing.assert_allclose([low[0], high[0]], centred(score, resampled))
    # One bought item: the profile is that item's direction, the interval a point.
    cosine = vectors[3] @ vectors[0] / np.linalg.norm(vectors[3])
    assert low[1, 0] == pytest.approx(cosine) and high[1, 0] == pytest.approx(cosine)


def test_the_graph_interval_is_the_bootstrap_of_the_folded_history() -> None:
    """The graph filter's customer is the sum of the bought items' fold rows: each resample
    counts an item as often as it is drawn."""
    fold, factors = RNG.normal(size=(6, 3)), RNG.normal(size=(6, 3))
    history = sp.csr_matrix(np.array([[1.0, 0, 1.0, 0, 1.0, 0], [0, 1.0, 0, 0, 0, 0]]))
    items = np.array([[1, 3], [0, -1]])
    low, high = graph_intervals(factors, fold, history, items, np.array(["c1", "c2"], dtype=object))
    rng = np.random.default_rng(zlib.crc32(b"c1"))
    draws = rng.multinomial(3, [1 / 3] * 3, 200)
    resampled = (draws @ fold[[0, 2, 4]]) @ factors[[1, 3]].T
    score = fold[[0, 2, 4]].sum(axis=0) @ factors[[1, 3]].T
    np.testing.assert_allclose([low[0], high[0]], centred(score, resampled))
    score = fold[1] @ factors[0]
    assert low[1, 0] == pytest.approx(score) and high[1, 0] == pytest.approx(score)
    # Confidence weights read as bought or not, as the filter's graph does.
    weighted = graph_intervals(factors, fold, history * 3.0, items, np.array(["c1", "c2"], dtype=object))
    np.testing.assert_array_equal(weighted[0], low)
    np.testing.assert_array_equal(weighted[1], high)


# BPR in `implicit`'s layout: 8 items of 3 factors and a bias; a customer's last factor is 1.
BPR_ITEMS = np.hstack([RNG.normal(size=(8, 3)), RNG.normal(scale=0.3, size=(8, 1))])
SHARES = RNG.random(8) + 0.2
SHARES /= SHARES.sum()
BOUGHT = np.array([1, 4, 6])


def bpr_objective(free: np.ndarray, counts: np.ndarray, reg: float) -> float:
    """BPR's objective for one customer, written out: each purchase i (counted ``counts[i]``
    times) against every item j not bought, drawn with chance p_j, less the shrinkage."""
    user = np.append(free, 1.0)
    others = np.setdiff1d(np.arange(8), BOUGHT)
    margins = (BPR_ITEMS[BOUGHT] @ user)[:, None] - BPR_ITEMS[others] @ user
    likelihood = (counts[:, None] * SHARES[others] * np.log(1 / (1 + np.exp(-margins)))).sum()
    return likelihood - counts.sum() * reg * SHARES[others].sum() / 2 * free @ free


def test_bpr_curvature_is_the_gradient_and_hessian_of_its_objective() -> None:
    user = np.append(RNG.normal(size=3), 1.0)
    hessian, gradients = bpr_curvature(BPR_ITEMS, user, BOUGHT, SHARES, 0.05)
    ones = np.ones(3)
    step = 1e-5
    numeric_gradient = scipy.optimize.approx_fprime(user[:3], bpr_objective, step, ones, 0.05)
    np.testing.assert_allclose(gradients.sum(axis=0), numeric_gradient, rtol=1e-4, atol=1e-6)
    for a in range(3):  # each purchase's own gradient: its count's derivative of the slope
        counts = np.eye(3)[a]
        own = scipy.optimize.approx_fprime(user[:3], bpr_objective, step, counts, 0.05)
        np.testing.assert_allclose(gradients[a], own, rtol=1e-4, atol=1e-6)
    numeric_hessian = np.array(
        [
            (
                scipy.optimize.approx_fprime(user[:3] + step * e, bpr_objective, step, ones, 0.05)
                - scipy.optimize.approx_fprime(user[:3] - step * e, bpr_objective, step, ones, 0.05)
            )
            / (2 * step)
            for e in np.eye(3)
        ]
    )
    np.testing.assert_allclose(hessian, -numeric_hessian, rtol=1e-3, atol=1e-4)


def test_the_bpr_interval_re_fits_each_resample_by_one_newton_step() -> None:
    """At the optimum of the objective, each resample's customer is the linearised re-fit: close
    to the resampled objective optimised outright, and the scores' percentiles are its."""
    fitted = scipy.optimize.minimize(lambda x: -bpr_objective(x, np.ones(3), 0.05), np.zeros(3)).x
    user = np.append(fitted, 1.0)
    history = sp.csr_matrix(np.isin(np.arange(8), BOUGHT).astype(float)[None, :])
    items = np.array([[0, 2, 7]])
    low, high = bpr_intervals(
        BPR_ITEMS, user[None, :], history, items, np.array(["c1"], dtype=object), SHARES, 0.05
    )
    hessian, gradients = bpr_curvature(BPR_ITEMS, user, BOUGHT, SHARES, 0.05)
    draws = np.random.default_rng(zlib.crc32(b"c1")).multinomial(3, [1 / 3] * 3, 200)
    moved = fitted + np.linalg.solve(hessian, ((draws - 1.0) @ gradients).T).T
    resampled = moved @ BPR_ITEMS[[0, 2, 7], :3].T + BPR_ITEMS[[0, 2, 7], 3]
    score = user @ BPR_ITEMS[[0, 2, 7]].T
    np.testing.assert_allclose([low[0], high[0]], centred(score, resampled), rtol=1e-9)
    assert ((low[0] < user @ BPR_ITEMS[[0, 2, 7]].T) & (user @ BPR_ITEMS[[0, 2, 7]].T < high[0])).all()
    # The re-fit is first-order exact: weighting one purchase 1 + e, its error shrinks as e^2.
    errors = []
    for e in (0.2, 0.1):
        counts = np.array([1.0, 1.0, 1.0 + e])
        refit = scipy.optimize.minimize(lambda x, c=counts: -bpr_objective(x, c, 0.05), fitted, tol=1e-12).x
        step = np.linalg.solve(hessian, (counts - 1.0) @ gradients)
        errors.append(np.linalg.norm(fitted + step - refit))
        assert errors[-1] < 0.1 * np.linalg.norm(step)
    assert errors[1] < errors[0] / 3


def test_the_userknn_interval_finds_the_neighbours_of_each_resample() -> None:
    """Cosine, K = 3: each resampled history is compared with every customer but itself, and
    its score of an item is the similarity-weighted purchases of its three nearest."""
    bought = sp.csr_matrix(np.where(RNG.random((9, 7)) < 0.5, RNG.random((9, 7)) + 0.5, 0.0))
    model = userknn.fit(
        np.array([f"k{i}" for i in range(9)], dtype=object), bought, userknn.UserKnnParams("cosine", 3)
    )
    history = sp.csr_matrix(bought[[4]].toarray() + np.eye(7)[[0]] * 0.7)  # customer k4, one line more
    items = np.array([[1, 5]])
    low, high = userknn_intervals(model, history, items, np.array(["k4"], dtype=object), np.array([4]))
    start, stop = history.indptr[0], history.indptr[1]
    kept, weights = history.indices[start:stop], history.data[start:stop]
    rng = np.random.default_rng(zlib.crc32(b"k4"))
    draws = rng.multinomial(len(kept), np.full(len(kept), 1 / len(kept)), 200)
    dense, resampled = bought.toarray(), []
    for counts in np.vstack([np.ones(len(kept)), draws]):  # the history itself, then each resample
        row = np.zeros(7)
        row[kept] = counts * weights
        similarity = dense @ row / np.linalg.norm(dense, axis=1) / np.linalg.norm(row)
        similarity[4] = 0.0  # never its own neighbour
        near = np.argsort(-similarity)[:3]
        resampled.append(np.maximum(similarity[near], 0) @ dense[near][:, [1, 5]])
    np.testing.assert_allclose([low[0], high[0]], centred(resampled[0], resampled[1:]), rtol=1e-6)
    assert (low[0] <= resampled[0]).all() and (resampled[0] <= high[0]).all()


def test_the_explicit_als_interval_is_the_ridge_posterior_of_the_rated_items() -> None:
    """Explicit ALS solves (Y_u'Y_u + lambda n_u I) x = Y_u' r over the n_u rated items: the
    posterior of the vectors' fitted part (the first f; the bias baseline's follow, fixed) is
    sigma^2 (Y_u'Y_u + lambda n_u I)^-1, whatever the ratings' values."""
    vectors = np.hstack([Y, RNG.normal(size=(12, 2))])  # 4 fitted components, then the baseline's
    ratings = np.zeros((2, 12))
    ratings[0, [0, 3, 5]] = [4.0, 2.5, 5.0]
    ratings[1, [1, 2, 4, 6, 8, 9, 10]] = 3.0
    posterior = Posterior(0.0, 0.2, False, "explicit", noise=0.7, factors=4)
    items = np.array([[7, 11], [0, 3]])
    scores = np.zeros((2, 2))
    low, high = als_intervals(vectors, sp.csr_matrix(ratings), items, scores, posterior)
    for u in (0, 1):
        rated = ratings[u] > 0
        covariance = 0.7 * np.linalg.inv(Y[rated].T @ Y[rated] + 0.2 * rated.sum() * np.eye(4))
        deviation = np.sqrt(np.einsum("if,fg,ig->i", Y[items[u]], covariance, Y[items[u]]))
        np.testing.assert_allclose(high[u], Z_95 * deviation, rtol=1e-9)
        np.testing.assert_allclose(low[u], -Z_95 * deviation, rtol=1e-9)
    width = high - low
    assert width[0].mean() > width[1].mean()  # three ratings against seven
