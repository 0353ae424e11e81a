"""Blending, category caps and MMR on small cases worked out by hand."""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys_spark.kernels import rerank
from recsys_spark.kernels.candidates import POPULAR_OVERALL, REASON_CODES, REASON_MEANINGS, reason_code
from recsys_spark.kernels.rerank import (
    CANDIDATE_COLUMNS,
    ItemVectors,
    ListSettings,
    Rules,
    apply_rules,
    blend,
    cap_per_category,
    final_lists,
    min_max,
    mmr,
    picked_rows,
)


def test_min_max() -> None:
    assert min_max(np.array([2.0, 4.0, 3.0])).tolist() == [0.0, 1.0, 0.5]
    assert min_max(np.array([5.0, 5.0])).tolist() == [1.0, 1.0]
    assert min_max(np.array([])).size == 0


def test_blend_by_hand() -> None:
    lists = {
        "als": (["a", "b", "c"], [0.9, 0.5, 0.1]),  # -> 1, 0.5, 0
        "rules": (["c", "d"], [0.8, 0.4]),  # -> 1, 0
        "content": (["b"], [0.3]),  # one item -> 1
    }
    blended = blend(lists, {"als": 0.5, "rules": 0.3, "content": 0.2})
    # a: 0.5; b: 0.25 + 0.2 = 0.45; c: 0 + 0.3 = 0.3; d: 0
    assert blended.items == ["a", "b", "c", "d"]
    assert blended.scores.tolist() == pytest.approx([0.5, 0.45, 0.3, 0.0])
    # The source behind most of each score (b: als 0.25 > content 0.2; d: rules, its only list).
    assert blended.sources == ["als", "als", "rules", "rules"]


def test_blend_ties_by_item_id_and_checks_inputs() -> None:
    assert blend({"x": (["z", "y"], [1.0, 1.0])}, {"x": 1.0}).items == ["y", "z"]
    with pytest.raises(ValueError, match="no weight for candidate source"):
        blend({"x": (["a"], [1.0])}, {})
    with pytest.raises(ValueError, match="2 items but 1 scores"):
        blend({"x": (["a", "b"], [1.0])}, {"x": 1.0})


def test_cap_per_category() -> None:
    categories = ["BAG", "BAG", "TIN", "BAG", None, None, "TIN"]
    assert cap_per_category(categories, 2) == [0, 1, 2, 4, 5, 6]
    assert cap_per_category(categories, 1) == [0, 2, 4, 5]


def test_mmr_by_hand() -> None:
    # Items 0 and 1 are the same direction; 2 is orthogonal to both.
    vectors = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    relevance = np.array([1.0, 0.9, 0.6])
    assert mmr(relevance, vectors, 3, lam=1.0) == [0, 1, 2]  # relevance order
    # lam 0.5: after 0, item 1 scores 0.5*0.9 - 0.5*1 = -0.05, item 2 scores 0.5*0.6 - 0 = 0.3.
    assert mmr(relevance, vectors, 3, lam=0.5) == [0, 2, 1]
    # lam 0.8: item 1: 0.72 - 0.2 = 0.52; item 2: 0.48 - 0 = 0.48 -> 1 first.
    assert mmr(relevance, vectors, 2, lam=0.8) == [0, 1]
    assert mmr(relevance, vectors, 5, lam=0.5) == [0, 2, 1]
    with pytest.raises(ValueError, match="within \\[0, 1\\]"):
        mmr(relevance, vectors, 1, lam=1.5)


def test_apply_rules_by_hand() -> None:
    items = ["a", "b", "c", "d", "e"]
    scores = np.array([1.0, 0.9, 0.8, 0.7, 0.6])
    categories = ["BAG", "BAG", "BAG", "TIN", None]
    # a, b, c point the same way; d and e are orthogonal to them and to each other.
    vectors = np.array([[1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])

    def chosen(rules: Rules, n: int = 5) -> list[int]:
        return apply_rules(items, scores, categories, None, n, rules)

    assert chosen(Rules(), 3) == [0, 1, 2]
    assert chosen(Rules(blocked=frozenset({"b"}))) == [0, 2, 3, 4]
    assert chosen(Rules(category_exclude=frozenset({"BAG"}))) == [3, 4]
    # include keeps items without a category: nothing says they are outside the filter.
    assert chosen(Rules(category_include=frozenset({"TIN"}))) == [3, 4]
    assert chosen(Rules(max_per_category=1)) == [0, 3, 4]
    # MMR at 0.5 on relevance [1, .75, .5, .25, 0]: a; then d (0.125 - 0) beats b (0.375 - 0.5);
    # then e (0 - 0) beats b (-0.125) and c; then b, c.
    assert apply_rules(items, scores, categories, vectors, 5, Rules(mmr_lambda=0.5)) == [0, 3, 4, 1, 2]
    # MMR, then the cap on that order, then N.
    both = Rules(mmr_lambda=0.5, max_per_category=1)
    assert apply_rules(items, scores, categories, vectors, 2, both) == [0, 3]
    with pytest.raises(ValueError, match="MMR needs item vectors"):
        apply_rules(items, scores, categories, None, 5, Rules(mmr_lambda=0.5))


CATEGORIES = ["BAG", "TIN", "MUG", None]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(CATEGORIES), min_size=0, max_size=40),
    st.sets(st.integers(0, 39)),
    st.sets(st.sampled_from(CATEGORIES[:3])),
    st.sets(st.sampled_from(CATEGORIES[:3])),
    st.one_of(st.none(), st.integers(1, 4)),
    st.one_of(st.none(), st.floats(0.0, 1.0)),
    st.integers(1, 20),
    st.integers(0, 2**31 - 1),
)
def test_rules_never_leak(
    categories: list[str | None],
    blocked: set[int],
    include: set[str],
    exclude: set[str],
    cap: int | None,
    lam: float | None,
    n: int,
    seed: int,
) -> None:
    """Whatever the scores, vectors and rules: no blocked item, no filtered category, no full
    category, no repeats, at most N, and nothing dropped that no rule removes."""
    rng = np.random.default_rng(seed)
    items = [f"i{i}" for i in range(len(categories))]
    scores = np.sort(rng.random(len(items)))[::-1]
    vectors = rng.normal(size=(len(items), 4))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rules = Rules(frozenset(f"i{b}" for b in blocked), frozenset(include), frozenset(exclude), cap, lam)
    chosen = apply_rules(items, scores, categories, vectors, n, rules)
    shown = [items[i] for i in chosen]
    assert len(shown) == len(set(shown)) <= n
    assert not set(shown) & rules.blocked
    for i in chosen:
        category = categories[i]
        assert category is None or category not in exclude
        assert category is None or not include or category in include
    if cap is not None:
        counts = pd.Series([categories[i] for i in chosen]).value_counts()
        assert (counts <= cap).all()
    allowed = [
        i
        for i, c in enumerate(categories)
        if items[i] not in rules.blocked
        and (c is None or ((not include or c in include) and c not in exclude))
    ]
    if cap is None:
        assert len(chosen) == min(n, len(allowed))


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 6), st.integers(0, 2**31 - 1), st.booleans())
def test_final_lists_blend_every_customer_as_blend_and_apply_rules_do(
    customers: int, seed: int, rules_on: bool
) -> None:
    """The vectorised batch path equals ``blend`` + ``apply_rules`` customer by customer."""
    rng = np.random.default_rng(seed)
    weights = {"als": 1.0, "rules": 0.5, "content": 0.3}
    rows = []
    for customer in range(customers):
        for source in weights:
            items = rng.choice(30, size=int(rng.integers(1, 12)), replace=False)
            scores = rng.integers(0, 4, size=len(items)).astype(float)  # ties on purpose
            rows += [
                ("s", f"c{customer}", source, f"i{i:02d}", v, source, None, v - 1.0, v + 1.0)
                for i, v in zip(items, scores, strict=True)
            ]
    candidates = pd.DataFrame(rows, columns=CANDIDATE_COLUMNS)
    categories = {f"i{i:02d}": CATEGORIES[i % 4] for i in range(30)}
    vectors = ItemVectors.of(
        np.array([f"i{i:02d}" for i in range(30)], dtype=object), rng.normal(size=(30, 3))
    )
    rules = Rules(frozenset({"i03"}), max_per_category=2, mmr_lambda=0.7) if rules_on else Rules()
    lists = final_lists(candidates, ListSettings(5, weights, "hybrid", rules, categories, {"s": vectors}))
    for customer, rows_of in candidates.groupby("customer_id"):
        lists_of = {s: (p.item_id.tolist(), p.score.to_numpy()) for s, p in rows_of.groupby("source")}
        blended = blend(lists_of, weights)
        chosen = [categories.get(i) for i in blended.items]
        keep = apply_rules(blended.items, blended.scores, chosen, vectors.rows(blended.items), 5, rules)
        mine = lists[lists.customer_id == customer].sort_values("rank")
        assert mine.item_id.tolist() == [blended.items[i] for i in keep]
        assert mine.reason.tolist() == [blended.sources[i] for i in keep]
        assert mine.score.to_numpy() == pytest.approx(blended.scores[keep], abs=1e-6)
        assert mine["rank"].tolist() == list(range(1, len(keep) + 1))


def test_every_reason_a_candidate_can_carry_is_explained() -> None:
    codes = {reason_code(source) for source in [*REASON_CODES, "popularity_global"]}
    assert codes == set(REASON_MEANINGS) and POPULAR_OVERALL in codes


def _greedy(
    relevance: np.ndarray, vectors: np.ndarray, n: int, lam: float, categories: list, cap: int | None
) -> list[int]:
    """MMR as defined, one step at a time for one list: the reference the batched kernel must equal."""
    chosen: list[int] = []
    closest = np.zeros(len(relevance))
    available = np.ones(len(relevance), dtype=bool)
    taken: dict[str, int] = {}
    while len(chosen) < n and available.any():
        best = int(np.argmax(np.where(available, lam * relevance - (1 - lam) * closest, -np.inf)))
        available[best] = False
        category = categories[best]
        if cap is not None and category is not None:
            if taken.get(category, 0) >= cap:
                continue
            taken[category] = taken.get(category, 0) + 1
        chosen.append(best)
        similarity = vectors @ vectors[best]
        closest = similarity if len(chosen) == 1 else np.maximum(closest, similarity)
    return chosen


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 40), st.integers(0, 2**31 - 1), st.one_of(st.none(), st.integers(1, 3)), st.integers(1, 12)
)
def test_many_lists_at_once_pick_what_each_list_alone_picks(
    lists: int, seed: int, cap: int | None, n: int
) -> None:
    """``picked_rows`` over many customers (chunked, padded) equals the step-by-step MMR and cap
    on each customer's list alone, ties and empty lists included."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 25, size=lists)
    groups = np.repeat(np.arange(lists), sizes)
    items = np.array([f"i{i}" for i in rng.integers(0, 60, size=len(groups))], dtype=object)
    scores = rng.integers(0, 5, size=len(groups)).astype(float)  # ties on purpose
    categories = np.array([CATEGORIES[i] for i in rng.integers(0, 4, size=len(groups))], dtype=object)
    vectors = rng.normal(size=(len(groups), 4))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rules = Rules(
        frozenset({"i1", "i2"}), category_exclude=frozenset({"TIN"}), max_per_category=cap, mmr_lambda=0.6
    )
    with patch.object(rerank, "MMR_CHUNK_LISTS", 7):  # several chunks
        got = picked_rows(groups, items, scores, categories, vectors, n, rules).tolist()
    expected: list[int] = []
    for start, end in zip(np.r_[0, np.cumsum(sizes)[:-1]], np.cumsum(sizes), strict=True):
        keep = [i for i in range(start, end) if items[i] not in rules.blocked and categories[i] != "TIN"]
        picks = _greedy(min_max(scores[keep]), vectors[keep], n, 0.6, list(categories[keep]), cap)
        expected += [keep[i] for i in picks]
    assert got == expected


def test_the_interval_rule_drops_candidates_whose_lower_end_is_under_the_threshold() -> None:
    rows = [
        ("s", "c1", "als", "a", 0.9, "factor_score", None, 0.5, 1.3),
        ("s", "c1", "als", "b", 0.8, "factor_score", None, -0.1, 1.7),  # wide: could be 0 or less
        ("s", "c1", "als", "c", 0.7, "factor_score", None, 0.2, 1.2),
        ("s", "c1", "als", "d", 0.6, "factor_score", None, np.nan, np.nan),  # no interval: kept
    ]
    candidates = pd.DataFrame(rows, columns=CANDIDATE_COLUMNS)
    lists = final_lists(candidates, ListSettings(3, rules=Rules(min_score_low=0.0)))
    assert lists.sort_values("rank").item_id.tolist() == ["a", "c", "d"]
    assert lists.score_low.iloc[0] == pytest.approx(0.5) and lists.score_high.iloc[0] == pytest.approx(1.3)
    blended = final_lists(candidates, ListSettings(3, {"als": 1.0}, "hybrid"))
    assert blended.score_low.isna().all()  # a blended score has no interval of its own
