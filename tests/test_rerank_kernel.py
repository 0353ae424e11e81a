"""Blending, category caps and MMR on small cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_spark.kernels.rerank import blend, cap_per_category, min_max, mmr


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
    items, scores = blend(lists, {"als": 0.5, "rules": 0.3, "content": 0.2})
    # a: 0.5; b: 0.25 + 0.2 = 0.45; c: 0 + 0.3 = 0.3; d: 0
    assert items == ["a", "b", "c", "d"]
    assert scores.tolist() == pytest.approx([0.5, 0.45, 0.3, 0.0])


def test_blend_ties_by_item_id_and_checks_inputs() -> None:
    items, _ = blend({"x": (["z", "y"], [1.0, 1.0])}, {"x": 1.0})
    assert items == ["y", "z"]
    with pytest.raises(ValueError, match="no weight for candidate source"):
        blend({"x": (["a"], [1.0])}, {})
    with pytest.raises(ValueError, match="2 items but 1 scores"):
        blend({"x": (["a", "b"], [1.0])}, {"x": 1.0})


def test_cap_per_category() -> None:
    categories = ["BAG", "BAG", "TIN", "BAG", None, None, "TIN"]
    assert cap_per_category(list("abcdefg"), categories, 2) == [0, 1, 2, 4, 5, 6]
    assert cap_per_category(list("abcdefg"), categories, 1) == [0, 2, 4, 5]


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
