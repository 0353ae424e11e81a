"""Blending candidate lists and re-ranking one customer's list (numpy only; no Spark).

- ``blend``: each source's scores scaled to [0, 1] within its own list (min-max), then summed
  with the source's weight; an item missing from a list gets 0 from it.
- ``cap_per_category``: keep at most ``cap`` items of one category, in order.
- ``mmr``: maximal marginal relevance: greedily take the item with the best
  ``lam * relevance - (1 - lam) * (highest similarity to an item already taken)``.
- ``apply_rules``: the business rules on one customer's scored candidates: exclude and category
  filter, then N picked in score order or by MMR, skipping items whose category is full.
  ``picked_rows`` does the same for many customers at once, as array steps (MMR's greedy steps
  on padded lists × candidates arrays); ``apply_rules`` is its one-customer case.
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
MMR_VECTOR_MODELS = (FUSED_MODEL, "content", "als", "bpr", "graph")
# Lists per padded chunk: bounds the (lists × candidates × dims) array MMR compares.
MMR_CHUNK_LISTS = 1024


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
    codes = _category_codes(np.asarray(categories, dtype=object))
    return np.flatnonzero(_within_cap(np.zeros(len(codes), np.int64), codes, cap)).tolist()


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
    codes = _category_codes(np.asarray(categories if categories is not None else [None] * len(relevance)))
    relevance = np.asarray(relevance, np.float64)
    groups = np.zeros(len(relevance), np.int64)
    return _mmr_lists(groups, relevance, np.asarray(vectors, np.float64), codes, n, lam, cap).tolist()


def _mmr_lists(
    groups: np.ndarray,
    relevance: np.ndarray,
    vectors: np.ndarray,
    codes: np.ndarray,
    n: int,
    lam: float,
    cap: int | None,
) -> np.ndarray:
    """``mmr`` for many lists at once: rows of consecutive ``groups`` (ints); the row positions
    chosen, each group's in the order chosen. Groups go through in chunks, as padded arrays."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"MMR lambda must be within [0, 1], got {lam}")
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]]) if len(groups) else np.array([], int)
    ends = np.r_[starts[1:], len(groups)].astype(np.int64)
    chosen = []
    for first in range(0, len(starts), MMR_CHUNK_LISTS):
        lo, hi = starts[first], ends[min(first + MMR_CHUNK_LISTS, len(starts)) - 1]
        part = slice(lo, hi)
        offsets = starts[first : first + MMR_CHUNK_LISTS] - lo
        picks = _mmr_chunk(offsets, hi - lo, relevance[part], vectors[part], codes[part], n, lam, cap)
        chosen.append(picks + lo)
    return np.concatenate(chosen) if chosen else np.array([], np.int64)


def _mmr_chunk(
    offsets: np.ndarray,
    rows: int,
    relevance: np.ndarray,
    vectors: np.ndarray,
    codes: np.ndarray,
    n: int,
    lam: float,
    cap: int | None,
) -> np.ndarray:
    """The greedy MMR steps on every list of a chunk at once (lists × candidates arrays)."""
    lists = len(offsets)
    group = np.repeat(np.arange(lists), np.diff(np.r_[offsets, rows]))
    position = np.arange(rows) - offsets[group]
    width = int(position.max()) + 1 if rows else 0
    available = np.zeros((lists, width), bool)
    available[group, position] = True
    value_of = np.zeros((lists, width))
    value_of[group, position] = relevance
    padded = np.zeros((lists, width, vectors.shape[1] if vectors.ndim == 2 else 1))
    padded[group, position] = vectors
    code = np.full((lists, width), -1)
    code[group, position] = codes
    closest = np.zeros((lists, width))  # highest similarity to a chosen item (none yet: 0)
    same_chosen = np.zeros((lists, width), np.int64)  # chosen items of each candidate's category
    picks = np.full((lists, max(n, 0)), -1)
    count = np.zeros(lists, np.int64)
    everyone = np.arange(lists)
    active = (count < n) & available.any(axis=1)
    while active.any():
        best = np.argmax(np.where(available, lam * value_of - (1 - lam) * closest, -np.inf), axis=1)
        available[everyone[active], best[active]] = False
        best_code = code[everyone, best]
        full = (cap is not None) & (best_code >= 0) & (same_chosen[everyone, best] >= (cap or 0))
        take = active & ~full
        picks[take, count[take]] = best[take]
        similarity = np.einsum("lwd,ld->lw", padded, padded[everyone, best])
        closest = np.where(
            take[:, None], np.where(count[:, None] == 0, similarity, np.maximum(closest, similarity)), closest
        )
        same_chosen += take[:, None] & (code == best_code[:, None]) & (best_code[:, None] >= 0)
        count += take
        active = (count < n) & available.any(axis=1)
    kept = picks >= 0
    return (offsets[:, None] + picks)[kept]


def _category_codes(categories: np.ndarray) -> np.ndarray:
    """Categories as integers; -1 for none."""
    codes, _ = pd.factorize(pd.Series(categories, dtype=object), use_na_sentinel=True)
    return codes.astype(np.int64)


def _within_cap(groups: np.ndarray, codes: np.ndarray, cap: int) -> np.ndarray:
    """Per row, whether it is among the first ``cap`` of its category in its group (rows
    without a category always are)."""
    seen = pd.DataFrame({"group": groups, "code": codes}).groupby(["group", "code"], sort=False).cumcount()
    return (codes < 0) | (seen.to_numpy() < cap)


@dataclass(frozen=True)
class Rules:
    """Business rules for one list; each is off when empty or None."""

    blocked: frozenset[str] = frozenset()  # item ids never shown (out of stock, discontinued)
    category_include: frozenset[str] = frozenset()  # only these categories, when not empty
    category_exclude: frozenset[str] = frozenset()
    max_per_category: int | None = None
    mmr_lambda: float | None = None
    # Candidates whose score interval starts below this are dropped (those without one stay).
    min_score_low: float | None = None

    @property
    def beyond_exclusion(self) -> bool:
        """Whether a rule besides the exclude list (which scoring applies anyway) is on."""
        return self != Rules(blocked=self.blocked)

    def allowed(self, items: np.ndarray, categories: np.ndarray) -> np.ndarray:
        """Per candidate, whether the exclude list and the category filters let it through (an
        item without a category passes the filters)."""
        has = pd.notna(categories)
        ok = ~np.isin(items, list(self.blocked)) if self.blocked else np.ones(len(items), bool)
        if self.category_include:
            ok &= ~has | np.isin(categories, list(self.category_include))
        if self.category_exclude:
            ok &= ~has | ~np.isin(categories, list(self.category_exclude))
        return ok


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
    groups = np.zeros(len(items), np.int64)
    return picked_rows(
        groups,
        np.asarray(items, dtype=object),
        np.asarray(scores, np.float64),
        np.asarray(categories, dtype=object),
        vectors,
        n,
        rules,
    ).tolist()


def picked_rows(
    groups: np.ndarray,
    items: np.ndarray,
    scores: np.ndarray,
    categories: np.ndarray,
    vectors: np.ndarray | None,
    n: int,
    rules: Rules,
) -> np.ndarray:
    """``apply_rules`` on many lists at once: rows of consecutive ``groups`` (one int per row,
    a customer's candidates best first); the row positions to publish, each list's in order."""
    keep = np.flatnonzero(rules.allowed(items, categories))
    kept_groups = groups[keep]
    codes = _category_codes(categories[keep])
    if rules.mmr_lambda is not None:
        if vectors is None:
            raise ValueError("MMR needs item vectors")
        relevance = _min_max_within(kept_groups, scores[keep])
        chosen = _mmr_lists(
            kept_groups, relevance, vectors[keep], codes, n, rules.mmr_lambda, rules.max_per_category
        )
        return keep[chosen]
    if rules.max_per_category is not None:
        capped = _within_cap(kept_groups, codes, rules.max_per_category)
        keep, kept_groups = keep[capped], kept_groups[capped]
    first_n = pd.Series(kept_groups).groupby(kept_groups, sort=False).cumcount().to_numpy() < n
    return keep[first_n]


def _min_max_within(groups: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``min_max`` of each group's scores."""
    by_group = pd.Series(scores).groupby(groups, sort=False)
    low, high = by_group.transform("min").to_numpy(), by_group.transform("max").to_numpy()
    spread = np.where(high > low, high - low, 1.0)
    return np.where(high > low, (scores - low) / spread, 1.0)


# One row per candidate: the source (a model, or rules), its score, and why it is there.
# score_low, score_high: the score's 95% interval (kernels/intervals.py), NaN without one.
INTERVAL_COLUMNS = ["score_low", "score_high"]
CANDIDATE_COLUMNS = ["segment", "customer_id", "source", "item_id", "score", "reason", "reason_item_id"]
CANDIDATE_COLUMNS += INTERVAL_COLUMNS
LIST_COLUMNS = ["segment", "customer_id", "rank", "item_id", "score", "model", "reason", "reason_item_id"]
LIST_COLUMNS += INTERVAL_COLUMNS


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
    threshold = settings.rules.min_score_low
    if threshold is not None:  # NaN (no interval) compares False: kept
        candidates = candidates[~(candidates.score_low.astype(np.float64) < threshold)]
    if candidates.empty:
        return pd.DataFrame(columns=LIST_COLUMNS)
    keys = ["segment", "customer_id"]
    if settings.weights is not None:
        ranked = _blended(candidates, settings.weights).assign(model=settings.model)
    else:
        ranked = candidates.assign(model=candidates.source)
    ranked = ranked.sort_values([*keys, "score", "item_id"], ascending=[True, True, False, True])
    if settings.rules in (Rules(), Rules(min_score_low=threshold)):
        picked = ranked.groupby(keys, sort=False).head(settings.n)
    else:
        picked = ranked.iloc[_picked_rows(ranked, settings)]
    rank = picked.groupby(keys, sort=False).cumcount() + 1
    floats = {c: picked[c].astype(np.float32) for c in ["score", *INTERVAL_COLUMNS]}
    return picked.assign(rank=rank.astype(np.int32), **floats)[LIST_COLUMNS]


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
    # A blended score has no interval of its own.
    return blended.assign(score=blended.total, score_low=np.nan, score_high=np.nan).drop(
        columns=["part", "total"]
    )


def _picked_rows(ranked: pd.DataFrame, settings: ListSettings) -> np.ndarray:
    """Row positions in ``ranked`` (sorted by customer, best first) that the rules keep."""
    items = ranked.item_id.to_numpy()
    categories = np.array([settings.categories.get(item) for item in items], dtype=object)
    customers = ranked.groupby(["segment", "customer_id"], sort=False).ngroup().to_numpy()
    # A segment without trained vectors (too small to train) has zero vectors: MMR keeps the
    # relevance order there.
    rows = (
        _vector_rows(items, ranked.segment.to_numpy(), settings)
        if settings.rules.mmr_lambda is not None
        else None
    )
    return picked_rows(
        customers, items, ranked.score.to_numpy(np.float64), categories, rows, settings.n, settings.rules
    )


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
