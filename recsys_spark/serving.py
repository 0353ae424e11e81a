"""The published model as an MLflow pyfunc: the trained tables it needs, saved as parquet
artifacts, and top-N for any customer from the kernels (no Spark needed to serve).

Input: a DataFrame with segment, customer_id and history (the item ids the customer bought);
optionally history_weights (their confidence weights, as ItemKNN scores them in the batch),
orders (their number of orders, for cold-start routing) and last_basket (the items of their
latest order, for the hybrid's rules). Output: segment, customer_id, rank, item_id, score.
The same kernels as the batch scoring decide the route (``kernels.routing``), blend the hybrid's
sources and apply the business rules (``kernels.rerank``). A customer the model does not know
(or a segment it was not trained on) gets overall popularity.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys_spark.kernels import rerank, routing
from recsys_spark.kernels.factors import FACTOR_MODELS
from recsys_spark.kernels.itemknn import ItemKnnModel
from recsys_spark.kernels.matrix import index_ids, index_lists, rows_of
from recsys_spark.kernels.topn import TopN, top_matches

OVERALL = "all"
OUTPUT_COLUMNS = ["segment", "customer_id", "rank", "item_id", "score"]


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
        frames = [f for f in frames if len(f)]
        if not frames:
            return pd.DataFrame(columns=OUTPUT_COLUMNS)
        return pd.concat(frames, ignore_index=True)[OUTPUT_COLUMNS]

    def _lists(self, part: pd.DataFrame, model: str, weights: dict[str, float] | None = None) -> pd.DataFrame:
        """The final top-N of ``model`` for ``part``: candidates, blend (hybrid), business rules."""
        if model == "hybrid":
            sources = [s for s, w in (weights or {}).items() if w > 0]
            frames = [
                self._rule_rows(part) if s == "rules" else self._source(part, s, known_only=True)
                for s in sources
            ]
            candidates = pd.concat([f for f in frames if len(f)] or [_empty()], ignore_index=True)
            settings = rerank.ListSettings(
                self.top_n, weights, "hybrid", self.rules, self.categories, self.vectors
            )
            lists = rerank.final_lists(candidates, settings) if len(candidates) else _empty()
            rest = part[~part.customer_id.isin(lists.customer_id)]
            frames = [f for f in (lists, self._lists(rest, "popularity_global")) if len(f)]
            return pd.concat(frames, ignore_index=True) if frames else _empty()
        depth = self.depth if self.rules.beyond_exclusion else self.top_n
        candidates = self._source(part, model, depth=depth)
        if not len(candidates):
            return _empty()
        settings = rerank.ListSettings(self.top_n, None, None, self.rules, self.categories, self.vectors)
        return rerank.final_lists(candidates, settings)

    def _source(
        self, part: pd.DataFrame, model: str, depth: int | None = None, known_only: bool = False
    ) -> pd.DataFrame:
        """``model``'s top ``depth`` (default the hybrid's candidates) as candidate rows; customers
        it cannot score get popularity unless ``known_only``."""
        n = depth or int(self.hybrid.get("candidates", self.top_n))
        frames = [
            self._segment(segment, rows, model, n, known_only)
            for segment, rows in part.groupby("segment", sort=False)
        ]
        frames = [f for f in frames if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else _empty()

    def _segment(
        self, segment: str, part: pd.DataFrame, model: str, n: int, known_only: bool
    ) -> pd.DataFrame:
        rest = part
        lists = _empty()
        items = self.items[(self.items.segment == segment) & (self.items.model == model)]
        if model == "itemknn" and self.neighbours is not None:
            entries = self.neighbours[self.neighbours.segment == segment]
            if len(entries):
                has_history = part.history.map(_size) > 0
                lists, rest = self._itemknn(segment, part[has_history], entries, n), part[~has_history]
        elif model in FACTOR_MODELS and len(items) and self.users is not None:
            users = self.users[
                (self.users.segment == segment)
                & (self.users.model == model)
                & self.users.customer_id.isin(part.customer_id)
            ]
            known = part[part.customer_id.isin(users.customer_id)]
            vectors = users.set_index("customer_id").loc[known.customer_id, "factors"]
            if len(known):
                lists = self._rank(segment, known, items, np.stack(vectors), n, model)
            rest = part[~part.customer_id.isin(users.customer_id)]
        elif model == "popularity":
            own = self.items[(self.items.segment == segment) & (self.items.model == "popularity")]
            if len(own):
                lists = self._rank(segment, part, own, np.ones((len(part), 1), np.float32), n, model)
                rest = part.iloc[:0]
        if known_only or not len(rest):
            return lists
        frames = [f for f in (lists, self._popular(rest, n)) if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else _empty()

    def _popular(self, part: pd.DataFrame, n: int) -> pd.DataFrame:
        overall = self.items[(self.items.segment == OVERALL) & (self.items.model == "popularity")]
        ones = np.ones((len(part), 1), np.float32)
        return self._rank(OVERALL, part, overall, ones, n, "popularity", keep_segment=True)

    def _rank(
        self,
        segment: str,
        part: pd.DataFrame,
        items: pd.DataFrame,
        vectors: np.ndarray,
        n: int,
        source: str,
        keep_segment: bool = False,
    ) -> pd.DataFrame:
        if not len(part) or not len(items):
            return _empty()
        ids = items.item_id.to_numpy()
        exclude = rows_of(index_lists(ids, part.history), len(ids))
        blocked = np.flatnonzero(np.isin(ids, list(self.rules.blocked)))
        top = top_matches(vectors, np.stack(items.factors.to_numpy()), n, exclude, blocked)
        return _rows(part, ids, top, None if keep_segment else segment, source)

    def _itemknn(self, segment: str, part: pd.DataFrame, entries: pd.DataFrame, n: int) -> pd.DataFrame:
        _, ids = index_ids(pd.concat([entries.item_id, entries.neighbour_item_id]))
        index = pd.Index(ids)
        rows, cols = index.get_indexer(entries.item_id), index.get_indexer(entries.neighbour_item_id)
        weights = entries.similarity.to_numpy(np.float32)
        similarity = sp.csr_matrix((weights, (rows, cols)), shape=(len(ids), len(ids)))
        # The batch weighs the history by confidence; without history_weights every item counts 1.
        weights = list(part.history_weights) if "history_weights" in part else None
        history = rows_of(index_lists(ids, part.history), len(ids), weights)
        blocked = np.flatnonzero(np.isin(ids, list(self.rules.blocked)))
        top = ItemKnnModel(similarity).recommend(np.arange(len(part)), history, n, blocked)
        return _rows(part, ids, top, segment, "itemknn")

    def _rule_rows(self, part: pd.DataFrame) -> pd.DataFrame:
        """The rules fired by each customer's last basket (as ``models.rules_candidates``)."""
        if self.pairs is None or "last_basket" not in part:
            return _empty()
        own = set(self.pairs.segment)
        basket = (
            part[["segment", "customer_id", "history", "last_basket"]]
            .explode("last_basket")
            .dropna(subset=["last_basket"])
        )
        basket["rule_segment"] = np.where(basket.segment.isin(own), basket.segment, OVERALL)
        fired = basket.merge(
            self.pairs.rename(columns={"segment": "rule_segment", "antecedent_id": "last_basket"}),
            on=["rule_segment", "last_basket"],
        )
        bought = [item in set(history) for item, history in zip(fired.item_id, fired.history, strict=True)]
        fired = fired[~np.asarray(bought, dtype=bool) & ~fired.item_id.isin(self.rules.blocked)]
        fired = fired.sort_values(["confidence", "last_basket"], ascending=[False, False])
        best = fired.drop_duplicates(["segment", "customer_id", "item_id"])
        best = best.sort_values(["confidence", "item_id"], ascending=[False, True])
        best = best.groupby(["segment", "customer_id"]).head(int(self.hybrid.get("candidates", self.top_n)))
        return pd.DataFrame(
            {
                "segment": best.segment,
                "customer_id": best.customer_id,
                "source": "rules",
                "item_id": best.item_id,
                "score": best.confidence.astype(np.float32),
                "reason": "rules",
                "reason_item_id": best.last_basket,
            }
        )


def _optional(context: Any, key: str) -> pd.DataFrame | None:
    path = context.artifacts.get(key)
    return pd.read_parquet(path) if path else None


def _size(items: Any) -> int:
    return 0 if items is None else len(items)


def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=rerank.CANDIDATE_COLUMNS)


def _rows(part: pd.DataFrame, ids: np.ndarray, top: TopN, segment: str | None, source: str) -> pd.DataFrame:
    """Candidate rows (``kernels.rerank.CANDIDATE_COLUMNS``) of a top-N result."""
    rows, ranks = np.nonzero(top.indices >= 0)
    return pd.DataFrame(
        {
            "segment": part.segment.to_numpy()[rows] if segment is None else segment,
            "customer_id": part.customer_id.to_numpy()[rows],
            "source": source,
            "item_id": ids[top.indices[rows, ranks]],
            "score": top.scores[rows, ranks],
            "reason": source,
            "reason_item_id": None,
        }
    )
