"""Published lists for a block of customers (pandas/numpy; no Spark): the route, each source's
candidates, the blend, the business rules and the top-up.

One implementation of "a customer's published list": the batch runs ``ListMaker`` inside one
``mapInPandas`` per step (score, evaluate, tuning), the served model calls it per request.
Customers are rows with segment, customer_id and history; history_weights (ItemKNN), orders
(routing), last_basket (the hybrid's rules) and ``vector_<model>`` (the customer's factors of a
factor model; looked up in ``ListTables.users`` when absent) where a list needs them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recsys_spark.kernels import graph_filter, rerank, routing
from recsys_spark.kernels.candidates import POPULAR_OVERALL, candidate_rows, reason_code, rule_candidates
from recsys_spark.kernels.catalog import Catalog
from recsys_spark.kernels.factors import FACTOR_MODELS
from recsys_spark.kernels.intervals import (
    INTERVAL_MODELS,
    Posterior,
    als_intervals,
    bpr_intervals,
    content_intervals,
    graph_intervals,
    itemknn_intervals,
    userknn_intervals,
)
from recsys_spark.kernels.routing import GLOBAL_SEGMENT
from recsys_spark.kernels.topn import TopN
from recsys_spark.kernels.topup import Bestsellers, top_up
from recsys_spark.kernels.userknn import UserKnnParams

KEYS = ["segment", "customer_id"]
# Lists of several models (or settings) side by side, for measuring them: ``model`` is the label.
LABELLED_COLUMNS = ["model", "segment", "customer_id", "rank", "item_id"]


def labelled(lists: pd.DataFrame, label: str) -> pd.DataFrame:
    """``lists`` (LIST_COLUMNS) as LABELLED_COLUMNS rows of ``label``."""
    return lists[LABELLED_COLUMNS[1:]].assign(model=label)[LABELLED_COLUMNS]


class ListError(RuntimeError):
    """Scoring a segment's customers failed; the message names the segment and the model."""


NO_SEGMENT = ""  # an unknown customer's segment: no table holds it, so overall popularity


def with_histories(requests: pd.DataFrame, histories: pd.DataFrame | None) -> pd.DataFrame:
    """``requests`` without a ``history`` column (customer_id, perhaps segment) completed from
    ``histories`` (``distributed.lists.customer_histories`` rows): each customer's history in
    the requested segment, or in every segment they have one. A customer ``histories`` lacks
    gets an empty one (no orders) in the requested segment, else in NO_SEGMENT."""
    if "history" in requests or histories is None:
        return requests
    keys = [k for k in ("segment", "customer_id") if k in requests]
    found = requests[keys].drop_duplicates().merge(histories, on=keys, how="left")
    unknown = found.history.isna()
    if unknown.any():
        found["segment"] = found.segment.fillna(NO_SEGMENT)
        for column in ("history", "history_weights", "last_basket"):
            if column in found:
                found[column] = [[] if u else v for u, v in zip(unknown, found[column], strict=True)]
        if "orders" in found:
            found["orders"] = found.orders.fillna(0).astype(np.int64)
    return found.reset_index(drop=True)


def vector_column(model: str) -> str:
    """The customers' column holding their ``model`` factors."""
    return f"vector_{model}"


@dataclass(frozen=True)
class ListTables:
    """What lists are made from, as pandas. ``items``: segment, item_id, model, factors (segment
    popularity only where the segment is big enough for its own: ``kernels.popularity.has_own_list``);
    ``users``: segment, customer_id, model, factors (None: the customers carry their vectors);
    ``neighbours``: ItemKNN's, one ``catalog.neighbour_matrix`` row per segment; ``pairs``:
    single-item rules (segment, antecedent_id, item_id, confidence); ``categories``: item -> category;
    ``customers``: UserKNN's, one ``userknn.matrix_row`` row per segment."""

    items: pd.DataFrame
    users: pd.DataFrame | None = None
    neighbours: pd.DataFrame | None = None
    pairs: pd.DataFrame | None = None
    categories: Mapping[str, str] = field(default_factory=dict)
    customers: pd.DataFrame | None = None


@dataclass(frozen=True)
class ListSpec:
    """What to publish: the champion ``model``, N, the business rules and, with the hybrid
    enabled, its settings (``models.hybrid`` as a dict: weights, short_history_weights,
    short_history_orders, candidates); with UserKNN enabled, its settings (``models.userknn``)."""

    model: str
    top_n: int
    rules: rerank.Rules = rerank.Rules()
    depth: int = 0  # candidates the business rules choose from (business_rules.candidates)
    hybrid: Mapping[str, Any] = field(default_factory=dict)
    userknn: Mapping[str, Any] = field(default_factory=dict)
    intervals: bool = False  # score_low / score_high on the rows of ``kernels.intervals.INTERVAL_MODELS``
    # Segment -> model -> the settings ALS and BPR were fitted with there (``kernels.intervals``).
    posteriors: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @staticmethod
    def of(settings: Mapping[str, Any]) -> ListSpec:
        """From the served model's config (``serving.settings.serving_settings``)."""
        rules = settings.get("rules") or {}
        top_n = int(settings["top_n"])
        return ListSpec(
            settings["model"],
            top_n,
            rerank.Rules(
                frozenset(rules.get("blocked", [])),
                frozenset(rules.get("category_include", [])),
                frozenset(rules.get("category_exclude", [])),
                rules.get("max_per_category"),
                rules.get("mmr_lambda"),
                rules.get("min_score_low"),
            ),
            int(rules.get("candidates", top_n)),
            settings.get("hybrid") or {},
            settings.get("userknn") or {},
            bool(settings.get("intervals", False)),
            settings.get("posteriors") or {},
        )

    @property
    def short_history_orders(self) -> int:
        return int(self.hybrid.get("short_history_orders", 0)) if self.hybrid else 0


@dataclass(frozen=True)
class ListMaker:
    """Lists of ``spec`` from ``tables``; the catalogues are built once per model × segment ×
    exclude list and shared by the copies ``with_rules`` makes.

    Example::

        maker = ListMaker.of(ListTables(items, users), ListSpec("als", top_n=10))
        maker.predict(customers)  # routed and topped up, as gold.recommendations
        maker.published(customers, "popularity")  # one model's lists, as evaluate measures them
    """

    tables: ListTables
    spec: ListSpec
    vectors: Mapping[str, rerank.ItemVectors]  # segment -> the vectors MMR compares
    bestsellers: Bestsellers
    catalogs: dict[tuple[str, str, frozenset[str]], Catalog | None] = field(default_factory=dict)

    @staticmethod
    def of(tables: ListTables, spec: ListSpec) -> ListMaker:
        items = tables.items
        vectors: dict[str, rerank.ItemVectors] = {}
        for model in rerank.MMR_VECTOR_MODELS:
            for segment, part in items[items.model == model].groupby("segment"):
                if segment not in vectors:
                    vectors[segment] = rerank.ItemVectors.of(
                        part.item_id.to_numpy(), np.stack(part.factors.to_numpy())
                    )
        return ListMaker(tables, spec, vectors, Bestsellers.of(items[items.model == "popularity"]))

    def with_rules(self, rules: rerank.Rules) -> ListMaker:
        """The same lists under other business rules (e.g. one rule at a time, to measure it)."""
        return dataclasses.replace(self, spec=dataclasses.replace(self.spec, rules=rules))

    def routes(self, customers: pd.DataFrame) -> np.ndarray:
        """Each customer's cold-start route (``kernels.routing``): by ``orders`` when given; else
        no history means no orders and any history counts as long."""
        if "orders" in customers:
            orders = customers.orders.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            orders = np.where(customers.history.map(_size) > 0, np.inf, 0.0)
        return routing.routes(orders, self.spec.short_history_orders)

    def route_lists(self, route: str, customers: pd.DataFrame) -> pd.DataFrame:
        """The published lists of ``customers`` on ``route``: the champion, the hybrid with
        short-history weights, or segment popularity."""
        if route == routing.SHORT_HISTORY:
            return self.published(customers, "hybrid", self.spec.hybrid["short_history_weights"])
        if route == routing.POPULARITY:
            return self.published(customers, "popularity")
        return self.published(customers, self.spec.model, self.spec.hybrid.get("weights"))

    def predict(self, customers: pd.DataFrame) -> pd.DataFrame:
        """Every customer's routed, published top N (LIST_COLUMNS)."""
        frames = [
            self.route_lists(route, part)
            for route, part in customers.groupby(self.routes(customers), sort=False)
        ]
        return _concat(frames, rerank.LIST_COLUMNS)

    def published(
        self,
        customers: pd.DataFrame,
        model: str,
        weights: Mapping[str, float] | None = None,
        candidates: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """``model``'s top N for ``customers`` after the business rules, topped up from the best
        sellers where short; for the hybrid, ``weights`` and its ``candidates`` when made already
        (``hybrid_candidates``)."""
        if not len(customers):
            return pd.DataFrame(columns=rerank.LIST_COLUMNS)
        lists = self.lists(customers, model, weights, candidates)
        short = self._short_lists(customers, lists)
        added = top_up(short, self.bestsellers, self.spec.top_n, self.spec.rules, self.categories)
        return _concat([lists, added], rerank.LIST_COLUMNS)

    def _short_lists(self, customers: pd.DataFrame, lists: pd.DataFrame) -> pd.DataFrame:
        """The ``customers`` (segment, customer_id, history) whose list is under N long, the
        ones the top-up fills, each with its items in rank order (``listed``)."""
        lengths = lists.groupby(KEYS, sort=False).size().rename("length")
        short = customers[[*KEYS, "history"]].join(lengths, on=KEYS)
        short = short[~(short.length >= self.spec.top_n)].drop(columns="length")  # NaN: no list
        theirs = lists.merge(short[KEYS], on=KEYS)  # only these rows are gathered into lists
        listed = (
            theirs.sort_values([*KEYS, "rank"]).groupby(KEYS, sort=False).item_id.agg(list).rename("listed")
        )
        short = short.join(listed, on=KEYS)
        short["listed"] = [items if isinstance(items, list) else [] for items in short.listed]
        return short

    @property
    def categories(self) -> Mapping[str, str]:
        return self.tables.categories

    def lists(
        self,
        customers: pd.DataFrame,
        model: str,
        weights: Mapping[str, float] | None = None,
        candidates: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """``published`` before the top-up; customers the model has nothing for get overall popularity."""
        if model == "hybrid":
            if candidates is None:
                candidates = self.hybrid_candidates(customers, weights or {})
            return self._hybrid(customers, weights or {}, candidates)
        rules = self.spec.rules
        if not rules.beyond_exclusion:  # the model's own order, cut at N
            return _ranked(self._source(customers, model, self.spec.top_n))
        candidates = self._source(customers, model, self.spec.depth)
        return self._final(candidates, rerank.ListSettings(self.spec.top_n, None, None, rules))

    def hybrid_candidates(self, customers: pd.DataFrame, weights: Mapping[str, float]) -> pd.DataFrame:
        """Each source weighted above 0: its top ``hybrid.candidates`` per customer it can score."""
        m = int(self.spec.hybrid.get("candidates", self.spec.top_n))
        frames = []
        for source in [s for s, w in weights.items() if w > 0]:
            if source != "rules":
                frames.append(self._source(customers, source, m, known_only=True))
            elif "last_basket" in customers:  # a request without last baskets fires no rules
                if self.tables.pairs is None:
                    raise ValueError("the hybrid weighs rules but no association rules were given")
                frames.append(rule_candidates(self.tables.pairs, customers, set(self.spec.rules.blocked), m))
        return _concat(frames)

    def _hybrid(
        self, customers: pd.DataFrame, weights: Mapping[str, float], candidates: pd.DataFrame
    ) -> pd.DataFrame:
        """The candidates blended and cut by the rules; customers no source could score get
        overall popularity's top N."""
        settings = rerank.ListSettings(self.spec.top_n, weights, "hybrid", self.spec.rules)
        lists = self._final(candidates, settings)
        listed = pd.MultiIndex.from_frame(lists[KEYS])
        rest = customers[~pd.MultiIndex.from_frame(customers[KEYS]).isin(listed)]
        fallback = _ranked(self._source(rest, "popularity_global", self.spec.top_n))
        return _concat([lists, fallback], rerank.LIST_COLUMNS)

    def _final(self, candidates: pd.DataFrame, settings: rerank.ListSettings) -> pd.DataFrame:
        if not len(candidates):
            return pd.DataFrame(columns=rerank.LIST_COLUMNS)
        settings = dataclasses.replace(settings, categories=self.categories, vectors=self.vectors)
        return rerank.final_lists(candidates, settings)

    def _source(self, customers: pd.DataFrame, model: str, n: int, known_only: bool = False) -> pd.DataFrame:
        """``model``'s top ``n`` per customer as candidate rows; customers it cannot score get
        overall popularity unless ``known_only``."""
        frames, rest = [], []
        for segment, rows in customers.groupby("segment", sort=False):
            try:
                scored, unscored = self._segment(segment, rows, model, n)
            except Exception as exc:
                raise ListError(f"segment {segment!r}, {model}: {type(exc).__name__}: {exc}") from exc
            frames.append(scored)
            rest.append(unscored)
        unknown = pd.concat(rest) if rest else customers.iloc[:0]
        catalog = self._catalog("popularity", GLOBAL_SEGMENT)
        if not known_only and len(unknown) and catalog is not None:
            ones = np.ones((len(unknown), 1), np.float32)
            top = catalog.top_for_vectors(ones, list(unknown.history), n)
            frames.append(
                candidate_rows(
                    unknown.segment, unknown.customer_id, catalog, top, "popularity", POPULAR_OVERALL
                )
            )
        return _concat(frames)

    def _segment(
        self, segment: str, customers: pd.DataFrame, model: str, n: int
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(candidate rows of the customers ``model`` scores in ``segment``, the others)."""
        catalog = self._catalog(model, segment)
        if catalog is None:
            return _concat([]), customers
        if model in ("itemknn", "userknn"):
            return self._from_histories(catalog, customers, model, n), customers.iloc[:0]
        if model in FACTOR_MODELS:
            known, vectors = self._user_vectors(segment, customers, model)
            if not known.any():
                return _concat([]), customers
            scored = customers[known]
            top = catalog.top_for_vectors(vectors, list(scored.history), n)
            interval = self._factor_interval(segment, catalog, scored, model, top, vectors)
            reason = reason_code(model)
            rows = candidate_rows(
                scored.segment, scored.customer_id, catalog, top, model, reason, interval=interval
            )
            return rows, customers[~known]
        reason = reason_code(model)
        ones = np.ones((len(customers), 1), np.float32)  # popularity: a rank-1 factor model
        top = catalog.top_for_vectors(ones, list(customers.history), n)
        rows = candidate_rows(customers.segment, customers.customer_id, catalog, top, model, reason)
        return rows, customers.iloc[:0]

    def _from_histories(self, catalog: Catalog, customers: pd.DataFrame, model: str, n: int) -> pd.DataFrame:
        """ItemKNN's or UserKNN's candidate rows, each with its reason (the bought item, the
        similar customer) and, with ``spec.intervals``, its bootstrap interval."""
        weights = list(customers.history_weights) if "history_weights" in customers else None
        ids = customers.customer_id.to_numpy(dtype=object)
        reason = reason_code(model)
        history = catalog.history_rows(list(customers.history), weights)
        if model == "userknn":
            assert catalog.customers is not None
            top, because = catalog.top_for_customers(history, ids, n)
            named = catalog.customers.customer_ids
            interval = None
            if self.spec.intervals:
                own = pd.Index(named).get_indexer(ids)
                interval = userknn_intervals(catalog.customers, history, top.indices, ids, own)
            return candidate_rows(
                customers.segment, ids, catalog, top, model, reason, because, named, interval=interval
            )
        top, because = catalog.top_for_history_rows(history, n)
        interval = None
        if self.spec.intervals:
            assert catalog.similarity is not None
            interval = itemknn_intervals(catalog.similarity, history, top.indices, ids)
        return candidate_rows(customers.segment, ids, catalog, top, model, reason, because, interval=interval)

    def _factor_interval(
        self,
        segment: str,
        catalog: Catalog,
        customers: pd.DataFrame,
        model: str,
        top: TopN,
        vectors: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Where ``spec.intervals`` asks for them, ``top``'s intervals (``kernels.intervals``): ALS's
        posterior and BPR's re-fit where the segment's settings are known (``spec.posteriors``),
        the graph filter's where its fold rows are, content's; None for the other models."""
        fitted_with = self.spec.posteriors.get(segment, {}).get(model)
        if not self.spec.intervals or model not in INTERVAL_MODELS:
            return None
        if (model in ("als", "bpr") and fitted_with is None) or (model == "graph" and catalog.fold is None):
            return None
        assert catalog.vectors is not None
        weights = list(customers.history_weights) if "history_weights" in customers else None
        history = catalog.history_rows(list(customers.history), weights)  # each kernel reads its own way
        ids = customers.customer_id.to_numpy(dtype=object)
        if model == "content":
            return content_intervals(catalog.vectors, history, top.indices, ids)
        if model == "graph":
            return graph_intervals(catalog.vectors, catalog.fold, history, top.indices, ids)
        if model == "bpr":
            negatives = self._purchase_shares(segment, catalog)
            regularization = float(fitted_with["regularization"])
            return bpr_intervals(
                catalog.vectors, vectors, history, top.indices, ids, negatives, regularization
            )
        return als_intervals(catalog.vectors, history, top.indices, top.scores, Posterior.of(fitted_with))

    def _purchase_shares(self, segment: str, catalog: Catalog) -> np.ndarray:
        """Each of ``catalog``'s items' share of the segment's purchases (BPR's negative draws):
        the segment's popularity scores (buyers; decayed with a half-life), else equal shares."""
        popular = self._catalog("popularity", segment)
        if popular is None or popular.vectors is None:
            return np.full(len(catalog.ids), 1.0 / len(catalog.ids))
        buyers = pd.Series(popular.vectors[:, 0].astype(np.float64), index=popular.ids)
        shares = buyers.reindex(catalog.ids).fillna(0.0).to_numpy()
        return shares / shares.sum() if shares.sum() > 0 else np.full(len(shares), 1.0 / len(shares))

    def _user_vectors(
        self, segment: str, customers: pd.DataFrame, model: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """(which customers have ``model`` factors, those factors stacked)."""
        column = vector_column(model)
        if column in customers:
            known = customers[column].notna().to_numpy()
            found = customers[column][known]
        else:
            users = self.tables.users
            if users is None:
                return np.zeros(len(customers), bool), np.empty((0, 0), np.float32)
            own = users[(users.segment == segment) & (users.model == model)].set_index("customer_id").factors
            known = customers.customer_id.isin(own.index).to_numpy()
            found = own.loc[customers.customer_id[known]]
        stacked = np.stack(found.to_numpy()) if len(found) else np.empty((0, 0), np.float32)
        return known, stacked

    def _catalog(self, model: str, segment: str) -> Catalog | None:
        """``model``'s candidates in ``segment`` (None: not trained there), built once."""
        key = (model, segment, self.spec.rules.blocked)
        if key not in self.catalogs:
            self.catalogs[key] = self._build_catalog(model, segment)
        return self.catalogs[key]

    def _build_catalog(self, model: str, segment: str) -> Catalog | None:
        blocked = set(self.spec.rules.blocked)
        if model == "itemknn":
            neighbours = self.tables.neighbours
            if neighbours is None:
                return None
            matrix = neighbours[neighbours.segment == segment]
            return Catalog.of_neighbours(matrix.iloc[0], blocked) if len(matrix) else None
        if model == "userknn":
            customers = self.tables.customers
            if customers is None:
                return None
            matrix = customers[customers.segment == segment]
            params = UserKnnParams(**self.spec.userknn)
            return Catalog.of_customers(matrix.iloc[0], blocked, params) if len(matrix) else None
        items = self.tables.items
        items = items[(items.segment == segment) & (items.model == model)]
        if not len(items):
            return None
        return Catalog.of_vectors(
            items.item_id.to_numpy(),
            np.stack(items.factors.to_numpy()),
            blocked,
            fold=self._fold(model, segment, items),
        )

    def _fold(self, model: str, segment: str, items: pd.DataFrame) -> np.ndarray | None:
        """The graph filter's fold rows of ``items`` (its rows in ``tables.items``), when the
        tables carry them (score intervals); None for the other models."""
        if model != "graph":
            return None
        tables = self.tables.items
        rows = tables[(tables.segment == segment) & (tables.model == graph_filter.FOLD_MODEL)]
        if not len(rows):
            return None
        return np.stack(rows.set_index("item_id").factors.loc[items.item_id].to_numpy())


def _ranked(candidates: pd.DataFrame) -> pd.DataFrame:
    """Candidate rows, each customer's in their source's order, as list rows ranked in that order."""
    if not len(candidates):
        return pd.DataFrame(columns=rerank.LIST_COLUMNS)
    rank = candidates.groupby(KEYS, sort=False).cumcount() + 1
    return candidates.assign(rank=rank.astype(np.int32), model=candidates.source)[rerank.LIST_COLUMNS]


def _size(items: Any) -> int:
    return 0 if items is None else len(items)


def _concat(frames: list[pd.DataFrame], columns: list[str] = rerank.CANDIDATE_COLUMNS) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
