"""Hyperparameter search for one segment: seeded random trials over a small grid, each fitted on
the fit part and scored by NDCG@k on the validation part (both carved from the training period).

Trial 0 is always the values conf gives, so the search can only keep or improve on them as
measured on validation; ties keep the earlier trial, so conf's values win a tie.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys_spark.kernels import als, bpr, itemknn
from recsys_spark.kernels.recommender import Recommender
from recsys_spark.kernels.topn import TopN

# The values searched per model and parameter: the ranges the libraries' authors and the
# literature use for implicit feedback (ALS's α from 1 for log-scaled counts to 40 for raw ones).
SEARCH_SPACE: dict[str, dict[str, tuple[Any, ...]]] = {
    "als": {
        "factors": (32, 64, 128),
        "regularization": (0.01, 0.05, 0.1, 0.5, 1.0),
        "alpha": (1.0, 5.0, 10.0, 20.0, 40.0),
        "log_scale": (False, True),
    },
    "bpr": {
        "factors": (32, 64, 128),
        "learning_rate": (0.005, 0.01, 0.05),
        "regularization": (0.001, 0.01, 0.1),
    },
    "itemknn": {
        "similarity": ("bm25", "tfidf", "cosine"),
        "neighbours": (20, 50, 100, 200),
    },
}
# The hybrid's weight of each source it blends (each source's scores are scaled to [0, 1]
# first, so only the ratios matter); 0 drops a source, but never every source at once.
HYBRID_WEIGHTS: tuple[float, ...] = (0.0, 0.3, 1.0, 3.0)
FITS: dict[str, Callable[[sp.csr_matrix, Any, int], Recommender]] = {
    "als": als.fit,
    "bpr": bpr.fit,
    "itemknn": itemknn.fit,
}


@dataclass(frozen=True)
class Trial:
    model: str
    trial: int  # 0: conf's values
    params: dict[str, Any]  # the searched parameters' values
    ndcg: float  # mean NDCG@k over the validation customers
    seconds: float


def trial_points(
    model: str, defaults: Mapping[str, Any], trials: int, seed: int, fixed: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Up to ``trials`` distinct points of ``model``'s grid: conf's values (``defaults``) first,
    then a seeded random sample of the rest. ``fixed`` names parameters that are not searched
    (they keep conf's value)."""
    space = {name: values for name, values in SEARCH_SPACE[model].items() if name not in fixed}
    return _sampled(space, {name: defaults[name] for name in space}, trials, seed)


def hybrid_points(weights: Mapping[str, float], trials: int, seed: int) -> list[dict[str, float]]:
    """Up to ``trials`` weightings of the hybrid's sources (those conf weighs above 0): conf's
    weights first, then a seeded sample of ``HYBRID_WEIGHTS`` per source, never all zero."""
    sources = sorted(s for s, w in weights.items() if w > 0)
    space = {source: HYBRID_WEIGHTS for source in sources}
    points = _sampled(space, {s: weights[s] for s in sources}, trials + 1, seed)
    return [p for p in points if any(p.values())][: max(0, trials)]


def _sampled(
    space: Mapping[str, Sequence[Any]], first: dict[str, Any], trials: int, seed: int
) -> list[dict[str, Any]]:
    grid = [dict(zip(space, values, strict=True)) for values in product(*space.values())]
    rest = [point for point in grid if point != first]
    random.Random(seed).shuffle(rest)
    return [first, *rest][: max(0, trials)]


def ndcg_at_k(top: TopN, relevant: Sequence[np.ndarray], k: int) -> np.ndarray:
    """Per row: NDCG@k of ``top``'s items against the ``relevant`` item indexes (binary
    relevance, the ideal putting min(|relevant|, k) hits first), as evaluate measures it."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    values = np.zeros(len(relevant))
    for row, items in enumerate(relevant):
        if not len(items):
            continue
        hits = np.isin(top.indices[row, :k], items)
        values[row] = (hits * discounts[: hits.size]).sum() / discounts[: min(len(items), k)].sum()
    return values


def search(
    model: str,
    fit_part: sp.csr_matrix,
    users: np.ndarray,
    relevant: Sequence[np.ndarray],
    points: Sequence[Mapping[str, Any]],
    defaults: Any,
    k: int,
    threads: int = 1,
) -> list[Trial]:
    """Fit ``model`` at each of ``points`` (over ``defaults``) on ``fit_part`` and score the
    validation customers (``users``, row indexes) against their ``relevant`` items."""
    trials = []
    for number, point in enumerate(points):
        start = time.perf_counter()
        fitted = FITS[model](fit_part, dataclasses.replace(defaults, **point), threads)
        top = fitted.recommend(users, fit_part[users], k)
        value = float(ndcg_at_k(top, relevant, k).mean()) if len(users) else float("nan")
        trials.append(Trial(model, number, dict(point), value, time.perf_counter() - start))
    return trials


def best_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """Of trial rows (segment, model, trial, ndcg, ...), per segment and model the one with the
    highest NDCG; the earliest among equals, so conf's values (trial 0) win a tie."""
    ranked = trials.assign(order=-trials.trial).sort_values(["ndcg", "order"], ascending=False)
    return ranked.groupby(["segment", "model"], sort=True).head(1).drop(columns="order")


def chosen_values(rows: pd.DataFrame, column: str = "params") -> dict[str, dict[str, dict]]:
    """Segment -> model -> values, from rows whose ``column`` holds the values as JSON (the best
    trials' ``params``, or silver.model_settings' ``tuned``)."""
    values: dict[str, dict[str, dict]] = {}
    for segment, model, text in rows[["segment", "model", column]].itertuples(index=False):
        values.setdefault(segment, {})[model] = json.loads(text)
    return values
