"""Candidate rows: what each source proposes for a customer, and why (pandas/numpy; no Spark).

The batch scoring (inside its pandas UDFs) and the served model both build candidates here,
so a list's items and its ``reason`` column are decided in one place.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys_spark.kernels.catalog import Catalog
from recsys_spark.kernels.rerank import CANDIDATE_COLUMNS
from recsys_spark.kernels.routing import GLOBAL_SEGMENT
from recsys_spark.kernels.topn import TopN

# gold.recommendations.reason, per candidate source: why a row is there.
REASON_CODES = {
    "als": "factor_score",
    "bpr": "factor_score",
    "graph": "factor_score",
    "bias": "high_predicted_rating",  # explicit feedback's baseline: mean + customer + item bias
    "itemknn": "because_bought",  # reason_item_id: the bought item that contributed most
    "userknn": "similar_customer_bought",  # reason_item_id: the most similar customer who bought it
    "popularity": "popular_in_segment",
    "content": "similar_description",  # close to the descriptions of what the customer bought
    "rules": "bought_with_last_basket",  # reason_item_id: the item in the last basket
}
POPULAR_OVERALL = "popular_overall"  # the customer's segment was too small to train
# What each reason tells the customer (and the table comment of gold.recommendations).
REASON_MEANINGS = {
    "factor_score": "ALS/BPR: customers with similar purchases bought it",
    "because_bought": "ItemKNN: like reason_item_id, which the customer bought",
    "similar_customer_bought": (
        "UserKNN: customers like this one bought it; reason_item_id holds the most similar one's customer id"
    ),
    "similar_description": "content: described like what the customer bought",
    "bought_with_last_basket": (
        "hybrid: an association rule from reason_item_id, in the customer's last basket"
    ),
    "popular_in_segment": "best sellers of the segment",
    "high_predicted_rating": "bias baseline: rated highly, the customer's own leniency added",
    POPULAR_OVERALL: "best sellers of all segments: the segment was too small",
}


def reason_code(source: str) -> str:
    """The reason of ``source``'s rows; a source with none of its own is overall popularity."""
    return REASON_CODES.get(source, POPULAR_OVERALL)


def candidate_rows(
    segments: np.ndarray,
    customers: np.ndarray,
    catalog: Catalog,
    top: TopN,
    source: str,
    reason: str,
    because: np.ndarray | None = None,
    reason_ids: np.ndarray | None = None,
    interval: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """CANDIDATE_COLUMNS rows of a top-N result (one query per customer, in order);
    ``because``: per match, the index of what explains it (-1: none) among ``reason_ids``
    (default: the catalogue's items); ``interval``: per match, its score's (low, high)."""
    rows, ranks = np.nonzero(top.indices >= 0)
    reason_items = None
    if because is not None:
        codes = because[rows, ranks]
        named = catalog.ids if reason_ids is None else reason_ids
        reason_items = np.where(codes >= 0, named[np.maximum(codes, 0)], None)
    return pd.DataFrame(
        {
            "segment": np.asarray(segments, dtype=object)[rows],
            "customer_id": np.asarray(customers, dtype=object)[rows],
            "source": source,
            "item_id": catalog.ids[top.indices[rows, ranks]],
            "score": top.scores[rows, ranks].astype(np.float32),
            "reason": reason,
            "reason_item_id": reason_items,
            "score_low": interval[0][rows, ranks] if interval else np.nan,
            "score_high": interval[1][rows, ranks] if interval else np.nan,
        },
        columns=CANDIDATE_COLUMNS,
    )


def rule_candidates(pairs: pd.DataFrame, customers: pd.DataFrame, blocked: set[str], m: int) -> pd.DataFrame:
    """Single-item rules (``pairs``: segment, antecedent_id, item_id, confidence) fired by each
    customer's last basket (``customers``: segment, customer_id, history, last_basket): the
    consequents not bought yet, scored by their best confidence (reason_item_id: that rule's
    antecedent, the larger id on ties), top ``m`` (ties by item id). A segment without rules of
    its own uses the rules of all baskets (GLOBAL_SEGMENT)."""
    basket = customers[["segment", "customer_id", "history", "last_basket"]].explode("last_basket")
    basket = basket.dropna(subset=["last_basket"])
    own = set(pairs.segment)
    basket["rule_segment"] = np.where(basket.segment.isin(own), basket.segment, GLOBAL_SEGMENT)
    fired = basket.merge(
        pairs.rename(columns={"segment": "rule_segment", "antecedent_id": "last_basket"}),
        on=["rule_segment", "last_basket"],
    )
    bought = [item in set(history) for item, history in zip(fired.item_id, fired.history, strict=True)]
    fired = fired[~np.asarray(bought, dtype=bool) & ~fired.item_id.isin(blocked)]
    fired = fired.sort_values(["confidence", "last_basket"], ascending=[False, False])
    best = fired.drop_duplicates(["segment", "customer_id", "item_id"])
    best = best.sort_values(
        ["segment", "customer_id", "confidence", "item_id"], ascending=[True, True, False, True]
    )
    best = best.groupby(["segment", "customer_id"], sort=False).head(m)
    return pd.DataFrame(
        {
            "segment": best.segment.to_numpy(object),
            "customer_id": best.customer_id.to_numpy(object),
            "source": "rules",
            "item_id": best.item_id.to_numpy(object),
            "score": best.confidence.to_numpy(np.float32),
            "reason": REASON_CODES["rules"],
            "reason_item_id": best.last_basket.to_numpy(object),
        },
        columns=CANDIDATE_COLUMNS,
    )
