"""Add-ons for a cart: the association rules its items fire, then the items nearest the cart's
mean vector; the cart's own items and the exclude list never come back. Both halves are the
kernels the batch uses (``rule_candidates`` as the hybrid fires rules from a last basket, and
``Catalog.top_for_vectors`` as the similar-items lists are made)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from recsys_spark.kernels.candidates import rule_candidates
from recsys_spark.serving.published import Published

BOUGHT_WITH_CART = "bought_with_cart"  # an association rule fired by reason_item_id, in the cart
SIMILAR_TO_CART = "similar_to_cart"  # near the cart's items in the factor model's space
MAX_CART_ITEMS = 100


def cart_segment(published: Published, items: Sequence[str], customer_id: str | None) -> str | None:
    """The customer's home segment, else the segment whose vectors know most of the cart."""
    if customer_id is not None and customer_id in published.home:
        return published.home[customer_id]
    known = {s: int(np.isin(c.ids, list(items)).sum()) for s, c in published.vectors.items()}
    best = max(sorted(known), key=lambda s: known[s], default=None)
    return best if best is not None and known[best] > 0 else None


def addons(published: Published, items: Sequence[str], segment: str | None, n: int) -> list[dict[str, Any]]:
    """Up to ``n`` add-ons for ``items`` in ``segment``: rule consequents by confidence, then
    the nearest items by cosine, each with its reason and score."""
    rule_segment, pairs = published.rules_from(segment, items)
    cart = pd.DataFrame(
        {
            "segment": [rule_segment],
            "customer_id": [""],
            "history": [list(items)],
            "last_basket": [list(items)],
        }
    )
    fired = rule_candidates(pairs, cart, published.blocked, n)
    found = [
        {"item_id": item, "score": float(score), "reason": BOUGHT_WITH_CART, "reason_item_id": because}
        for item, score, because in zip(fired.item_id, fired.score, fired.reason_item_id, strict=True)
    ]
    catalog = published.vectors.get(segment or "")
    known = [] if catalog is None else np.flatnonzero(np.isin(catalog.ids, list(items)))
    if len(found) < n and len(known):
        mean = catalog.vectors[known].mean(axis=0, keepdims=True)
        exclude = [[*items, *(f["item_id"] for f in found)]]
        top = catalog.top_for_vectors(mean, exclude, n - len(found), cosine=True)
        indices, scores = top.row(0)
        found += [
            {"item_id": catalog.ids[i], "score": float(s), "reason": SIMILAR_TO_CART, "reason_item_id": None}
            for i, s in zip(indices, scores, strict=True)
        ]
    return found[:n]
