"""Published lists in Spark: each customer's top-N of a model, the hybrid's candidates and
blend, cold-start routing, and the item and customer match tables (similar items, audience,
lookalikes). The matching, the candidates' reasons, the blend and the business rules are the
kernels' (``kernels.catalog``, ``kernels.candidates``, ``kernels.rerank``), shared with the
served model. Takes and returns DataFrames; reads and writes no tables.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from functools import reduce

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from recsys_spark.config import ModelsConfig
from recsys_spark.distributed import scoring
from recsys_spark.distributed.analytics import item_categories
from recsys_spark.distributed.baskets import single_item_rules
from recsys_spark.distributed.reranking import LIST_SCHEMA, final_lists
from recsys_spark.distributed.training import Fitted, confidence_weights
from recsys_spark.kernels import candidates as kernel_candidates
from recsys_spark.kernels import routing
from recsys_spark.kernels.candidates import POPULAR_OVERALL, reason_code
from recsys_spark.kernels.catalog import Catalog
from recsys_spark.kernels.factors import FACTOR_MODELS
from recsys_spark.kernels.fusion import FUSED_MODEL
from recsys_spark.kernels.popularity import has_own_list
from recsys_spark.kernels.rerank import CANDIDATE_COLUMNS, MMR_VECTOR_MODELS, ItemVectors, ListSettings, Rules
from recsys_spark.kernels.routing import GLOBAL_SEGMENT
from recsys_spark.kernels.topup import Bestsellers, top_up

SCORING_THREADS = 1  # scoring tasks run side by side, one per core
KEYS = ["segment", "customer_id"]
CANDIDATE_SCHEMA = (
    "segment string, customer_id string, source string, item_id string, score float, reason string, "
    "reason_item_id string"
)


def customer_histories(models: ModelsConfig, interactions: DataFrame, publish: str) -> DataFrame:
    """Per segment × customer: the items bought (``history``); with their weights
    (``history_weights``) for ItemKNN; for the hybrid also ``last_basket`` and ``orders``."""
    if publish not in ("itemknn", "hybrid"):
        bought = F.array_sort(F.collect_set("item_id")).alias("history")
        return interactions.groupBy("segment", "customer_id").agg(bought)
    entries = F.array_sort(F.collect_list(F.struct("item_id", "weight")))
    histories = (
        confidence_weights(models, interactions)
        .groupBy("segment", "customer_id")
        .agg(entries.alias("entries"))
        .select(
            "segment",
            "customer_id",
            F.col("entries.item_id").alias("history"),
            F.col("entries.weight").alias("history_weights"),
        )
    )
    return histories if publish == "itemknn" else histories.join(last_baskets(interactions), KEYS)


def with_unknown_customers(histories: DataFrame, customers: DataFrame) -> DataFrame:
    """``histories`` (``customer_histories`` for the hybrid) of ``customers`` (segment,
    customer_id), each customer without one given an empty history and 0 orders: a customer new
    since the data the models saw, whom routing sends to popularity as the served model does."""
    known = histories.join(customers, KEYS, "left_semi")
    empty_items = F.array().cast("array<string>")
    unknown = customers.join(histories.select(*KEYS), KEYS, "left_anti").select(
        *KEYS,
        empty_items.alias("history"),
        F.array().cast(histories.schema["history_weights"].dataType).alias("history_weights"),
        empty_items.alias("last_basket"),
        F.lit(0).cast(histories.schema["orders"].dataType).alias("orders"),
    )
    return known.unionByName(unknown)


def last_baskets(interactions: DataFrame) -> DataFrame:
    """Per segment × customer: the items of their latest order (``last_basket``) and ``orders``."""
    latest = interactions.groupBy(*KEYS).agg(
        F.max_by("order_id", F.struct("event_ts", "order_id")).alias("last_order"),
        F.countDistinct("order_id").alias("orders"),
    )
    return (
        interactions.join(latest, KEYS)
        .where(F.col("order_id") == F.col("last_order"))
        .groupBy(*KEYS)
        .agg(F.array_sort(F.collect_set("item_id")).alias("last_basket"), F.first("orders").alias("orders"))
    )


def _catalogs(
    rows: pd.DataFrame, id_column: str, blocked: set[str], cosine: bool = False
) -> dict[str, Catalog]:
    """Per segment, the candidates in ``rows`` (segment, ``id_column``, factors)."""
    return {
        segment: Catalog.of_vectors(
            part[id_column].to_numpy(), np.stack(part.factors.to_numpy()), blocked, cosine
        )
        for segment, part in rows.groupby("segment")
    }


def _of_model(items: pd.DataFrame, model: str) -> pd.DataFrame:
    return items[items.model == model][["segment", "item_id", "factors"]]


def _self_queries(spark: SparkSession, rows: pd.DataFrame, id_column: str) -> DataFrame:
    """``rows`` (segment, ``id_column``, factors) as queries against their own segment's
    candidates, each excluding itself."""
    frame = spark.createDataFrame(rows, f"segment string, {id_column} string, factors array<float>")
    return frame.select(
        "segment",
        F.col("segment").alias("catalog"),
        F.col(id_column).alias("query_id"),
        F.col("factors").alias("vector"),
        F.array(id_column).alias("exclude"),
    )


def _knn_catalogs(neighbours: DataFrame, blocked: set[str]) -> dict[str, Catalog]:
    rows = neighbours.select("segment", "item_id", "neighbour_item_id", "similarity").toPandas()
    return {
        segment: Catalog.of_neighbours(
            part.item_id.to_numpy(), part.neighbour_item_id.to_numpy(), part.similarity.to_numpy(), blocked
        )
        for segment, part in rows.groupby("segment")
    }


def _model_catalogs(
    models: ModelsConfig,
    publish: str,
    fitted: Fitted,
    items: pd.DataFrame,
    blocked: set[str],
    popular: dict[str, Catalog],
    segment_users: dict[str, int],
) -> dict[str, Catalog]:
    """Per segment where ``publish`` has its own list, its candidates."""
    if publish == "itemknn":
        return _knn_catalogs(fitted.item_neighbours.where(F.col("model") == "itemknn"), blocked)
    if publish == "popularity":
        # Popularity exists for every segment; one below the training thresholds still gets
        # overall popularity, as it would with any other published model.
        return {s: c for s, c in popular.items() if _own_popularity(models, s, segment_users, len(c.ids))}
    if publish == "popularity_global":
        return {}
    return _catalogs(_of_model(items, publish), "item_id", blocked)


def _own_popularity(models: ModelsConfig, segment: str, segment_users: dict[str, int], items: int) -> bool:
    users = segment_users.get(segment, 0)
    return has_own_list(segment, users, items, models.min_segment_users, models.min_segment_items)


def recommend(
    models: ModelsConfig,
    publish: str,
    fitted: Fitted,
    items: pd.DataFrame,
    histories: DataFrame,
    blocked: set[str],
    n: int,
    segment_users: dict[str, int] | None = None,
) -> tuple[DataFrame, set[str]]:
    """Top ``n`` of model ``publish`` for the customers in ``histories`` of trained segments,
    overall popularity for the rest; and the trained segments.

    ``items``: ``fitted.item_factors`` as pandas. ``publish`` may also be ``popularity_global``
    (everyone gets overall popularity: the baseline). For ``popularity``, ``segment_users``
    (customers per segment) decides which segments are big enough for their own popularity.
    """
    rows, threads = models.score_block_rows, SCORING_THREADS
    popular = _catalogs(_of_model(items, "popularity"), "item_id", blocked)
    catalogs = _model_catalogs(models, publish, fitted, items, blocked, popular, segment_users or {})
    trained = set(catalogs)
    in_trained = F.col("segment").isin(sorted(trained)) if trained else F.lit(False)
    ones = F.array(F.lit(1.0).cast("float"))
    if publish in FACTOR_MODELS:
        # Left join: a customer who arrived after training has no factors and gets popularity.
        factors = fitted.user_factors.where(F.col("model") == publish)
        vectors = factors.select("segment", "customer_id", F.col("factors").alias("vector"))
        candidates = histories.join(vectors, ["segment", "customer_id"], "left")
        has_model = in_trained & F.col("vector").isNotNull()
    else:
        candidates = histories.withColumn("vector", ones)
        has_model = in_trained
    ours = candidates.where(has_model).withColumn("catalog", F.col("segment"))
    if publish == "itemknn":
        queries = ours.withColumnRenamed("customer_id", "query_id")
        matches = scoring.knn_recommendations(queries, catalogs, n, rows, threads)
    else:
        queries = _as_queries(ours, "customer_id", F.col("history"))
        matches = scoring.top_matches_by_segment(queries, catalogs, n, rows, threads)
    reason = reason_code(publish)
    published = matches.withColumns({"model": F.lit(publish), "reason": F.lit(reason)})

    rest = candidates.where(~has_model).withColumns({"catalog": F.lit(GLOBAL_SEGMENT), "vector": ones})
    overall = {GLOBAL_SEGMENT: popular[GLOBAL_SEGMENT]} if GLOBAL_SEGMENT in popular else {}
    fallback = scoring.top_matches_by_segment(
        _as_queries(rest, "customer_id", F.col("history")), overall, n, rows, threads
    )
    fallback = fallback.withColumns({"model": F.lit("popularity"), "reason": F.lit(POPULAR_OVERALL)})
    frame = published.unionByName(fallback).select(
        "segment",
        F.col("query_id").alias("customer_id"),
        "rank",
        F.col("match_id").alias("item_id"),
        "score",
        "model",
        "reason",
        F.col("reason_id").alias("reason_item_id"),
    )
    return frame, trained


@dataclass(frozen=True)
class ListContext:
    """What turns model scores into published lists besides the models: the business rules,
    item categories and MMR vectors, and the association rules the hybrid reads."""

    rules: Rules
    categories: dict[str, str]
    vectors: dict[str, ItemVectors]  # per segment
    depth: int  # candidates the business rules choose from (conf business_rules.candidates)
    association_rules: DataFrame | None = None
    segment_users: dict[str, int] | None = None  # customers per segment (popularity's threshold)

    @property
    def blocked(self) -> set[str]:
        return set(self.rules.blocked)

    def with_rules(self, rules: Rules) -> ListContext:
        return dataclasses.replace(self, rules=rules)


def list_context(
    interactions: DataFrame,
    items: pd.DataFrame,
    rules: Rules,
    depth: int,
    association_rules: DataFrame | None,
    segment_users: dict[str, int] | None = None,
) -> ListContext:
    """Categories from silver's category column; MMR vectors from the fused embedding where trained,
    else content, else ALS factors (``items``: silver.item_factors as pandas)."""
    categories = dict(item_categories(interactions).collect())
    vectors: dict[str, ItemVectors] = {}
    for model in MMR_VECTOR_MODELS:
        for segment, part in _of_model(items, model).groupby("segment"):
            if segment not in vectors:
                vectors[segment] = ItemVectors.of(part.item_id.to_numpy(), np.stack(part.factors.to_numpy()))
    return ListContext(rules, categories, vectors, depth, association_rules, segment_users)


def published_lists(
    models: ModelsConfig,
    publish: str,
    fitted: Fitted,
    items: pd.DataFrame,
    histories: DataFrame,
    context: ListContext,
    n: int,
    weights: dict[str, float] | None = None,
    candidates: DataFrame | None = None,
) -> DataFrame:
    """The top ``n`` of ``publish`` per customer of ``histories``, after the business rules,
    topped up from popularity where short (``topped_up``); customers the model has nothing for
    get overall popularity. For the hybrid: ``weights`` when not conf's
    ``models.hybrid.weights``, and ``candidates`` when already made (``hybrid_candidates``)."""
    lists = _model_lists(models, publish, fitted, items, histories, context, n, weights, candidates)
    return topped_up(models, lists, histories, items, context, n)


def topped_up(
    models: ModelsConfig,
    lists: DataFrame,
    histories: DataFrame,
    items: pd.DataFrame,
    context: ListContext,
    n: int,
) -> DataFrame:
    """``lists`` with each customer's list shorter than ``n`` filled by ``kernels.topup``: the
    segment's best sellers, then the overall ones, never a bought, listed or blocked item."""
    popular = _of_model(items, "popularity")
    counts, users = popular.segment.value_counts(), context.segment_users or {}
    own = [s for s, size in counts.items() if _own_popularity(models, s, users, size)]
    bestsellers = Bestsellers.of(popular[popular.segment.isin(own)])
    listed = lists.groupBy(*KEYS).agg(
        F.transform(F.array_sort(F.collect_list(F.struct("rank", "item_id"))), lambda e: e["item_id"]).alias(
            "listed"
        )
    )
    short = (
        histories.select(*KEYS, "history")
        .join(listed, KEYS, "left")
        .where(F.coalesce(F.size("listed"), F.lit(0)) < n)
    )
    rules, categories = context.rules, context.categories

    def fill(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for customers in batches:
            yield top_up(customers, bestsellers, n, rules, categories)

    added = short.mapInPandas(fill, LIST_SCHEMA)
    return lists.unionByName(added.select(*lists.columns))


def _model_lists(
    models: ModelsConfig,
    publish: str,
    fitted: Fitted,
    items: pd.DataFrame,
    histories: DataFrame,
    context: ListContext,
    n: int,
    weights: dict[str, float] | None,
    candidates: DataFrame | None,
) -> DataFrame:
    """``publish``'s lists before the top-up (``published_lists``)."""
    if publish == "hybrid":
        weights = weights or models.hybrid.weights
        if candidates is None:
            candidates = hybrid_candidates(models, fitted, items, histories, context, weights)
        settings = ListSettings(n, weights, "hybrid", context.rules, context.categories, context.vectors)
        lists = final_lists(candidates, settings).withColumn("fallback", F.lit(False))
        # Customers no source could score get overall popularity: both lists are made for all
        # and the fallback kept only where the hybrid has nothing (one pass over the candidates).
        fallback, _ = recommend(models, "popularity_global", fitted, items, histories, context.blocked, n)
        both = lists.unionByName(fallback.withColumn("fallback", F.lit(True)))
        has_hybrid = F.min("fallback").over(Window.partitionBy(*KEYS))
        return both.withColumn("keep", F.col("fallback") == has_hybrid).where("keep").drop("fallback", "keep")
    active = context.rules.beyond_exclusion
    depth = context.depth if active else n
    lists, _ = recommend(
        models, publish, fitted, items, histories, context.blocked, depth, context.segment_users
    )
    if not active:
        return lists
    candidates = lists.withColumnRenamed("model", "source").select(*CANDIDATE_COLUMNS)
    return final_lists(
        candidates, ListSettings(n, None, None, context.rules, context.categories, context.vectors)
    )


def hybrid_candidates(
    models: ModelsConfig,
    fitted: Fitted,
    items: pd.DataFrame,
    histories: DataFrame,
    context: ListContext,
    weights: dict[str, float],
) -> DataFrame:
    """Each weighted source's top ``models.hybrid.candidates`` per customer (CANDIDATE_COLUMNS);
    a customer a source cannot score (untrained segment, no factors) gets no rows from it."""
    m = models.hybrid.candidates
    frames = []
    for source in [s for s, w in weights.items() if w > 0]:
        if source == "rules":
            if context.association_rules is None:
                raise ValueError("the hybrid weighs rules but no association rules were given")
            frames.append(rules_candidates(context.association_rules, histories, context.blocked, m))
            continue
        lists, _ = recommend(models, source, fitted, items, histories, context.blocked, m)
        frames.append(
            lists.where(F.col("model") == source)
            .withColumnRenamed("model", "source")
            .select(*CANDIDATE_COLUMNS)
        )
    return reduce(DataFrame.unionByName, frames)


def rules_candidates(rules: DataFrame, histories: DataFrame, blocked: set[str], m: int) -> DataFrame:
    """``kernels.candidates.rule_candidates`` for every customer of ``histories`` (with
    ``last_basket``), in a ``mapInPandas``; the single-item rules travel in the closure."""
    pairs = single_item_rules(rules, "antecedent_id", "item_id")
    pairs = pairs.select("segment", "antecedent_id", "item_id", "confidence").toPandas()

    def fired(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for customers in batches:
            yield kernel_candidates.rule_candidates(pairs, customers, blocked, m)

    customers = histories.select(*KEYS, "history", "last_basket")
    return customers.mapInPandas(fired, CANDIDATE_SCHEMA)


def route(models: ModelsConfig, orders: Column) -> Column:
    """The cold-start route (``kernels.routing``) of a customer with ``orders`` orders. The
    short-history route needs the hybrid enabled."""
    threshold = models.hybrid.short_history_orders if "hybrid" in models.enabled else 0

    @F.pandas_udf("string")  # type: ignore[call-overload]
    def routes_of(counts: pd.Series) -> pd.Series:
        return pd.Series(routing.routes(counts.to_numpy(dtype=np.float64, na_value=np.nan), threshold))

    return routes_of(orders.cast("double"))


def routed_lists(
    models: ModelsConfig,
    publish: str,
    fitted: Fitted,
    items: pd.DataFrame,
    histories: DataFrame,
    context: ListContext,
    n: int,
) -> DataFrame:
    """``published_lists`` for each cold-start route: the champion ``publish``, the hybrid with
    short-history weights, or segment popularity (``histories`` needs ``orders``)."""
    routed = with_routes(models, histories)
    champion = published_lists(models, publish, fitted, items, on_route(routed, routing.CHAMPION), context, n)
    return champion.unionByName(cold_start_lists(models, fitted, items, routed, context, n))


def with_routes(models: ModelsConfig, histories: DataFrame) -> DataFrame:
    """``histories`` (with ``orders``) and each customer's cold-start ``route``."""
    return histories.withColumn("route", route(models, F.col("orders")))


def on_route(routed: DataFrame, name: str) -> DataFrame:
    """The histories of ``with_routes``' customers on route ``name``."""
    return routed.where(F.col("route") == name).drop("route")


def cold_start_lists(
    models: ModelsConfig,
    fitted: Fitted,
    items: pd.DataFrame,
    routed: DataFrame,
    context: ListContext,
    n: int,
    short_candidates: DataFrame | None = None,
) -> DataFrame:
    """The lists of ``with_routes``' customers off the champion route, whatever the champion:
    segment popularity without history, the hybrid with short-history weights for short ones
    (``short_candidates``: its candidates when already made, ``short_history_candidates``)."""
    lists = published_lists(
        models, "popularity", fitted, items, on_route(routed, routing.POPULARITY), context, n
    )
    if not has_short_history_route(models):
        return lists
    weights = models.hybrid.short_history_weights
    short = on_route(routed, routing.SHORT_HISTORY)
    hybrid = published_lists(models, "hybrid", fitted, items, short, context, n, weights, short_candidates)
    return lists.unionByName(hybrid)


def has_short_history_route(models: ModelsConfig) -> bool:
    return "hybrid" in models.enabled and models.hybrid.short_history_orders > 0


def short_history_candidates(
    models: ModelsConfig, fitted: Fitted, items: pd.DataFrame, routed: DataFrame, context: ListContext
) -> DataFrame | None:
    """The short-history route's hybrid candidates (None without that route), to make once and
    reuse across lists that differ only in their business rules."""
    if not has_short_history_route(models):
        return None
    short = on_route(routed, routing.SHORT_HISTORY)
    return hybrid_candidates(models, fitted, items, short, context, models.hybrid.short_history_weights)


def _as_queries(frame: DataFrame, id_column: str, exclude: Column) -> DataFrame:
    return frame.select(
        "segment", "catalog", F.col(id_column).alias("query_id"), "vector", exclude.alias("exclude")
    )


def similar_items(
    models: ModelsConfig, items: pd.DataFrame, neighbours: DataFrame, blocked: set[str], threads: int
) -> DataFrame | None:
    """Top-K other items per item: cosine of each factor model's item factors, and ItemKNN's neighbours."""
    spark = neighbours.sparkSession
    frames = []
    # The fused embedding also places items nobody bought yet (by their description).
    fused = [FUSED_MODEL] if (items.model == FUSED_MODEL).any() else []
    for model in [m for m in models.enabled if m in FACTOR_MODELS] + fused:
        rows = _of_model(items, model)
        catalogs = _catalogs(rows, "item_id", blocked, cosine=True)
        queries = _self_queries(spark, rows, "item_id")
        matches = scoring.top_matches_by_segment(
            queries, catalogs, models.similar_top_k, models.score_block_rows, threads, cosine=True
        )
        frames.append(matches.withColumn("model", F.lit(model)))
    if "itemknn" in models.enabled:
        order = Window.partitionBy("segment", "item_id").orderBy(F.desc("similarity"), "neighbour_item_id")
        ranked = (
            neighbours.where(
                (F.col("model") == "itemknn")
                & (F.col("item_id") != F.col("neighbour_item_id"))
                & (F.col("similarity") > 0)
                & ~F.col("neighbour_item_id").isin(sorted(blocked))
            )
            .withColumn("rank", F.row_number().over(order))
            .where(F.col("rank") <= models.similar_top_k)
        )
        frames.append(
            ranked.select(
                "segment",
                F.col("item_id").alias("query_id"),
                F.col("rank").cast("int").alias("rank"),
                F.col("neighbour_item_id").alias("match_id"),
                F.col("similarity").cast("float").alias("score"),
                F.lit("itemknn").alias("model"),
            )
        )
    if not frames:
        return None
    union = frames[0].select("segment", "query_id", "rank", "match_id", "score", "model")
    for frame in frames[1:]:
        union = union.unionByName(frame.select(*union.columns))
    return _named_matches(union, "item_id", "similar_item_id")


def _named_matches(matches: DataFrame, query_as: str, match_as: str, model: str | None = None) -> DataFrame:
    """Top-matches rows (segment, query_id, rank, match_id, score) with their table's column
    names, and the model (``model``, or the rows' own model column)."""
    return matches.select(
        "segment",
        F.col("query_id").alias(query_as),
        "rank",
        F.col("match_id").alias(match_as),
        "score",
        F.lit(model).alias("model") if model else F.col("model"),
    )


def item_audience(
    spark: SparkSession,
    block_rows: int,
    model: str,
    items: pd.DataFrame,
    user_factors: DataFrame,
    interactions: DataFrame,
    top_k: int,
    item_ids: list[str] | None = None,
) -> DataFrame:
    """Per item (of ``item_ids``, or all), the ``top_k`` customers most likely to buy it among
    those who have not: segment, item_id, rank, customer_id, score, model."""
    users = _user_rows(user_factors, model)
    candidates = _of_model(items, model)
    if item_ids is not None:
        candidates = candidates[candidates.item_id.isin(item_ids)]
    buyers = interactions.groupBy("segment", F.col("item_id").alias("query_id")).agg(
        F.collect_set("customer_id").alias("buyers")
    )
    item_queries = (
        _self_queries(spark, candidates, "item_id")
        .join(buyers, ["segment", "query_id"], "left")
        .withColumn("exclude", F.coalesce("buyers", F.array().cast("array<string>")))
    )
    audience = scoring.top_matches_by_segment(
        item_queries, _catalogs(users, "customer_id", set()), top_k, block_rows, SCORING_THREADS
    )
    return _named_matches(audience, "item_id", "customer_id", model)


def _user_rows(user_factors: DataFrame, model: str) -> pd.DataFrame:
    """``model``'s customer factors as pandas: segment, customer_id, factors."""
    return user_factors.where(F.col("model") == model).select("segment", "customer_id", "factors").toPandas()


def lookalikes(spark: SparkSession, models: ModelsConfig, model: str, user_factors: DataFrame) -> DataFrame:
    """Each customer's most similar customers (cosine of user factors): segment, customer_id, rank,
    similar_customer_id, score, model."""
    users = _user_rows(user_factors, model)
    matches = scoring.top_matches_by_segment(
        _self_queries(spark, users, "customer_id"),
        _catalogs(users, "customer_id", set(), cosine=True),
        models.lookalike_top_k,
        models.score_block_rows,
        SCORING_THREADS,
        cosine=True,
    )
    return _named_matches(matches, "customer_id", "similar_customer_id", model)
