"""Ranking metrics of lists, worked out by hand, and equal to the definitions on random lists."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys_spark.kernels.metrics import USER_METRIC_COLUMNS, rating_errors, user_metrics

LOG2 = math.log2
LIST_COLUMNS = ["model", "segment", "customer_id", "rank", "item_id"]
PAIR_COLUMNS = ["segment", "customer_id", "item_id"]


def test_metrics_equal_hand_computed_values() -> None:
    lists = pd.DataFrame(
        [("m", "s", "A", r, item) for r, item in enumerate("abcde", start=1)] + [("m", "s", "C", 1, "a")],
        columns=LIST_COLUMNS,
    )
    relevant = pd.DataFrame(
        [("s", "A", "b"), ("s", "A", "d"), ("s", "A", "x"), ("s", "B", "z"), ("s", "C", "q")],
        columns=PAIR_COLUMNS,
    )
    actual = user_metrics(lists, relevant, [3, 5], ["m"]).sort_values(["customer_id", "k"])
    idcg3 = 1 + 1 / LOG2(3) + 1 / LOG2(4)
    zero = [0.0] * 6
    expected = [
        # A, K=3: one hit at rank 2 of 3 relevant.
        ["m", "s", "A", 3, 3, 1 / 3, 1 / 3, (1 / LOG2(3)) / idcg3, (1 / 2) / 3, 1.0, 0.5],
        # A, K=5: hits at ranks 2 and 4; the ideal still has 3 hits first.
        [
            "m",
            "s",
            "A",
            5,
            3,
            2 / 5,
            2 / 3,
            (1 / LOG2(3) + 1 / LOG2(5)) / idcg3,
            (1 / 2 + 2 / 4) / 3,
            1.0,
            0.5,
        ],
        ["m", "s", "B", 3, 1, *zero],  # no list at all
        ["m", "s", "B", 5, 1, *zero],
        ["m", "s", "C", 3, 1, *zero],  # a list, no hit
        ["m", "s", "C", 5, 1, *zero],
    ]
    assert list(actual.columns) == USER_METRIC_COLUMNS
    for row, want in zip(actual.itertuples(index=False), expected, strict=True):
        assert list(row[:5]) == want[:5]
        assert list(row[5:]) == pytest.approx(want[5:], abs=1e-12)


def _by_definition(ranked: list[str], relevant: set[str], k: int) -> list[float]:
    """Precision, recall, NDCG, MAP, hit rate and MRR of one list, step by step."""
    top = ranked[:k]
    hit_ranks = [r for r, item in enumerate(top, start=1) if item in relevant]
    ideal = sum(1 / LOG2(i + 1) for i in range(1, min(len(relevant), k) + 1))
    dcg = sum(1 / LOG2(r + 1) for r in hit_ranks)
    ap = sum(i / r for i, r in enumerate(hit_ranks, start=1)) / min(len(relevant), k)
    return [
        len(hit_ranks) / k,
        len(hit_ranks) / len(relevant),
        dcg / ideal,
        ap,
        float(bool(hit_ranks)),
        1 / hit_ranks[0] if hit_ranks else 0.0,
    ]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_every_customer_model_and_k_equals_the_definitions(customers: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    models, ks = ["a", "b"], [1, 3, 10]
    lists, relevant, truth = [], [], {}
    for c in range(customers):
        bought = {f"i{i}" for i in rng.choice(30, size=int(rng.integers(1, 6)), replace=False)}
        relevant += [("s", f"c{c}", item) for item in sorted(bought)]
        for model in models:
            ranked = [f"i{i}" for i in rng.choice(30, size=int(rng.integers(0, 12)), replace=False)]
            lists += [(model, "s", f"c{c}", r, item) for r, item in enumerate(ranked, start=1)]
            for k in ks:
                truth[(model, f"c{c}", k)] = _by_definition(ranked, bought, k)
    actual = user_metrics(
        pd.DataFrame(lists, columns=LIST_COLUMNS), pd.DataFrame(relevant, columns=PAIR_COLUMNS), ks, models
    )
    assert len(actual) == len(truth)
    for row in actual.itertuples(index=False):
        assert list(row[5:]) == pytest.approx(truth[(row.model, row.customer_id, row.k)], abs=1e-12)


def test_rating_errors_pool_the_segments_so_every_rating_weighs_the_same() -> None:
    errors = {"a": np.array([0.5, -1.0, 2.0]), "b": np.array([0.25])}
    sums = pd.DataFrame(
        [("als", s, len(e), float((e**2).sum()), float(np.abs(e).sum())) for s, e in errors.items()],
        columns=["model", "segment", "pairs", "squared", "absolute"],
    )
    scores = rating_errors(sums, "all").set_index("segment")
    every = np.concatenate(list(errors.values()))
    assert scores.loc["all", "rmse"] == pytest.approx(np.sqrt(np.mean(every**2)))
    assert scores.loc["all", "mae"] == pytest.approx(np.mean(np.abs(every)))
    assert scores.loc["a", "rmse"] == pytest.approx(np.sqrt(np.mean(errors["a"] ** 2)))
    assert scores.loc["all", "pairs"] == 4
    # Data without segments: its one segment is the global one, reported once.
    alone = rating_errors(sums[sums.segment == "a"].assign(segment="all"), "all")
    assert len(alone) == 1 and alone.rmse.iat[0] == pytest.approx(scores.loc["a", "rmse"])
