"""The champion as the served model gets it: the tables it needs from the last training, as
pandas (logged as the pyfunc's artifacts), and its settings (the pyfunc's model config)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import Config
from recsys_spark.distributed.analytics import item_categories
from recsys_spark.distributed.baskets import single_item_rules
from recsys_spark.io.model_tables import association_rules, fitted_from_tables
from recsys_spark.io.tables import table_name
from recsys_spark.kernels.factors import FACTOR_MODELS
from recsys_spark.kernels.popularity import has_own_list
from recsys_spark.kernels.rerank import MMR_VECTOR_MODELS


def serving_sources(config: Config, model: str) -> set[str]:
    """The models and sources serving ``model`` reads: itself, popularity for fallbacks, and the
    hybrid's sources when it is the model or takes short histories (cold-start routing)."""
    conf = config.models
    needed = {model, "popularity"}
    if model == "hybrid" or ("hybrid" in conf.enabled and conf.hybrid.short_history_orders > 0):
        for weights in (conf.hybrid.weights, conf.hybrid.short_history_weights):
            needed |= {source for source, weight in weights.items() if weight > 0}
    return needed


def served_tables(spark: SparkSession, config: Config, model: str) -> dict[str, pd.DataFrame]:
    """What serving ``model`` needs from the last training, as pandas: item factors (with the
    vectors MMR compares; segment popularity only where the segment is big enough for its own,
    as in the batch), user factors, ItemKNN neighbours, single-item rules and item categories,
    as far as ``serving_sources`` asks for them."""
    fitted = fitted_from_tables(spark, config)
    needed = serving_sources(config, model)
    wanted = F.col("model").isin(sorted(needed | set(MMR_VECTOR_MODELS)))
    stamps = ["run_id", "trained_at"]
    interactions = spark.table(str(table_name(config, "interactions")))
    items = fitted.item_factors.where(wanted).drop(*stamps)
    tables = {"item_factors": _own_popularity(config, items, interactions).toPandas()}
    users = fitted.user_factors.where(F.col("model").isin(sorted(needed & set(FACTOR_MODELS))))
    tables["user_factors"] = users.drop(*stamps).toPandas()
    if "itemknn" in needed:
        tables["item_neighbours"] = fitted.item_neighbours.drop(*stamps).toPandas()
    rules = association_rules(spark, config) if "rules" in needed else None
    if rules is not None:
        pairs = single_item_rules(rules, "antecedent_id", "item_id")
        tables["rules"] = pairs.select("segment", "antecedent_id", "item_id", "confidence").toPandas()
    tables["categories"] = item_categories(interactions).toPandas()
    return tables


def serving_settings(config: Config, model: str) -> dict[str, Any]:
    """The served model's config: its name and N, the hybrid and the business rules (the
    exclude lists as they stand in conf; ``models.exclude_table`` is read at batch scoring)."""
    conf, rules = config.models, config.business_rules
    settings: dict[str, Any] = {
        "model": model,
        "top_n": conf.top_n,
        "rules": {
            "blocked": sorted(conf.exclude_items),
            "category_include": rules.category_include,
            "category_exclude": rules.category_exclude,
            "max_per_category": rules.max_per_category,
            "mmr_lambda": rules.mmr_lambda,
            "candidates": rules.candidates,
        },
    }
    if "hybrid" in conf.enabled:
        settings["hybrid"] = dataclasses.asdict(conf.hybrid)
    return settings


def _own_popularity(config: Config, items: DataFrame, interactions: DataFrame) -> DataFrame:
    """``items`` without the popularity rows of segments too small for their own popularity
    (the batch gives their customers overall popularity: ``kernels.popularity.has_own_list``)."""
    conf = config.models
    users = dict(interactions.groupBy("segment").agg(F.countDistinct("customer_id")).collect())
    popular = items.where(F.col("model") == "popularity")
    sizes = popular.groupBy("segment").count().collect()
    own = [
        segment
        for segment, size in sizes
        if has_own_list(segment, users.get(segment, 0), size, conf.min_segment_users, conf.min_segment_items)
    ]
    return items.where(F.col("model") != "popularity").unionByName(popular.where(F.col("segment").isin(own)))
