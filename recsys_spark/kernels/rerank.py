"""Blending candidate lists and re-ranking one customer's list (numpy only; no Spark).

- ``blend``: each source's scores scaled to [0, 1] within its own list (min-max), then summed
  with the source's weight; an item missing from a list gets 0 from it.
- ``cap_per_category``: keep at most ``cap`` items of one category, in order.
- ``mmr``: maximal marginal relevance: greedily take the item with the best
  ``lam * relevance - (1 - lam) * (highest similarity to an item already taken)``.
- ``apply_rules``: the business rules in order (exclude, category filter, MMR, category cap,
  cut to N) on one customer's scored candidates.
- ``final_lists``: both, for many customers' candidate rows (pandas), as the batch scoring's
  UDF and the served model run them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recsys_spark.kernels.topn import normalize_rows


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


def cap_per_category(items: Sequence[str], categories: Sequence[str | None], cap: int) -> list[int]:
    """Positions of ``items`` kept when at most ``cap`` may share a category (order kept;
    items without a category are never capped)."""
    seen: dict[str, int] = {}
    kept = []
    for position, category in enumerate(categories):
        if category is not None:
            if seen.get(category, 0) >= cap:
                continue
            seen[category] = seen.get(category, 0) + 1
        kept.append(position)
    return kept


def mmr(relevance: np.ndarray, vectors: np.ndarray, n: int, lam: float) -> list[int]:
    """Positions of the ``n`` items chosen by maximal marginal relevance.

    ``relevance``: one score per candidate (higher is better); ``vectors``: one L2-normalised row
    per candidate, similarity = dot product. ``lam`` = 1 keeps the relevance order; lower values
    trade relevance for items unlike those already chosen. Ties go to the earlier position.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"MMR lambda must be within [0, 1], got {lam}")
    relevance = np.asarray(relevance, dtype=np.float64)
    similarity = np.asarray(vectors, dtype=np.float64) @ np.asarray(vectors, dtype=np.float64).T
    chosen: list[int] = []
    closest = np.full(len(relevance), -np.inf)  # highest similarity to a chosen item
    available = np.ones(len(relevance), dtype=bool)
    for _ in range(min(n, len(relevance))):
        penalty = np.where(np.isfinite(closest), closest, 0.0)
        value = np.where(available, lam * relevance - (1 - lam) * penalty, -np.inf)
        best = int(np.argmax(value))
        chosen.append(best)
        available[best] = False
        closest = np.maximum(closest, similarity[best])
    return chosen


@dataclass(frozen=True)
class Rules:
    """Business rules for one list; each is off when empty or None."""

    blocked: frozenset[str] = frozenset()  # item ids never shown (out of stock, discontinued)
    category_include: frozenset[str] = frozenset()  # only these categories, when not empty
    category_exclude: frozenset[str] = frozenset()
    max_per_category: int | None = None
    mmr_lambda: float | None = None


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
    best first. Excluded items and filtered categories go first; MMR reorders what is left by
    relevance (scores scaled to [0, 1]) and dissimilarity; the cap then skips an item whose
    category is full. An item without a category passes category filters and the cap.
    """
    keep = [
        i
        for i, (item, category) in enumerate(zip(items, categories, strict=True))
        if item not in rules.blocked
        and (category is None or not rules.category_include or category in rules.category_include)
        and (category is None or category not in rules.category_exclude)
    ]
    if rules.mmr_lambda is not None and len(keep) > 1:
        if vectors is None:
            raise ValueError("MMR needs item vectors")
        relevance = min_max(np.asarray(scores, dtype=np.float64)[keep])
        keep = [keep[i] for i in mmr(relevance, vectors[keep], len(keep), rules.mmr_lambda)]
    if rules.max_per_category is not None:
        kept_categories = [categories[i] for i in keep]
        keep = [
            keep[i]
            for i in cap_per_category([items[i] for i in keep], kept_categories, rules.max_per_category)
        ]
    return keep[:n]


# One row per candidate: the source (a model, or rules), its score, and why it is there.
CANDIDATE_COLUMNS = ["segment", "customer_id", "source", "item_id", "score", "reason", "reason_item_id"]
LIST_COLUMNS = ["segment", "customer_id", "rank", "item_id", "score", "model", "reason", "reason_item_id"]


@dataclass(frozen=True)
class ItemVectors:
    """Item vectors for MMR (L2 rows); an item without one counts as unlike every other."""

    ids: np.ndarray
    vectors: np.ndarray

    @staticmethod
    def of(ids: np.ndarray, vectors: np.ndarray) -> ItemVectors:
        return ItemVectors(np.asarray(ids, dtype=object), normalize_rows(np.asarray(vectors, np.float32)))

    def rows(self, items: Sequence[str]) -> np.ndarray:
        index = pd.Index(self.ids).get_indexer(list(items))
        out = np.zeros((len(index), self.vectors.shape[1]), np.float32)
        out[index >= 0] = self.vectors[index[index >= 0]]
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
    ``settings.weights`` is set, then cut to ``settings.n`` by the rules (LIST_COLUMNS)."""
    frames = []
    for (segment, customer), rows in candidates.groupby(["segment", "customer_id"], sort=False):
        vectors = settings.vectors.get(segment)
        if settings.weights is not None:
            lists = {s: (part.item_id.tolist(), part.score.to_numpy()) for s, part in rows.groupby("source")}
            blended = blend(lists, settings.weights)
            items, scores = blended.items, blended.scores
            # Each item's reason is the one its main source gave.
            rows = rows.set_index(["source", "item_id"]).loc[list(zip(blended.sources, items, strict=True))]
            models = [settings.model] * len(items)
        else:
            rows = rows.sort_values(["score", "item_id"], ascending=[False, True])
            items, scores, models = rows.item_id.tolist(), rows.score.to_numpy(), rows.source.tolist()
        categories = [settings.categories.get(item) for item in items]
        # A segment without trained vectors (too small to train): MMR keeps the relevance order.
        item_vectors = vectors.rows(items) if vectors is not None else np.zeros((len(items), 1))
        keep = apply_rules(items, scores, categories, item_vectors, settings.n, settings.rules)
        frames.append(
            pd.DataFrame(
                {
                    "segment": segment,
                    "customer_id": customer,
                    "rank": np.arange(1, len(keep) + 1, dtype=np.int32),
                    "item_id": [items[i] for i in keep],
                    "score": np.asarray(scores, np.float32)[keep],
                    "model": [models[i] for i in keep],
                    "reason": rows.reason.to_numpy()[keep],
                    "reason_item_id": rows.reason_item_id.to_numpy()[keep],
                }
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=LIST_COLUMNS)
