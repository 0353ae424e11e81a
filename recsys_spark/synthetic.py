"""Synthetic purchases with the shape of real retail data, for benchmarks and tests.

Items belong to categories and are power-law popular within them; each user prefers a few
categories (a sparse Dirichlet draw) and is power-law active. Deterministic for a seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys_spark.kernels.routing import GLOBAL_SEGMENT


def purchases(
    n_users: int = 100_000,
    n_items: int = 10_000,
    n_events: int = 3_000_000,
    n_categories: int = 50,
    n_segments: int = 1,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per purchase line: segment, customer_id, item_id, order_id, event_ts, quantity,
    unit_price, category. Ids are strings; segments are ``seg00``, ``seg01``… (``all`` for one)."""
    rng = np.random.default_rng(seed)
    item_category = rng.integers(0, n_categories, n_items)
    item_weight = 1.0 / np.arange(1, n_items + 1) ** 0.9  # power law, shuffled over ids below
    item_weight = item_weight[rng.permutation(n_items)]

    activity = rng.lognormal(0.0, 1.0, n_users)
    users = rng.choice(n_users, size=n_events, p=activity / activity.sum())
    preference = rng.dirichlet(np.full(n_categories, 0.1), n_users).cumsum(axis=1)
    draw = rng.random(n_events)
    categories = (draw[:, None] > preference[users]).sum(axis=1).clip(0, n_categories - 1)

    items = np.empty(n_events, np.int64)
    for category in range(n_categories):
        members = np.flatnonzero(item_category == category)
        events = np.flatnonzero(categories == category)
        if len(events) and not len(members):
            members = np.arange(n_items)  # an empty category falls back to any item
        cdf = item_weight[members].cumsum()
        picks = np.searchsorted(cdf, rng.random(len(events)) * cdf[-1])
        items[events] = members[picks.clip(0, len(members) - 1)]

    start = np.datetime64("2024-01-01T00:00:00")
    seconds = rng.integers(0, 365 * 24 * 3600, n_events)
    segment_of_user = (
        np.array([f"seg{s:02d}" for s in range(n_segments)])[np.arange(n_users) % n_segments]
        if n_segments > 1
        else np.full(n_users, GLOBAL_SEGMENT)
    )
    return pd.DataFrame(
        {
            "segment": segment_of_user[users],
            "customer_id": np.char.add("U", np.char.zfill(users.astype(str), 6)).astype(object),
            "item_id": np.char.add("I", np.char.zfill(items.astype(str), 5)).astype(object),
            "order_id": np.char.add("O", np.arange(n_events).astype(str)).astype(object),
            "event_ts": start + seconds.astype("timedelta64[s]"),
            "quantity": rng.integers(1, 6, n_events).astype(float),
            "unit_price": np.round(rng.lognormal(1.0, 0.6, n_events), 2),
            "category": np.char.add("cat", item_category[items].astype(str)).astype(object),
        }
    )
