"""Dimensions and merchandiser tables as DataFrame transformations (no I/O).

Inputs are silver.interactions rows (segment, customer_id, item_id, order_id, event_ts, revenue,
description, category; event_ts and revenue null where the input has no time or price) and
gold.association_rules rows.
"""

from __future__ import annotations

import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from recsys_spark.distributed.baskets import single_item_rules
from recsys_spark.kernels.graph import item_pagerank

NODES_SCHEMA = "segment string, item_id string, pagerank double, in_degree int, out_degree int, rank int"


def item_descriptions(interactions: DataFrame) -> DataFrame:
    """Per item, its most frequent description (ties: the alphabetically first): item_id, description."""
    return _most_frequent(interactions, "description")


def item_categories(interactions: DataFrame) -> DataFrame:
    """Per item with a category, its most frequent one: item_id, category (silver's category is
    the input's category column, or the description's last word; see docs/data.md)."""
    return _most_frequent(interactions, "category")


def has_categories(categories: DataFrame) -> bool:
    """Whether any item of ``categories`` (item_id, category) has one: what needs categories
    (diversity, category saturation) is otherwise not measured rather than measured on nothing."""
    return categories.where(F.col("category").isNotNull()).limit(1).count() > 0


def _most_frequent(interactions: DataFrame, column: str) -> DataFrame:
    counted = (
        interactions.where(F.col(column).isNotNull())
        .groupBy("item_id", column)
        .agg(F.count(F.lit(1)).alias("lines"))
    )
    best = Window.partitionBy("item_id").orderBy(F.desc("lines"), column)
    return (
        counted.withColumn("position", F.row_number().over(best))
        .where("position = 1")
        .select("item_id", column)
    )


def category_of(description: Column) -> Column:
    """A product group where the data has none: the description's last word (retail descriptions
    end in the product noun: "WHITE HANGING HEART T-LIGHT HOLDER" -> HOLDER); null if none."""
    words = F.split(F.upper(F.trim(F.regexp_replace(description, "[^A-Za-z ]", " "))), " +")
    last = F.element_at(words, -1)
    return F.when(last != "", last)


def items(interactions: DataFrame) -> DataFrame:
    """The item dimension: item_id, description, category, buyers, orders, quantity, revenue,
    first_sold, last_sold (over every segment)."""
    sales = interactions.groupBy("item_id").agg(
        F.countDistinct("customer_id").alias("buyers"),
        F.countDistinct("order_id").alias("orders"),
        F.sum("quantity").alias("quantity"),
        F.round(F.sum("revenue"), 2).alias("revenue"),
        F.min("event_ts").alias("first_sold"),
        F.max("event_ts").alias("last_sold"),
    )
    return (
        sales.join(item_descriptions(interactions), "item_id", "left")
        .join(item_categories(interactions), "item_id", "left")
        .select(
            "item_id",
            "description",
            "category",
            "buyers",
            "orders",
            "quantity",
            "revenue",
            "first_sold",
            "last_sold",
        )
    )


def customers(interactions: DataFrame, active_days: int, lapsed_days: int) -> DataFrame:
    """The customer dimension, as of the newest event in ``interactions``.

    customer_id; segment (of the latest order: a customer who moved country is in the new one);
    segments (how many); orders, lines, revenue; first_order_at, last_order_at,
    days_since_last_order; value_decile (10 = top 10% by revenue); lifecycle: new (first order
    within ``active_days``), active (ordered within ``active_days``), lapsing, lapsed (no order
    for ``lapsed_days``).
    """
    as_of = interactions.agg(F.max("event_ts").alias("as_of"))
    latest = Window.partitionBy("customer_id").orderBy(F.desc("event_ts"), "segment")
    home = (
        interactions.withColumn("position", F.row_number().over(latest))
        .where("position = 1")
        .select("customer_id", "segment")
    )
    totals = interactions.groupBy("customer_id").agg(
        F.countDistinct("segment").alias("segments"),
        F.countDistinct("order_id").alias("orders"),
        F.count(F.lit(1)).alias("lines"),
        F.round(F.sum("revenue"), 2).alias("revenue"),
        F.min("event_ts").alias("first_order_at"),
        F.max("event_ts").alias("last_order_at"),
    )
    since_last = F.datediff("as_of", "last_order_at")
    lifecycle = (
        F.when(F.datediff("as_of", "first_order_at") <= active_days, "new")
        .when(since_last <= active_days, "active")
        .when(since_last < lapsed_days, "lapsing")
        .otherwise("lapsed")
    )
    by_value = Window.orderBy("revenue", "customer_id")
    return (
        totals.join(home, "customer_id")
        .crossJoin(as_of)
        .select(
            "customer_id",
            "segment",
            "segments",
            "orders",
            "lines",
            "revenue",
            "first_order_at",
            "last_order_at",
            since_last.alias("days_since_last_order"),
            F.ntile(10).over(by_value).alias("value_decile"),
            lifecycle.alias("lifecycle"),
        )
    )


def category_saturation(interactions: DataFrame, item_categories: DataFrame) -> DataFrame:
    """Per customer × category: lines, spend, share of the customer's spend, and decile of that
    share among the category's buyers (10 = the most saturated tenth: little room left to grow).

    ``item_categories``: item_id, category; items without one count under category ``OTHER``.
    """
    spend = (
        interactions.drop("category")
        .join(item_categories.select("item_id", "category"), "item_id", "left")
        .withColumn("category", F.coalesce("category", F.lit("OTHER")))
        .groupBy("customer_id", "category")
        .agg(F.count(F.lit(1)).alias("lines"), F.sum("revenue").alias("spend"))
    )
    per_customer = Window.partitionBy("customer_id")
    in_category = Window.partitionBy("category").orderBy("share", "customer_id")
    return spend.select(
        "customer_id",
        "category",
        "lines",
        F.round("spend", 2).alias("spend"),
        F.round(F.col("spend") / F.sum("spend").over(per_customer), 6).alias("share"),
    ).withColumn("decile", F.ntile(10).over(in_category))


def top_sellers(interactions: DataFrame, n: int) -> list[str]:
    """The ``n`` items with the most buyers (ties by item id)."""
    rows = (
        interactions.groupBy("item_id")
        .agg(F.countDistinct("customer_id").alias("buyers"))
        .orderBy(F.desc("buyers"), "item_id")
        .limit(n)
        .collect()
    )
    return [r.item_id for r in rows]


def rules_graph(rules: DataFrame, segment: str, damping: float) -> tuple[DataFrame, DataFrame]:
    """The item graph of ``segment``'s single-item rules: (edges, nodes).

    edges: segment, source_item_id, target_item_id, support, confidence, lift (one per rule
    "bought source -> buys target"). nodes: segment, item_id, pagerank (lift-weighted), in_degree,
    out_degree, rank.
    """
    edges = single_item_rules(rules.where(F.col("segment") == segment), "source_item_id", "target_item_id")

    def rank(part: pd.DataFrame) -> pd.DataFrame:
        named = part.rename(columns={"source_item_id": "source", "target_item_id": "target"})
        nodes = item_pagerank(named, damping)
        return nodes.assign(segment=part.segment.iloc[0])[
            ["segment", "item_id", "pagerank", "in_degree", "out_degree", "rank"]
        ]

    nodes = (
        edges.select("segment", "source_item_id", "target_item_id", "lift")
        .groupBy("segment")
        .applyInPandas(rank, NODES_SCHEMA)
    )
    return edges, nodes
