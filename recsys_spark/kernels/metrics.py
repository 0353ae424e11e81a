"""Ranking metrics of a block of customers' lists (pandas/numpy; no Spark), computed where the
lists are made: the evaluation and tuning tasks measure each list as they make it, rather than
joining millions of list rows to the test pairs afterwards.

Binary relevance; per model × customer × K: precision, recall, NDCG (the ideal puts
min(|relevant|, K) hits first), MAP (hits so far / rank, summed over hits, over min(|relevant|,
K)), hit rate and MRR. Every customer given is scored for every model; no list scores 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

KEYS = ["segment", "customer_id"]
METRICS = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")
USER_METRIC_COLUMNS = ["model", *KEYS, "k", "n_relevant", *METRICS]
# What each list adds to its model's list metrics (``distributed.evaluation.list_metrics`` sums
# them): its length at K, the self-information of its items, how many are head items, its
# diversity, and (on the largest K's row only) its items in rank order, for the coverage.
LIST_MEASURE_COLUMNS = ["listed", "information", "head", "diversity", "items"]
MEASURED_COLUMNS = [*USER_METRIC_COLUMNS, *LIST_MEASURE_COLUMNS]


@dataclass(frozen=True)
class Catalogue:
    """What the list metrics know of each item, from the training data: its self-information
    -log2(buyers / customers) (an item nobody bought counts 1 buyer), whether it is among the
    top 1% by buyers (``head``), and its category (an item without one is its own; no
    categories at all: diversity is not measured)."""

    information: Mapping[str, float]
    unknown_information: float  # of an item without buyers
    head: frozenset[str] = frozenset()
    categories: Mapping[str, str | None] | None = None


def relevant_rows(customers: pd.DataFrame) -> pd.DataFrame:
    """A block's ``relevant`` arrays (each customer's test items) as (segment, customer_id,
    item_id) rows: the ``relevant`` the metrics below take."""
    pairs = customers[[*KEYS, "relevant"]].explode("relevant").dropna(subset=["relevant"])
    return pairs.rename(columns={"relevant": "item_id"})


def measured(
    lists: pd.DataFrame,
    relevant: pd.DataFrame,
    ks: Sequence[int],
    models: Sequence[str],
    catalogue: Catalogue,
) -> pd.DataFrame:
    """``user_metrics`` with each list's LIST_MEASURE_COLUMNS beside (MEASURED_COLUMNS)."""
    keys = ["model", *KEYS, "k"]
    metrics = user_metrics(lists, relevant, ks, models)
    rows = metrics.merge(list_measures(lists, ks, catalogue), on=keys, how="left")
    rows = rows.fillna({"listed": 0, "information": 0.0, "head": 0}).astype(
        {"listed": np.int32, "head": np.int32}
    )
    rows["items"] = [items if isinstance(items, list) else None for items in rows["items"]]  # NaN: no list
    return rows[MEASURED_COLUMNS]


def list_measures(lists: pd.DataFrame, ks: Sequence[int], catalogue: Catalogue) -> pd.DataFrame:
    """Per model × customer × K with a list: LIST_MEASURE_COLUMNS (sums per list as counts over
    group numbers: a block holds hundreds of thousands of lists)."""
    columns = ["model", *KEYS, "k", *LIST_MEASURE_COLUMNS]
    if lists.empty:
        return pd.DataFrame(columns=columns)
    rows = lists.sort_values(["model", *KEYS, "rank"], kind="stable")
    group = rows.groupby(["model", *KEYS], sort=False).ngroup().to_numpy()
    owners = rows[["model", *KEYS]].drop_duplicates().reset_index(drop=True)  # in group order
    items = pd.Series(rows.item_id.to_numpy())
    information = items.map(catalogue.information).fillna(catalogue.unknown_information).to_numpy()
    head = items.isin(catalogue.head).to_numpy(np.float64)
    kinds = items.map(catalogue.categories or {})
    kinds, _ = pd.factorize(kinds.where(kinds.notna(), items))  # an item without a category is its own
    rank, groups, kind_count, frames = rows["rank"].to_numpy(), len(owners), kinds.max() + 1, []
    for k in ks:
        within = rank <= k
        member = group[within]
        listed = np.bincount(member, minlength=groups)
        distinct = np.unique(member * kind_count + kinds[within]) // kind_count  # list × kind pairs
        present = listed > 0
        frame = owners[present].assign(
            k=k,
            listed=listed[present],
            information=np.bincount(member, information[within], groups)[present],
            head=np.bincount(member, head[within], groups)[present].astype(np.int64),
            diversity=(np.bincount(distinct, minlength=groups) / np.maximum(listed, 1))[present]
            if catalogue.categories is not None
            else np.nan,
        )
        frame["items"] = None
        if k == max(ks):  # the coverage reads the longest lists only
            shown = np.split(items.to_numpy()[within], np.cumsum(listed[present])[:-1])
            frame["items"] = [list(s) for s in shown]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)[columns]


def user_metrics(
    lists: pd.DataFrame, relevant: pd.DataFrame, ks: Sequence[int], models: Sequence[str]
) -> pd.DataFrame:
    """USER_METRIC_COLUMNS for every (``models`` × customer of ``relevant`` × ``ks``).

    ``lists``: model, segment, customer_id, rank (1..N), item_id; ``relevant``: segment,
    customer_id, item_id (each customer's test items; a customer is scored when it has one).
    """
    pairs = relevant[[*KEYS, "item_id"]].drop_duplicates()
    sizes = pairs.groupby(KEYS, sort=True).size().rename("n_relevant").reset_index()
    hits = lists[["model", *KEYS, "rank", "item_id"]].merge(pairs, on=[*KEYS, "item_id"])
    hits = hits.sort_values(["model", *KEYS, "rank"], kind="stable")
    # The i-th hit (1-based) of a list at rank r adds i / r to its average precision.
    hits["order"] = hits.groupby(["model", *KEYS], sort=False).cumcount() + 1
    grid = pd.MultiIndex.from_product(
        [list(models), range(len(sizes)), list(ks)], names=["model", "customer", "k"]
    ).to_frame(index=False)
    grid = grid.join(sizes, on="customer").drop(columns="customer")
    per_k = []
    for k in ks:
        within = hits[hits["rank"] <= k]
        rank = within["rank"].to_numpy(np.float64)
        parts = within[["model", *KEYS]].assign(
            hits=1.0, dcg=1.0 / np.log2(rank + 1.0), ap=within.order.to_numpy() / rank, first=rank
        )
        summed = parts.groupby(["model", *KEYS], sort=False).agg(
            hits=("hits", "sum"), dcg=("dcg", "sum"), ap=("ap", "sum"), first=("first", "min")
        )
        per_k.append(summed.assign(k=k).reset_index())
    found = pd.concat(per_k, ignore_index=True) if per_k else None
    scored = grid.merge(found, on=["model", *KEYS, "k"], how="left") if found is not None else grid
    return _metrics(scored.fillna({"hits": 0.0, "dcg": 0.0, "ap": 0.0}))


def _metrics(scored: pd.DataFrame) -> pd.DataFrame:
    k = scored.k.to_numpy(np.float64)
    relevant = scored.n_relevant.to_numpy(np.float64)
    ideal_hits = np.minimum(relevant, k)
    hits = scored.hits.to_numpy(np.float64)
    first = scored["first"].to_numpy(np.float64)
    return scored.assign(
        precision=hits / k,
        recall=hits / relevant,
        ndcg=scored.dcg.to_numpy() / ideal_dcg(ideal_hits),
        map=scored.ap.to_numpy() / ideal_hits,
        hit_rate=(hits > 0).astype(np.float64),
        mrr=np.where(np.isnan(first), 0.0, 1.0 / np.where(np.isnan(first), 1.0, first)),
        k=scored.k.astype(np.int32),
        n_relevant=scored.n_relevant.astype(np.int64),
    )[USER_METRIC_COLUMNS]


def ideal_dcg(hits: np.ndarray) -> np.ndarray:
    """The DCG of ``hits`` hits in the first places (0 for none)."""
    top = int(np.max(hits, initial=0))
    cumulative = np.r_[0.0, np.cumsum(1.0 / np.log2(np.arange(2, top + 2)))]
    return cumulative[np.asarray(hits, dtype=np.int64)]


# Explicit feedback: how far predicted ratings fall from the test ratings (lower is better).
RATING_METRICS = ("rmse", "mae")


def rating_errors(sums: pd.DataFrame, everyone: str) -> pd.DataFrame:
    """RMSE and MAE per model × segment, and per model over every segment (``everyone``), from
    the per-segment sums of ``sums`` (model, segment, pairs, squared, absolute: the count, the
    sum of squared and the sum of absolute errors); pooled, so every rating weighs the same."""
    pooled = sums.groupby("model", as_index=False)[["pairs", "squared", "absolute"]].sum()
    # Data without segments has only the global one: its rows are the pooled ones.
    segments = sums[sums.segment != everyone]
    scopes = pd.concat([segments, pooled.assign(segment=everyone)], ignore_index=True)
    pairs = scopes.pairs.to_numpy(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        rmse = np.sqrt(scopes.squared.to_numpy(np.float64) / pairs)
        mae = scopes.absolute.to_numpy(np.float64) / pairs
    return scopes[["model", "segment", "pairs"]].assign(rmse=rmse, mae=mae)
