"""Published lists in Spark: the customers' histories (and factors) that lists are made from,
``kernels.lists`` run on every block of customers in one ``mapInPandas`` (the served model
calls the same kernel), and the item and customer match tables (similar items, audience,
lookalikes). Takes and returns DataFrames; reads and writes no tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from recsys_spark.config import ModelsConfig
from recsys_spark.distributed import scoring
from recsys_spark.distributed.analytics import item_categories
from recsys_spark.distributed.baskets import single_item_rules
from recsys_spark.distributed.evaluation import rating_sums
from recsys_spark.distributed.scoring import ScoringError
from recsys_spark.distributed.training import (
    Fitted,
    TrainSettings,
    confidence_weights,
    executor_cores,
    rating_weights,
)
from recsys_spark.kernels import graph_filter, routing
from recsys_spark.kernels.catalog import NEIGHBOUR_MATRIX_SCHEMA, Catalog, neighbour_matrix
from recsys_spark.kernels.factors import FACTOR_MODELS
from recsys_spark.kernels.fusion import FUSED_MODEL
from recsys_spark.kernels.lists import KEYS, ListError, ListTables, vector_column
from recsys_spark.kernels.popularity import has_own_list
from recsys_spark.kernels.rerank import MMR_VECTOR_MODELS
from recsys_spark.kernels.topn import limit_threads
from recsys_spark.kernels.userknn import CUSTOMER_MATRIX_SCHEMA, matrix_row

SCORING_THREADS = 1  # scoring tasks run side by side, one per core
LIST_SCHEMA = (
    "segment string, customer_id string, rank int, item_id string, score float, model string, "
    "reason string, reason_item_id string, score_low float, score_high float"
)


def customer_histories(models: ModelsConfig, interactions: DataFrame, publish: str) -> DataFrame:
    """Per segment × customer: the items bought (``history``); with their weights
    (``history_weights``) for ItemKNN, UserKNN and ALS (its intervals); for the hybrid also
    ``last_basket`` and ``orders``."""
    if publish not in ("itemknn", "userknn", "als", "hybrid"):
        bought = F.array_sort(F.collect_set("item_id")).alias("history")
        return interactions.groupBy("segment", "customer_id").agg(bought)
    # Every aggregate below is per customer: one shuffle by customer serves them all (Spark
    # reuses it), where grouping by customer x item, then by customer, shuffled twice.
    by_customer = interactions.repartition(*KEYS)
    entries = F.array_sort(F.collect_list(F.struct("item_id", "weight")))
    histories = (
        confidence_weights(models, by_customer)
        .groupBy("segment", "customer_id")
        .agg(entries.alias("entries"))
        .select(
            "segment",
            "customer_id",
            F.col("entries.item_id").alias("history"),
            F.col("entries.weight").alias("history_weights"),
        )
    )
    return histories if publish != "hybrid" else histories.join(last_baskets(by_customer), KEYS)


def history_kind(models: ModelsConfig, publish: str) -> str:
    """What ``customer_histories`` must build for scoring with ``publish``: the hybrid's
    (orders, last baskets) when it is published or the short-history route sends customers to
    it, else only what ``publish`` reads."""
    short_route = "hybrid" in models.enabled and models.hybrid.short_history_orders > 0
    return "hybrid" if short_route else publish


def interval_settings(
    fitted: Fitted, settings: TrainSettings, interactions: DataFrame
) -> dict[str, dict[str, dict[str, Any]]]:
    """Segment -> model -> what ALS and BPR were fitted with there, for their score intervals
    (``kernels.intervals``): ALS's alpha, regularization, own log scale and engine
    (``Posterior``), BPR's regularization. With explicit ratings ALS's engine is "explicit",
    with the noise variance of its errors on ``interactions``' ratings (those it was fitted to)."""
    trained = fitted.user_factors.where(F.col("model").isin(["als", "bpr"])).select(
        "segment", "model", "engine"
    )
    explicit = settings.als.feedback == "explicit"
    noise = _rating_noise(fitted, interactions) if explicit and "als" in settings.models else {}
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for segment, model, engine in trained.distinct().collect():
        own = settings.for_segment(segment)
        if model == "bpr":
            found.setdefault(segment, {})[model] = {"regularization": own.bpr.regularization}
            continue
        if explicit and segment not in noise:  # no rating ALS predicts there: no noise to scale by
            continue
        found.setdefault(segment, {})[model] = {
            "alpha": own.als.alpha,
            "regularization": own.als.regularization,
            "log_scale": own.als.log_scale,
            "engine": "explicit" if explicit else engine,
            **({"noise": noise[segment], "factors": own.als.factors} if explicit else {}),
        }
    return found


def _rating_noise(fitted: Fitted, interactions: DataFrame) -> dict[str, float]:
    """Per segment, explicit ALS's mean squared error on the ratings it was fitted to."""
    ratings = rating_weights(interactions).select(*KEYS, "item_id", F.col("weight").alias("rating"))
    sums = rating_sums(ratings, fitted.user_factors, fitted.item_factors, ["als"])
    return {row.segment: row.squared / row.pairs for row in sums.itertuples() if row.pairs > 0}


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
    """Per segment × customer: the items of their latest order (``last_basket``) and ``orders``,
    in one aggregation (each customer's lines are few; a join back to the lines costs a shuffle)."""
    lines = interactions.groupBy(*KEYS).agg(
        F.max_by("order_id", F.struct("event_ts", "order_id")).alias("last_order"),
        F.collect_list(F.struct("order_id", "item_id")).alias("lines"),
    )
    latest = F.filter("lines", lambda line: line["order_id"] == F.col("last_order"))
    return lines.select(
        *KEYS,
        F.array_sort(F.array_distinct(F.transform(latest, lambda line: line["item_id"]))).alias(
            "last_basket"
        ),
        F.size(F.array_distinct(F.transform("lines", lambda line: line["order_id"]))).alias("orders"),
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


def route(models: ModelsConfig, orders: Column) -> Column:
    """The cold-start route (``kernels.routing``) of a customer with ``orders`` orders. The
    short-history route needs the hybrid enabled."""
    threshold = models.hybrid.short_history_orders if "hybrid" in models.enabled else 0

    @F.pandas_udf("string")  # type: ignore[call-overload]
    def routes_of(counts: pd.Series) -> pd.Series:
        return pd.Series(routing.routes(counts.to_numpy(dtype=np.float64, na_value=np.nan), threshold))

    return routes_of(orders.cast("double"))


def list_tables(
    models: ModelsConfig,
    fitted: Fitted,
    items: pd.DataFrame,
    interactions: DataFrame,
    association_rules: DataFrame | None,
    segment_users: dict[str, int],
    sources: set[str],
    with_users: bool = False,
) -> ListTables:
    """What ``kernels.lists`` makes the lists of ``sources`` from, as pandas: ``items``
    (``fitted.item_factors`` as pandas) of those models and of the MMR vectors, segment
    popularity only where the segment is big enough for its own (``segment_users``: customers per
    segment); ItemKNN's neighbours, UserKNN's customer x item matrix of ``interactions``, the
    single-item rules, the categories of ``interactions``; the user factors only ``with_users``
    (the batch joins them to the customers instead)."""
    folds = {graph_filter.FOLD_MODEL} if "graph" in sources else set()  # its score intervals
    wanted = items[items.model.isin(sources | set(MMR_VECTOR_MODELS) | folds)]
    popular = wanted[wanted.model == "popularity"]
    sizes = popular.segment.value_counts()
    own = [s for s, size in sizes.items() if _own_popularity(models, s, segment_users, size)]
    wanted = wanted[(wanted.model != "popularity") | wanted.segment.isin(own)]
    neighbours = None
    if "itemknn" in sources:
        # Compacted per segment on the executors: as id strings, ten million pairs and more
        # outgrow the driver's result limit and every list task's memory.
        entries = fitted.item_neighbours.where(F.col("model") == "itemknn")
        entries = entries.select("segment", "item_id", "neighbour_item_id", "similarity")
        neighbours = (
            entries.groupBy("segment").applyInPandas(neighbour_matrix, NEIGHBOUR_MATRIX_SCHEMA).toPandas()
        )
    customers = None
    if "userknn" in sources:  # compacted per segment on the executors, as ItemKNN's neighbours
        weights = confidence_weights(models, interactions).select(
            "segment", "customer_id", "item_id", "weight"
        )
        customers = weights.groupBy("segment").applyInPandas(matrix_row, CUSTOMER_MATRIX_SCHEMA).toPandas()
    pairs = None
    if "rules" in sources and association_rules is not None:
        pairs = single_item_rules(association_rules, "antecedent_id", "item_id")
        pairs = pairs.select("segment", "antecedent_id", "item_id", "confidence").toPandas()
    users = None
    if with_users:
        wanted_users = F.col("model").isin(sorted(sources & set(FACTOR_MODELS)))
        users = fitted.user_factors.where(wanted_users).select("segment", "customer_id", "model", "factors")
        users = users.toPandas()
    categories = dict(item_categories(interactions).collect())
    return ListTables(wanted.reset_index(drop=True), users, neighbours, pairs, categories, customers)


def _own_popularity(models: ModelsConfig, segment: str, segment_users: dict[str, int], items: int) -> bool:
    users = segment_users.get(segment, 0)
    return has_own_list(segment, users, items, models.min_segment_users, models.min_segment_items)


def with_vectors(customers: DataFrame, user_factors: DataFrame, models: set[str]) -> DataFrame:
    """``customers`` with their factors of each factor model in ``models`` (``vector_<model>``;
    null for a customer the model has none for: new since training)."""
    factor_models = sorted(models & set(FACTOR_MODELS))
    if not factor_models:
        return customers
    pivoted = (
        user_factors.where(F.col("model").isin(factor_models))
        .groupBy(*KEYS)
        .agg(
            *(
                F.first(F.when(F.col("model") == m, F.col("factors")), ignorenulls=True).alias(
                    vector_column(m)
                )
                for m in factor_models
            )
        )
    )
    return customers.join(pivoted, KEYS, "left")


def made_lists(
    customers: DataFrame, make: Callable[[pd.DataFrame], pd.DataFrame], schema: str = LIST_SCHEMA
) -> DataFrame:
    """``make`` (a ``kernels.lists`` call) on every block of ``customers``, in a ``mapInPandas``;
    a failure is raised as ``ScoringError`` naming the block's segments, never swallowed."""

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        with limit_threads(SCORING_THREADS):
            for part in batches:
                try:
                    yield make(part)
                except ListError as exc:
                    raise ScoringError(str(exc)) from exc
                except Exception as exc:
                    segments = ", ".join(sorted(map(str, part.segment.unique()))[:5])
                    raise ScoringError(f"segment(s) {segments}: {type(exc).__name__}: {exc}") from exc

    # A task per core: each unpickles the tables once and builds a segment's catalogues once.
    cores, _ = executor_cores(customers.sparkSession)
    return customers.repartition(cores).mapInPandas(run, schema)


def route_counts(models: ModelsConfig, histories: DataFrame) -> dict[str, int]:
    """Customers per cold-start route (by ``orders`` where ``histories`` have them; without
    the short-history route, any history counts as long)."""
    orders = F.col("orders") if "orders" in histories.columns else F.size("history")
    routes = histories.groupBy(route(models, orders).alias("route")).count()
    return dict(sorted(routes.collect()))


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
