"""The itemset kernel alone (no Spark): exact against brute force, rules against hand values."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from recsys_spark.kernels import itemsets as kernel

GROCERIES = Path(__file__).parents[1] / "data" / "groceries" / "groceries.csv"


def groceries() -> tuple[list[list[int]], list[str]]:
    lines = GROCERIES.read_text().splitlines()
    names = sorted({item.strip() for line in lines for item in line.split(",")})
    index = {name: i for i, name in enumerate(names)}
    return [[index[item.strip()] for item in line.split(",")] for line in lines], names


def test_groceries_reference_figures() -> None:
    baskets, names = groceries()
    matrix = kernel.basket_matrix(baskets, len(names))
    min_count = math.ceil(0.01 * len(baskets))
    found, counts = kernel.frequent_itemsets(matrix, min_count, max_len=10, max_itemsets=10_000)
    assert len(found) == 333
    assert np.bincount([len(s) for s in found]).tolist() == [0, 88, 213, 32]
    whole_milk = dict(zip(found, counts, strict=True))[(names.index("whole milk"),)]
    assert whole_milk == 2513 and round(whole_milk / len(baskets), 4) == 0.2555


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_items = 10
    popularity = rng.dirichlet(np.ones(n_items) * 0.5)
    baskets = [list(rng.choice(n_items, size=rng.integers(1, 7), p=popularity)) for _ in range(300)]
    sets = [set(b) for b in baskets]
    expected = {}
    for size in range(1, n_items + 1):
        for combo in itertools.combinations(range(n_items), size):
            n = sum(1 for s in sets if s.issuperset(combo))
            if n >= 12:
                expected[combo] = n
    found, counts = kernel.frequent_itemsets(kernel.basket_matrix(baskets, n_items), 12, 10, 10_000)
    assert dict(zip(found, counts.tolist(), strict=True)) == expected
    assert kernel.count_itemsets(kernel.basket_matrix(baskets, n_items), found).tolist() == counts.tolist()


def test_max_len_limits_itemset_size() -> None:
    baskets, names = groceries()
    found, _ = kernel.frequent_itemsets(kernel.basket_matrix(baskets, len(names)), 99, 2, 10_000)
    assert max(len(s) for s in found) == 2 and len(found) == 88 + 213


def test_ceiling_stops_with_the_settings_named() -> None:
    baskets, names = groceries()
    with pytest.raises(kernel.ItemsetCeilingError, match=r"more than 100 .*raise baskets\.min_support"):
        kernel.frequent_itemsets(kernel.basket_matrix(baskets, len(names)), 5, 10, 100)


def test_duplicate_items_in_a_basket_count_once() -> None:
    matrix = kernel.basket_matrix([[0, 0, 1], [1]], 2)
    assert matrix.toarray().tolist() == [[1, 1], [0, 1]]


def test_rule_metrics_by_hand() -> None:
    # a=0, b=1, c=2; baskets {a,b} {a,b,c} {a,c} {b} {a,b}: a 4, b 4, c 2, ab 3, ac 2, bc 1, abc 1
    baskets = [[0, 1], [0, 1, 2], [0, 2], [1], [0, 1]]
    found, counts = kernel.frequent_itemsets(kernel.basket_matrix(baskets, 3), 1, 3, 100)
    rules = {
        (r.antecedent, r.consequent): r
        for r in kernel.association_rules(dict(zip(found, counts, strict=True)), 5, 0, 0)
    }
    a_b = rules[((0,), 1)]
    assert (a_b.support, a_b.confidence, a_b.lift) == pytest.approx((0.6, 0.75, 0.9375))
    assert (a_b.leverage, a_b.conviction) == pytest.approx((-0.04, 0.8))
    c_a = rules[((2,), 0)]
    assert (c_a.support, c_a.confidence, c_a.lift, c_a.leverage) == pytest.approx((0.4, 1.0, 1.25, 0.08))
    assert c_a.conviction == math.inf
    ac_b = rules[((0, 2), 1)]
    assert (ac_b.support, ac_b.confidence, ac_b.lift) == pytest.approx((0.2, 0.5, 0.625))
    assert (ac_b.leverage, ac_b.conviction) == pytest.approx((-0.12, 0.4))
    assert len(rules) == 9  # 3 pairs x 2 directions + 1 triple x 3 consequents
    strong = kernel.association_rules(
        dict(zip(found, counts, strict=True)), 5, min_confidence=0.9, min_lift=1.1
    )
    assert {(r.antecedent, r.consequent) for r in strong} == {((2,), 0), ((1, 2), 0)}
