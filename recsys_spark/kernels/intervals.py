"""How sure a recommendation's score is: a 95% interval around it (numpy/scipy; no Spark).

ALS, from the posterior of the customer's least-squares solve. The customer's factors solve
the ridge regression ``x_u = (Y'C_uY + lambda I)^-1 Y'C_u p_u``; read as a Bayesian linear
model (prior ``x_u ~ N(0, lambda^-1 I)``, each preference ``p_ui`` seen with precision
``c_ui``), the posterior covariance of ``x_u`` is ``(Y'C_uY + lambda I)^-1``, so a score
``x_u . y_i`` has variance ``y_i' (Y'C_uY + lambda I)^-1 y_i`` and its interval is the score
+- 1.96 standard deviations. Every purchase adds to ``Y'C_uY``: a customer with fewer
purchases gets wider intervals. ``C_u`` and ``lambda`` are the engine's own: the `implicit`
library weighs a bought item ``alpha * w`` and the others 1 (``Y'C_uY = Y'Y + sum (alpha w - 1)
y y'``) with ``lambda`` as given; MLlib weighs a bought item ``1 + alpha * w`` and scales
``lambda`` by the customer's purchases (ALS-WR). With explicit ratings ALS is ridge regression
on the rated items' residuals: the posterior covariance is ``sigma^2 (Y_u'Y_u + lambda n_u
I)^-1`` over the fitted part of the vectors, with sigma^2 the mean squared training error.

ItemKNN, UserKNN, content and the graph filter, by a bootstrap over the customer's history:
their scores are functions of the history (ItemKNN: ``sum_i w_i sim(i, j)`` over the bought
items i; UserKNN: the purchases of the K customers nearest the history; content: the cosine of
the item with the normalised weighted sum of the bought items' vectors; the graph filter:
``sum_i fold_i . y_j``); the history is resampled with replacement (seeded by
the customer id, so the batch and the served model agree), each purchase weighted by its draws,
and the interval is the score plus the 2.5th and 97.5th percentiles of the resampled scores'
deviations from their mean.

BPR, by the same bootstrap with the customer re-fitted by one Newton step. BPR's customer vector
maximises ``sum_{i bought} sum_{j not} p_j log sigmoid(x . (y_i - y_j)) - n q reg/2 |x|^2``: the
`implicit` library's SGD draws a bought item i, a negative j with probability p_j (its share of
all purchases; bought ones skipped, q the share left) and shrinks x by reg at each of the
customer's n draws. A resample weighting the purchases c_i moves the optimum by
``H^-1 sum_i (c_i - 1) g_i`` (g_i: purchase i's gradient, H the Hessian, both at the fitted x):
the linearised (one-step) bootstrap, which needs no sampling and no re-training.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy.special import expit

from recsys_spark.kernels.uplift import Z_95
from recsys_spark.kernels.userknn import UserKnnModel

BOOTSTRAP_SAMPLES = 200
POSTERIOR_BLOCK = 256  # customers whose ALS posteriors are solved together
# The factor models with intervals; ItemKNN's and UserKNN's come with their lists.
INTERVAL_MODELS = ("als", "bpr", "graph", "content")


@dataclass(frozen=True)
class Posterior:
    """What ALS was fitted with in one segment (its posterior's ingredients)."""

    alpha: float
    regularization: float
    log_scale: bool  # ALS's own log(1 + w) over the confidence weights
    engine: Literal["implicit", "mllib", "explicit"]  # explicit: ratings, either engine (ALS-WR)
    noise: float = 1.0  # explicit: the ratings' noise variance (ALS's mean squared training error)
    factors: int = 0  # explicit: the vectors' fitted part (the bias baseline's follows, fixed)

    @staticmethod
    def of(settings: dict[str, Any]) -> Posterior:
        return Posterior(
            float(settings["alpha"]),
            float(settings["regularization"]),
            bool(settings["log_scale"]),
            settings["engine"],
            float(settings.get("noise", 1.0)),
            int(settings.get("factors", 0)),
        )


def als_intervals(
    item_factors: np.ndarray,
    history: sp.csr_matrix,
    items: np.ndarray,
    scores: np.ndarray,
    posterior: Posterior,
) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of each score: per row of ``history`` (a customer's confidence weights over
    the catalogue whose ``item_factors`` they are) and each of its ``items`` (catalogue indexes,
    -1: none, NaN out) with ``scores``, the score +- 1.96 posterior standard deviations.
    With explicit ratings only the vectors' fitted part varies, and its posterior covariance is
    the noise variance times ``(Y_u'Y_u + lambda n_u I)^-1`` over the n_u rated items."""
    factors = np.asarray(item_factors, np.float64)
    if posterior.engine == "explicit":
        factors = factors[:, : posterior.factors]
    gram = factors.T @ factors
    spread = np.full(items.shape, np.nan)
    rows = np.flatnonzero((items >= 0).any(axis=1))
    # y' P^-1 y for a block of customers at once: numpy solves stacked systems in one call.
    for start in range(0, len(rows), POSTERIOR_BLOCK):
        block = rows[start : start + POSTERIOR_BLOCK]
        precision = np.stack([_precision(factors, gram, history, row, posterior) for row in block])
        wanted = items[block] >= 0
        targets = factors[np.where(wanted, items[block], 0)].transpose(0, 2, 1)  # (customers, k, n)
        quadratic = (targets * np.linalg.solve(precision, targets)).sum(axis=1)
        spread[block] = np.where(wanted, np.sqrt(posterior.noise * quadratic), np.nan)
    return scores - Z_95 * spread, scores + Z_95 * spread


def _precision(
    factors: np.ndarray, gram: np.ndarray, history: sp.csr_matrix, row: int, posterior: Posterior
) -> np.ndarray:
    """``Y'C_uY + lambda_u I`` of one customer, as the engine that fitted ALS built it."""
    bought = history.indices[history.indptr[row] : history.indptr[row + 1]]
    weights = history.data[history.indptr[row] : history.indptr[row + 1]].astype(np.float64)
    if posterior.log_scale:
        weights = np.log1p(weights)
    seen = factors[bought]
    if posterior.engine == "explicit":  # squared errors on the rated items only
        return seen.T @ seen + posterior.regularization * max(len(bought), 1) * np.eye(len(gram))
    if posterior.engine == "mllib":
        extra, regularization = posterior.alpha * weights, posterior.regularization * max(len(bought), 1)
    else:
        extra, regularization = posterior.alpha * weights - 1.0, posterior.regularization
    return gram + (seen.T * extra) @ seen + regularization * np.eye(len(gram))


def itemknn_intervals(
    similarity: sp.csr_matrix, history: sp.csr_matrix, items: np.ndarray, customers: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """ItemKNN's (low, high) by ``bootstrap_intervals``: a score is ``sum_i w_i sim(i, j)``."""

    def scores(row: int, bought: np.ndarray, weighted: np.ndarray, wanted: np.ndarray) -> np.ndarray:
        return weighted @ similarity[bought][:, wanted].toarray()

    return bootstrap_intervals(history, items, customers, scores)


def content_intervals(
    item_vectors: np.ndarray, history: sp.csr_matrix, items: np.ndarray, customers: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The content model's (low, high) by ``bootstrap_intervals``: a score is the cosine of
    the item's vector and the profile, the L2-normalised weighted sum of the bought items'."""
    vectors = np.asarray(item_vectors, np.float64)

    def scores(row: int, bought: np.ndarray, weighted: np.ndarray, wanted: np.ndarray) -> np.ndarray:
        profiles = weighted @ vectors[bought]
        norms = np.linalg.norm(profiles, axis=1, keepdims=True)
        return np.where(norms > 0, profiles / np.maximum(norms, 1e-300), 0.0) @ vectors[wanted].T

    return bootstrap_intervals(history, items, customers, scores)


def graph_intervals(
    item_factors: np.ndarray,
    fold: np.ndarray,
    history: sp.csr_matrix,
    items: np.ndarray,
    customers: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The graph filter's (low, high) by ``bootstrap_intervals`` over ``history`` (its weights
    read as bought or not): a customer's vector is the sum of the bought items' ``fold`` rows
    (``kernels.graph_filter``), a score its dot product with the item's factors."""
    factors, folded = np.asarray(item_factors, np.float64), np.asarray(fold, np.float64)

    def scores(row: int, bought: np.ndarray, draws: np.ndarray, wanted: np.ndarray) -> np.ndarray:
        return draws @ (folded[bought] @ factors[wanted].T)

    return bootstrap_intervals(_bought(history), items, customers, scores)


def userknn_intervals(
    model: UserKnnModel, history: sp.csr_matrix, items: np.ndarray, customers: np.ndarray, own: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """UserKNN's (low, high) by ``bootstrap_intervals``: each resampled history finds its own K
    nearest customers (``own``: each row's customer in the model, -1: none, never its own
    neighbour), and a score is the similarity-weighted sum of their purchases of the item."""
    by_item = model.bought.tocsc()

    def scores(row: int, bought: np.ndarray, weighted: np.ndarray, wanted: np.ndarray) -> np.ndarray:
        resamples = len(weighted)
        rows = sp.csr_matrix(
            (weighted.ravel(), np.tile(bought, resamples), np.arange(0, weighted.size + 1, len(bought))),
            shape=(resamples, history.shape[1]),
        )
        near, similarity = model.neighbours(rows, np.full(resamples, own[row]))
        passed = by_item[:, wanted].toarray()  # customers x wanted items: what each passes on
        return np.einsum("rk,rkw->rw", similarity, passed[near])

    return bootstrap_intervals(history, items, customers, scores)


def bpr_intervals(
    item_factors: np.ndarray,
    user_factors: np.ndarray,
    history: sp.csr_matrix,
    items: np.ndarray,
    customers: np.ndarray,
    negatives: np.ndarray,
    regularization: float,
) -> tuple[np.ndarray, np.ndarray]:
    """BPR's (low, high) by ``bootstrap_intervals`` with the linearised re-fit: per row of
    ``history`` (bought: > 0) with its ``user_factors`` (`implicit`'s layout: the last item
    column a bias, the user's a fixed 1), each resample's customer is x + H^-1 sum_i (c_i - 1) g_i
    (``bpr_curvature``). ``negatives``: each item's chance to be drawn as the negative."""
    factors, users = np.asarray(item_factors, np.float64), np.asarray(user_factors, np.float64)

    def scores(row: int, bought: np.ndarray, draws: np.ndarray, wanted: np.ndarray) -> np.ndarray:
        hessian, gradients = bpr_curvature(factors, users[row], bought, negatives, regularization)
        moves = scipy.linalg.solve(hessian, ((draws - 1.0) @ gradients).T, assume_a="sym").T
        return (users[row, :-1] + moves) @ factors[wanted, :-1].T + factors[wanted, -1]

    return bootstrap_intervals(_bought(history), items, customers, scores)


def _bought(history: sp.csr_matrix) -> sp.csr_matrix:
    """``history`` as the graph filter and BPR read it, bought or not: a resample's weights
    are then its draws."""
    bought = history.copy()
    bought.data = np.ones_like(bought.data)
    return bought


def bpr_curvature(
    factors: np.ndarray, user: np.ndarray, bought: np.ndarray, negatives: np.ndarray, regularization: float
) -> tuple[np.ndarray, np.ndarray]:
    """(H, G) of one customer's BPR objective at its factors ``user`` (the free ones: all but
    the last): H the Hessian of its negative, G one row per bought item, that purchase's gradient
    (its share of the shrinkage included). ``negatives``: p_j, summing to 1 over the items."""
    free = factors[:, :-1]
    chance = np.asarray(negatives, np.float64).copy()
    chance[bought] = 0.0  # a drawn negative the customer bought is skipped
    shrink = regularization * chance.sum()
    margins = (factors @ user)[bought][:, None] - factors @ user  # bought x items: x . (y_i - y_j)
    pulls = chance * expit(-margins)  # p_j sigmoid(-margin): the log-likelihood's slope
    bends = chance * expit(margins) * expit(-margins)  # p_j sigmoid' (margin): its curvature
    seen = free[bought]
    gradients = pulls.sum(axis=1)[:, None] * seen - pulls @ free - shrink * user[:-1]
    cross = seen.T @ (bends @ free)
    hessian = (
        (seen.T * bends.sum(axis=1)) @ seen - cross - cross.T + (free.T * bends.sum(axis=0)) @ free
    ) + len(bought) * shrink * np.eye(free.shape[1])
    return hessian, gradients


def bootstrap_intervals(
    history: sp.csr_matrix,
    items: np.ndarray,
    customers: np.ndarray,
    scores: Callable[[int, np.ndarray, np.ndarray, np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) per row of ``history`` (weights over the catalogue) and each of its
    ``items`` (-1: none, NaN out): the score plus the 2.5th and 97.5th percentiles of the
    resampled scores' deviations from their mean, over ``BOOTSTRAP_SAMPLES`` resamples of the
    history with replacement seeded by ``customers``' ids. Centred on the score because a
    resample holds about 63% of the distinct purchases: a score that is not linear in them
    (UserKNN's nearest customers, content's normalised profile) is lower on most resamples, and
    the plain percentiles would leave the top items' scores above their intervals.
    ``scores(row, bought, weighted, wanted)``: the scores of the ``wanted`` items (columns) for
    each row of ``weighted`` (each bought item's weight times its draws; the first row: the
    history itself)."""
    low, high = np.full(items.shape, np.nan), np.full(items.shape, np.nan)
    for row in range(history.shape[0]):
        wanted = items[row] >= 0
        start, stop = history.indptr[row], history.indptr[row + 1]
        if not wanted.any() or start == stop:
            continue
        bought, weights = history.indices[start:stop], history.data[start:stop].astype(np.float64)
        rng = np.random.default_rng(zlib.crc32(str(customers[row]).encode()))
        draws = rng.multinomial(len(bought), np.full(len(bought), 1.0 / len(bought)), BOOTSTRAP_SAMPLES)
        both = scores(row, bought, np.vstack([weights, draws * weights]), items[row][wanted])
        score, resampled = both[0], both[1:]
        spread = np.percentile(resampled, [2.5, 97.5], axis=0) - resampled.mean(axis=0)
        low[row, wanted], high[row, wanted] = score + spread
    return low, high
