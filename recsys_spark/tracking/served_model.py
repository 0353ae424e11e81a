"""The published model as an MLflow pyfunc: the trained tables it needs, saved as parquet
artifacts, and top-N for any customer from the kernels (no Spark needed to serve).

Input: a DataFrame with segment, customer_id and history (the item ids the customer bought);
optionally history_weights (their confidence weights, as ItemKNN scores them in the batch),
orders (their number of orders, for cold-start routing) and last_basket (the items of their
latest order, for the hybrid's rules). Output: segment, customer_id, rank, item_id, score,
reason, reason_item_id, as in gold.recommendations.

The batch scoring and this model call the same kernels: ``kernels.routing`` decides the route,
``kernels.catalog`` matches, ``kernels.candidates`` makes the candidates and their reasons
(rules fired by the last basket included), ``kernels.rerank`` blends and applies the business
rules, ``kernels.topup`` fills a short list from the best sellers. A customer the model does
not know (or a segment it was not trained on) gets overall popularity. Imports no Spark: a
serving endpoint has none.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from recsys_spark.kernels import rerank, routing
from recsys_spark.kernels.candidates import POPULAR_OVERALL, candidate_rows, reason_code, rule_candidates
from recsys_spark.kernels.catalog import Catalog
from recsys_spark.kernels.factors import FACTOR_MODELS
from recsys_spark.kernels.routing import GLOBAL_SEGMENT
from recsys_spark.kernels.topup import Bestsellers, top_up

OUTPUT_COLUMNS = ["segment", "customer_id", "rank", "item_id", "score", "reason", "reason_item_id"]


class PublishedRecommender(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        config = context.model_config
        self.model, self.top_n = config["model"], int(config["top_n"])
        self.hybrid: dict[str, Any] = config.get("hybrid") or {}
        rules = config.get("rules") or {}
        self.rules = rerank.Rules(
            frozenset(rules.get("blocked", [])),
            frozenset(rules.get("category_include", [])),
            frozenset(rules.get("category_exclude", [])),
            rules.get("max_per_category"),
            rules.get("mmr_lambda"),
        )
        self.depth = int(rules.get("candidates", self.top_n))
        self.items = pd.read_parquet(context.artifacts["item_factors"])
        self.users = _optional(context, "user_factors")
        self.neighbours = _optional(context, "item_neighbours")
        self.pairs = _optional(
            context, "rules"
        )  # single-item rules: segment, antecedent_id, item_id, confidence
        categories = _optional(context, "categories")
        self.categories = (
            dict(zip(categories.item_id, categories.category, strict=True)) if categories is not None else {}
        )
        self.vectors: dict[str, rerank.ItemVectors] = {}
        for model in rerank.MMR_VECTOR_MODELS:
            for segment, part in self.items[self.items.model == model].groupby("segment"):
                self.vectors.setdefault(
                    segment, rerank.ItemVectors.of(part.item_id.to_numpy(), np.stack(part.factors.to_numpy()))
                )
        self.catalogs: dict[tuple[str, str], Catalog | None] = {}
        self.bestsellers = Bestsellers.of(self.items[self.items.model == "popularity"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        if "orders" in model_input:
            orders = model_input.orders.to_numpy(dtype=np.float64, na_value=np.nan)
        else:  # unknown: no history means no orders, any history counts as long
            orders = np.where(model_input.history.map(_size) > 0, np.inf, 0.0)
        threshold = int(self.hybrid.get("short_history_orders", 0)) if self.hybrid else 0
        routes = routing.routes(orders, threshold)
        frames = []
        for route, part in model_input.groupby(routes, sort=False):
            if route == routing.SHORT_HISTORY:
                frames.append(self._lists(part, "hybrid", self.hybrid["short_history_weights"]))
            elif route == routing.POPULARITY:
                frames.append(self._lists(part, "popularity"))
            else:
                frames.append(self._lists(part, self.model, self.hybrid.get("weights")))
        lists = _concat(frames, rerank.LIST_COLUMNS)
        added = top_up(
            _with_listed(model_input, lists), self.bestsellers, self.top_n, self.rules, self.categories
        )
        return _concat([lists, added], rerank.LIST_COLUMNS)[OUTPUT_COLUMNS]

    def _lists(self, part: pd.DataFrame, model: str, weights: dict[str, float] | None = None) -> pd.DataFrame:
        """The final top-N of ``model`` for ``part`` (as ``distributed.lists.published_lists``)."""
        if model == "hybrid":
            return self._hybrid(part, weights or {})
        depth = self.depth if self.rules.beyond_exclusion else self.top_n
        candidates = self._source(part, model, depth)
        rules = self.rules if self.rules.beyond_exclusion else rerank.Rules()
        return self._final(candidates, rerank.ListSettings(self.top_n, None, None, rules))

    def _hybrid(self, part: pd.DataFrame, weights: dict[str, float]) -> pd.DataFrame:
        """Each weighted source's candidates blended and cut by the rules; customers no source
        could score get overall popularity's top N."""
        m = int(self.hybrid.get("candidates", self.top_n))
        frames = []
        for source in [s for s, w in weights.items() if w > 0]:
            if source == "rules":
                if self.pairs is not None and "last_basket" in part:
                    frames.append(rule_candidates(self.pairs, part, set(self.rules.blocked), m))
            else:
                frames.append(self._source(part, source, m, known_only=True))
        lists = self._final(_concat(frames), rerank.ListSettings(self.top_n, weights, "hybrid", self.rules))
        listed = pd.MultiIndex.from_frame(lists[["segment", "customer_id"]])
        rest = part[~pd.MultiIndex.from_frame(part[["segment", "customer_id"]]).isin(listed)]
        fallback = self._final(
            self._source(rest, "popularity_global", self.top_n), rerank.ListSettings(self.top_n)
        )
        return _concat([lists, fallback], rerank.LIST_COLUMNS)

    def _final(self, candidates: pd.DataFrame, settings: rerank.ListSettings) -> pd.DataFrame:
        if not len(candidates):
            return pd.DataFrame(columns=rerank.LIST_COLUMNS)
        settings = dataclasses.replace(settings, categories=self.categories, vectors=self.vectors)
        return rerank.final_lists(candidates, settings)

    def _source(self, part: pd.DataFrame, model: str, n: int, known_only: bool = False) -> pd.DataFrame:
        """``model``'s top ``n`` per customer as candidate rows; customers it cannot score get
        overall popularity unless ``known_only``."""
        frames, rest = [], []
        for segment, rows in part.groupby("segment", sort=False):
            scored, unscored = self._segment(segment, rows, model, n)
            frames.append(scored)
            rest.append(unscored)
        if not known_only and rest:
            unknown = pd.concat(rest)
            catalog = self._catalog("popularity", GLOBAL_SEGMENT)
            if len(unknown) and catalog is not None:
                ones = np.ones((len(unknown), 1), np.float32)
                top = catalog.top_for_vectors(ones, list(unknown.history), n)
                rows = candidate_rows(
                    unknown.segment, unknown.customer_id, catalog, top, "popularity", POPULAR_OVERALL
                )
                frames.append(rows)
        return _concat(frames)

    def _segment(
        self, segment: str, part: pd.DataFrame, model: str, n: int
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(candidate rows of the customers ``model`` scores in ``segment``, the others)."""
        catalog = self._catalog(model, segment)
        if catalog is None:
            return _concat([]), part
        reason = reason_code(model)
        if model == "itemknn":
            weights = list(part.history_weights) if "history_weights" in part else None
            top, because = catalog.top_for_histories(list(part.history), weights, n)
            return candidate_rows(
                part.segment, part.customer_id, catalog, top, model, reason, because
            ), part.iloc[:0]
        if model in FACTOR_MODELS:
            users = self.users[(self.users.segment == segment) & (self.users.model == model)]
            vectors = users.set_index("customer_id").factors
            known = part[part.customer_id.isin(vectors.index)]
            rest = part[~part.customer_id.isin(vectors.index)]
            if not len(known):
                return _concat([]), rest
            top = catalog.top_for_vectors(np.stack(vectors.loc[known.customer_id]), list(known.history), n)
            return candidate_rows(known.segment, known.customer_id, catalog, top, model, reason), rest
        ones = np.ones((len(part), 1), np.float32)  # popularity: a rank-1 factor model
        top = catalog.top_for_vectors(ones, list(part.history), n)
        return candidate_rows(part.segment, part.customer_id, catalog, top, model, reason), part.iloc[:0]

    def _catalog(self, model: str, segment: str) -> Catalog | None:
        """``model``'s candidates in ``segment`` (None: not trained there), built once."""
        key = (model, segment)
        if key not in self.catalogs:
            self.catalogs[key] = self._build_catalog(model, segment)
        return self.catalogs[key]

    def _build_catalog(self, model: str, segment: str) -> Catalog | None:
        blocked = set(self.rules.blocked)
        if model == "itemknn":
            if self.neighbours is None:
                return None
            entries = self.neighbours[
                (self.neighbours.segment == segment) & (self.neighbours.model == "itemknn")
            ]
            if not len(entries):
                return None
            return Catalog.of_neighbours(
                entries.item_id, entries.neighbour_item_id, entries.similarity, blocked
            )
        if model in FACTOR_MODELS and self.users is None:
            return None
        items = self.items[(self.items.segment == segment) & (self.items.model == model)]
        if not len(items):
            return None
        return Catalog.of_vectors(items.item_id.to_numpy(), np.stack(items.factors.to_numpy()), blocked)


def _with_listed(customers: pd.DataFrame, lists: pd.DataFrame) -> pd.DataFrame:
    """``customers`` (segment, customer_id, history) with ``listed``: their list's items by rank."""
    keys = ["segment", "customer_id"]
    listed = lists.sort_values([*keys, "rank"]).groupby(keys, sort=False).item_id.agg(list).rename("listed")
    return customers[[*keys, "history"]].join(listed, on=keys)


def _optional(context: Any, key: str) -> pd.DataFrame | None:
    path = context.artifacts.get(key)
    return pd.read_parquet(path) if path else None


def _size(items: Any) -> int:
    return 0 if items is None else len(items)


def _concat(frames: list[pd.DataFrame], columns: list[str] = rerank.CANDIDATE_COLUMNS) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
