"""Topping short lists up to N from popularity, worked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys_spark.kernels.candidates import POPULAR_OVERALL
from recsys_spark.kernels.rerank import Rules
from recsys_spark.kernels.topup import POPULAR_IN_SEGMENT, Bestsellers, fill, top_up

SEGMENT = (np.array(["a", "b", "c", "d"], dtype=object), np.array([9.0, 8.0, 7.0, 6.0]))
OVERALL = (np.array(["x", "a", "y", "z"], dtype=object), np.array([90.0, 80.0, 70.0, 60.0]))
SOURCES = [(*SEGMENT, POPULAR_IN_SEGMENT), (*OVERALL, POPULAR_OVERALL)]


def test_fills_from_the_segment_then_overall_skipping_bought_and_listed() -> None:
    added = fill(["c"], ["a"], SOURCES, 5, Rules(), {})
    assert added == [
        ("b", 8.0, POPULAR_IN_SEGMENT),
        ("d", 6.0, POPULAR_IN_SEGMENT),
        ("x", 90.0, POPULAR_OVERALL),
        ("y", 70.0, POPULAR_OVERALL),  # a: bought
    ]


def test_a_full_list_gets_nothing_and_an_exhausted_catalogue_stops_short() -> None:
    assert fill(["a", "b"], [], SOURCES, 2, Rules(), {}) == []
    everything = ["a", "b", "c", "d", "x", "y"]
    assert fill([], everything, SOURCES, 10, Rules(), {}) == [("z", 60.0, POPULAR_OVERALL)]


def test_blocked_and_filtered_categories_are_never_added() -> None:
    categories = {"b": "BAG", "d": "CUP"}
    rules = Rules(blocked=frozenset({"a"}), category_exclude=frozenset({"BAG"}))
    assert [item for item, _, _ in fill([], [], SOURCES, 3, rules, categories)] == ["c", "d", "x"]


def test_the_category_cap_holds_while_other_items_remain_then_relaxes() -> None:
    categories = {"a": "CAT", "b": "CAT", "c": "CAT", "d": "CAT", "x": "CAT", "y": "MUG"}
    rules = Rules(max_per_category=2)
    # Listed: two CAT items already. Other categories first (y, and z has none), then the cap
    # gives way to fill the list.
    added = [item for item, _, _ in fill(["a", "b"], [], SOURCES, 6, rules, categories)]
    assert added == ["y", "z", "c", "d"]


def test_top_up_rows_continue_the_ranks() -> None:
    popular = pd.DataFrame(
        {
            "segment": ["s1", "s1", "all", "all"],
            "item_id": ["a", "b", "a", "x"],
            "factors": [[2.0], [5.0], [3.0], [9.0]],
        }
    )
    customers = pd.DataFrame(
        {
            "segment": ["s1", "s1", "s2"],
            "customer_id": ["u1", "u2", "u3"],
            "history": [["b"], [], None],
            "listed": [["q"], ["a", "b", "x"], None],
        }
    )
    rows = top_up(customers, Bestsellers.of(popular), 3, Rules(), {})
    got = list(rows[["customer_id", "rank", "item_id", "reason"]].itertuples(index=False, name=None))
    assert got == [
        ("u1", 2, "a", POPULAR_IN_SEGMENT),
        ("u1", 3, "x", POPULAR_OVERALL),
        ("u3", 1, "x", POPULAR_OVERALL),  # an untrained segment: overall best sellers
        ("u3", 2, "a", POPULAR_OVERALL),
    ]
    assert rows.model.eq("popularity").all() and rows["rank"].dtype == np.int32
