"""Topping lists up to N: a list the model and the rules left short is filled from popularity.

A list comes out short when the model has few candidates for the customer (a small segment, a
customer who bought most of it) or when the business rules cut its candidates (a category cap
over candidates of one category). The promise is N items while N remain: the missing places go
to the segment's best sellers, then the overall best sellers, never an item the customer bought,
an item already listed or a blocked or filtered one; the category cap is kept while it can be and
relaxed only when nothing else is left. Batch scoring and the served model call this one function.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys_spark.kernels.candidates import POPULAR_OVERALL, reason_code
from recsys_spark.kernels.rerank import LIST_COLUMNS, Rules
from recsys_spark.kernels.routing import GLOBAL_SEGMENT

POPULAR_IN_SEGMENT = reason_code("popularity")


@dataclass(frozen=True)
class Bestsellers:
    """Per segment (and ``GLOBAL_SEGMENT``), item ids best first and their popularity scores."""

    ranked: Mapping[str, tuple[np.ndarray, np.ndarray]]

    @staticmethod
    def of(popularity_items: pd.DataFrame) -> Bestsellers:
        """From the popularity model's item rows (segment, item_id, factors = [score])."""
        ranked = {}
        for segment, part in popularity_items.groupby("segment"):
            scores = np.array([f[0] for f in part.factors], np.float64)
            order = np.lexsort((part.item_id.to_numpy(), -scores))
            ranked[segment] = (part.item_id.to_numpy()[order], scores[order])
        return Bestsellers(ranked)

    def sources(self, segment: str) -> list[tuple[np.ndarray, np.ndarray, str]]:
        """Where a short list in ``segment`` is filled from, in order."""
        own = [(*self.ranked[segment], POPULAR_IN_SEGMENT)] if segment in self.ranked else []
        overall = self.ranked.get(GLOBAL_SEGMENT)
        if overall is None or segment == GLOBAL_SEGMENT:
            return own
        return [*own, (*overall, POPULAR_OVERALL)]


def fill(
    listed: Sequence[str],
    bought: Sequence[str],
    sources: list[tuple[np.ndarray, np.ndarray, str]],
    n: int,
    rules: Rules,
    categories: Mapping[str, str],
) -> list[tuple[str, float, str]]:
    """The (item, score, reason) rows that bring ``listed`` up to ``n`` items."""
    taken = set(listed) | set(bought)
    per_category: dict[str, int] = {}
    for item in listed:
        if item in categories:
            per_category[categories[item]] = per_category.get(categories[item], 0) + 1
    added: list[tuple[str, float, str]] = []
    for respect_cap in (True, False):
        for items, scores, reason in sources:
            for item, score in zip(items, scores, strict=True):
                if len(listed) + len(added) >= n:
                    return added
                category = categories.get(item)
                if item in taken or not _allowed(item, category, rules):
                    continue
                full = category is not None and per_category.get(category, 0) >= (rules.max_per_category or n)
                if respect_cap and full:
                    continue
                taken.add(item)
                added.append((item, float(score), reason))
                if category is not None:
                    per_category[category] = per_category.get(category, 0) + 1
    return added


def _allowed(item: str, category: str | None, rules: Rules) -> bool:
    if item in rules.blocked:
        return False
    if category is None:
        return True
    return (not rules.category_include or category in rules.category_include) and (
        category not in rules.category_exclude
    )


def top_up(
    customers: pd.DataFrame,
    bestsellers: Bestsellers,
    n: int,
    rules: Rules,
    categories: Mapping[str, str],
) -> pd.DataFrame:
    """Rows (LIST_COLUMNS, model popularity, ranks after the list's own) that fill each
    customer's list to ``n``. ``customers``: segment, customer_id, history (items bought) and
    listed (the list's item ids in rank order; empty or None for no list)."""
    rows = []
    for segment, customer, history, listed in customers[
        ["segment", "customer_id", "history", "listed"]
    ].itertuples(index=False):
        listed = [] if listed is None else list(listed)
        if len(listed) >= n:
            continue
        bought = [] if history is None else list(history)
        added = fill(listed, bought, bestsellers.sources(segment), n, rules, categories)
        for rank, (item, score, reason) in enumerate(added, start=len(listed) + 1):
            rows.append((segment, customer, rank, item, score, "popularity", reason, None, np.nan, np.nan))
    frame = pd.DataFrame(rows, columns=LIST_COLUMNS)
    return frame.astype(
        {"rank": np.int32, "score": np.float32, "score_low": np.float32, "score_high": np.float32}
    )
