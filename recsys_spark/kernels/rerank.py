"""Blending candidate lists and re-ranking one customer's list (numpy only; no Spark).

- ``blend``: each source's scores scaled to [0, 1] within its own list (min-max), then summed
  with the source's weight; an item missing from a list gets 0 from it.
- ``cap_per_category``: keep at most ``cap`` items of one category, in order.
- ``mmr``: maximal marginal relevance: greedily take the item with the best
  ``lam * relevance - (1 - lam) * (highest similarity to an item already taken)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


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
) -> tuple[list[str], np.ndarray]:
    """Items of every list with their blended score, best first (ties by item id)."""
    unknown = set(lists) - set(weights)
    if unknown:
        raise ValueError(f"no weight for candidate source(s) {sorted(unknown)}")
    total: dict[str, float] = {}
    for source, (items, scores) in lists.items():
        if len(items) != len(scores):
            raise ValueError(f"source {source!r}: {len(items)} items but {len(scores)} scores")
        for item, score in zip(items, min_max(np.asarray(scores)), strict=True):
            total[item] = total.get(item, 0.0) + weights[source] * float(score)
    ranked = sorted(total.items(), key=lambda entry: (-entry[1], entry[0]))
    return [item for item, _ in ranked], np.array([score for _, score in ranked])


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
