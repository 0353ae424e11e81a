"""Blending candidate lists and re-ranking one customer's list (numpy only; no Spark).

- ``blend``: each source's scores scaled to [0, 1] within its own list (min-max), then summed
  with the source's weight; an item missing from a list gets 0 from it.
- ``cap_per_category``: keep at most ``cap`` items of one category, in order.
- ``mmr``: maximal marginal relevance: greedily take the item with the best
  ``lam * relevance - (1 - lam) * (highest similarity to an item already taken)``.
- ``apply_rules``: the business rules on one customer's scored candidates: exclude and category
  filter, then N picked in score order or by MMR, skipping items whose category is full.
- ``final_lists``: both, for many customers' candidate rows (pandas), as the batch scoring's
  UDF and the served model run them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recsys_spark.kernels.fusion import FUSED_MODEL
from recsys_spark.kernels.topn import normalize_rows

# Whose item vectors MMR compares, best first: the first a segment has is used.
MMR_VECTOR_MODELS = (FUSED_MODEL, "content", "als", "bpr")


@dataclass(frozen=True)
class Blended:
    items: list[str]  # best first (ties by item id)
    scores: np.ndarray
    sources: list[str]  # per item, the source that contributed most to its score


def min_max(scores: np.ndarray) -> np.ndarray:
    """Scores scaled to [0, 1] within the list; a list of equal scores is all 1."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return scores
    low, high = scores.min(), scores.max()
    if high == low:
        return np.ones_like(scores)
    return (scores - low) / (high - low)


def blend(
    lists: Mapping[str, tuple[Sequence[str], Sequence[float]]], weights: Mapping[str, float]
) -> Blended:
    """Items of every list with their blended score, best first (ties by item id)."""
    unknown = set(lists) - set(weights)
    if unknown:
        raise ValueError(f"no weight for candidate source(s) {sorted(unknown)}")
    total: dict[str, float] = {}
    best: dict[str, tuple[float, str]] = {}  # item -> (largest contribution, its source)
    for source, (items, scores) in lists.items():
        if len(items) != len(scores):
            raise ValueError(f"source {source!r}: {len(items)} items but {len(scores)} scores")
        for item, score in zip(items, min_max(np.asarray(scores)), strict=True):
            part = weights[source] * float(score)
            total[item] = total.get(item, 0.0) + part
            if item not in best or part > best[item][0]:
                best[item] = (part, source)
    ranked = sorted(total.items(), key=lambda entry: (-entry[1], entry[0]))
    return Blended(
        [item for item, _ in ranked],
        np.array([score for _, score in ranked], dtype=np.float64),
        [best[item][1] for item, _ in ranked],
    )


def cap_per_category(categories: Sequence[str | None], cap: int) -> list[int]:
    """Positions kept when at most ``cap`` items may share a category (order kept; items
    without a category are never capped)."""
    seen: dict[str, int] = {}
    kept = []
    for position, category in enumerate(categories):
        if category is not None:
            if seen.get(category, 0) >= cap:
                continue
            seen[category] = seen.get(category, 0) + 1
        kept.append(position)
    return kept


def mmr(
    relevance: np.ndarray,
    vectors: np.ndarray,
    n: int,
    lam: float,
    categories: Sequence[str | None] | None = None,
    cap: int | None = None,
) -> list[int]:
    """Positions of the ``n`` items chosen by maximal marginal relevance.

    ``relevance``: one score per candidate (higher is better); ``vectors``: one L2-normalised row
    per candidate, similarity = dot product. ``lam`` = 1 keeps the relevance order; lower values
    trade relevance for items unlike those already chosen. With ``cap``, an item whose category
    already has ``cap`` chosen items is skipped. Ties go to the earlier position.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"MMR lambda must be within [0, 1], got {lam}")
    relevance = np.asarray(relevance, dtype=np.float64)
    vectors = np.asarray(vectors, dtype=np.float64)
    chosen: list[int] = []
    closest = np.zeros(len(relevance))  # highest similarity to a chosen item (none yet: 0)
    available = np.ones(len(relevance), dtype=bool)
    taken: dict[str, int] = {}
    while len(chosen) < n and available.any():
        value = np.where(available, lam * relevance - (1 - lam) * closest, -np.inf)
        best = int(np.argmax(value))
        available[best] = False
        category = categories[best] if categories is not None else None
        if cap is not None and category is not None:
            if taken.get(category, 0) >= cap:
                continue
            taken[category] = taken.get(category, 0) + 1
        chosen.append(best)
        similarity = vectors @ vectors[best]
        closest = similarity if len(chosen) == 1 else np.maximum(closest, similarity)
    return chosen


@dataclass(frozen=True)
class Rules:
    """Business rules for one list; each is off when empty or None."""

    blocked: frozenset[str] = frozenset()  # item ids never shown (out of stock, discontinued)
    category_include: frozenset[str] = frozenset()  # only these categories, when not empty
    category_exclude: frozenset[str] = frozenset()
    max_per_category: int | None = None
    mmr_lambda: float | None = None

    @property
    def beyond_exclusion(self) -> bool:
        """Whether a rule besides the exclude list (which scoring applies anyway) is on."""
        return self != Rules(blocked=self.blocked)


def apply_rules(
    items: Sequence[str],
    scores: np.ndarray,
    categories: Sequence[str | None],
    vectors: np.ndarray | None,
    n: int,
    rules: Rules,
) -> list[int]:
    """Positions of the (at most) ``n`` candidates to publish, in order.

    ``items``, ``scores``, ``categories``, ``vectors`` (L2 rows, for MMR): one per candidate,
    best first. Excluded items and filtered categories go first; then the first ``n`` are
    picked, in score order or, with MMR, by relevance (scores scaled to [0, 1]) and
    dissimilarity to the items already picked; the cap skips an item whose category is full.
    An item without a category passes category filters and the cap.
    """
    keep = [
        i
        for i, (item, category) in enumerate(zip(items, categories, strict=True))
        if item not in rules.blocked
        and (category is None or not rules.category_include or category in rules.category_include)
        and (category is None or category not in rules.category_exclude)
    ]
    if rules.mmr_lambda is not None:
        if vectors is None:
            raise ValueError("MMR needs item vectors")
        relevance = min_max(np.asarray(scores, dtype=np.float64)[keep])
        kept_categories = [categories[i] for i in keep]
        picked = mmr(relevance, vectors[keep], n, rules.mmr_lambda, kept_categories, rules.max_per_category)
        return [keep[i] for i in picked]
    if rules.max_per_category is not None:
        kept_categories = [categories[i] for i in keep]
        keep = [keep[i] for i in cap_per_category(kept_categories, rules.max_per_category)]
    return keep[:n]


# One row per candidate: the source (a model, or rules), its score, and why it is there.
CANDIDATE_COLUMNS = ["segment", "customer_id", "source", "item_id", "score", "reason", "reason_item_id"]
LIST_COLUMNS = ["segment", "customer_id", "rank", "item_id", "score", "model", "reason", "reason_item_id"]


@dataclass(frozen=True)
class ItemVectors:
    """Item vectors for MMR (L2 rows); an item without one counts as unlike every other."""

    index: pd.Index  # item ids, row order
    vectors: np.ndarray

    @staticmethod
    def of(ids: np.ndarray, vectors: np.ndarray) -> ItemVectors:
        return ItemVectors(
            pd.Index(np.asarray(ids, dtype=object)), normalize_rows(np.asarray(vectors, np.float32))
        )

    def rows(self, items: Sequence[str]) -> np.ndarray:
        positions = self.index.get_indexer(list(items))
        out = np.zeros((len(positions), self.vectors.shape[1]), np.float32)
        out[positions >= 0] = self.vectors[positions[positions >= 0]]
        return out


@dataclass(frozen=True)
class ListSettings:
    n: int
    # Blend: per source, its weight, and the model column's value. None: each customer has one
    # source's list, kept in score order, and the model column is that source.
    weights: Mapping[str, float] | None = None
    model: str | None = None
    rules: Rules = Rules()
    categories: Mapping[str, str] = field(default_factory=dict)  # item -> category
    vectors: Mapping[str, ItemVectors] = field(default_factory=dict)  # segment -> MMR vectors


def final_lists(candidates: pd.DataFrame, settings: ListSettings) -> pd.DataFrame:
    """Per customer (segment × customer_id) of ``candidates`` (CANDIDATE_COLUMNS): blended when
    ``settings.weights`` is set (``blend``, for every customer at once), then cut to
    ``settings.n`` by the rules (``apply_rules``) (LIST_COLUMNS)."""
    if candidates.empty:
        return pd.DataFrame(columns=LIST_COLUMNS)
    keys = ["segment", "customer_id"]
    if settings.weights is not None:
        ranked = _blended(candidates, settings.weights).assign(model=settings.model)
    else:
        ranked = candidates.assign(model=candidates.source)
    ranked = ranked.sort_values([*keys, "score", "item_id"], ascending=[True, True, False, True])
    if settings.rules == Rules():
        picked = ranked.groupby(keys, sort=False).head(settings.n)
    else:
        picked = ranked.iloc[_picked_rows(ranked, settings)]
    rank = picked.groupby(keys, sort=False).cumcount() + 1
    return picked.assign(rank=rank.astype(np.int32), score=picked.score.astype(np.float32))[LIST_COLUMNS]


def _blended(candidates: pd.DataFrame, weights: Mapping[str, float]) -> pd.DataFrame:
    """``blend`` for every customer at once: one row per customer × item with the blended score
    and the reason of the source that contributed most (ties: the source first by name)."""
    unknown = set(candidates.source) - set(weights)
    if unknown:
        raise ValueError(f"no weight for candidate source(s) {sorted(unknown)}")
    by_list = candidates.groupby(["segment", "customer_id", "source"], sort=False).score
    low, high = by_list.transform("min"), by_list.transform("max")
    scaled = np.where(high > low, (candidates.score - low) / (high - low).where(high > low, 1.0), 1.0)
    parts = candidates.assign(part=scaled * candidates.source.map(weights).to_numpy(np.float64))
    items = ["segment", "customer_id", "item_id"]
    totals = parts.groupby(items, sort=False).part.sum().rename("total")
    main = parts.sort_values(["part", "source"], ascending=[False, True]).drop_duplicates(items)
    blended = main.join(totals, on=items)
    return blended.assign(score=blended.total).drop(columns=["part", "total"])


def _picked_rows(ranked: pd.DataFrame, settings: ListSettings) -> list[int]:
    """Row positions in ``ranked`` (sorted by customer, best first) that the rules keep."""
    items = ranked.item_id.to_numpy()
    scores = ranked.score.to_numpy(np.float64)
    categories = np.array([settings.categories.get(item) for item in items], dtype=object)
    segments = ranked.segment.to_numpy()
    starts = np.flatnonzero(
        np.r_[
            True,
            (ranked.customer_id.to_numpy()[1:] != ranked.customer_id.to_numpy()[:-1])
            | (segments[1:] != segments[:-1]),
        ]
    )
    ends = np.r_[starts[1:], len(ranked)]
    rows = _vector_rows(items, segments, settings) if settings.rules.mmr_lambda is not None else None
    picked: list[int] = []
    for start, end in zip(starts, ends, strict=True):
        # A segment without trained vectors (too small to train): MMR keeps the relevance order.
        item_vectors = rows[start:end] if rows is not None else np.zeros((end - start, 1))
        kept = apply_rules(
            items[start:end],
            scores[start:end],
            categories[start:end],
            item_vectors,
            settings.n,
            settings.rules,
        )
        picked.extend(start + i for i in kept)
    return picked


def _vector_rows(items: np.ndarray, segments: np.ndarray, settings: ListSettings) -> np.ndarray:
    """Each row's MMR vector from its segment's (zeros where it has none), looked up per segment
    at once rather than per customer."""
    width = max((v.vectors.shape[1] for v in settings.vectors.values()), default=1)
    out = np.zeros((len(items), width), np.float32)
    for segment in pd.unique(segments):
        vectors = settings.vectors.get(segment)
        if vectors is not None:
            rows = np.flatnonzero(segments == segment)
            found = vectors.rows(items[rows])
            out[rows, : found.shape[1]] = found
    return out
