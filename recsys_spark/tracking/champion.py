"""The champion as the served model gets it: the tables it needs from the last training, as
pandas (logged as the pyfunc's artifacts), and its settings (the pyfunc's model config)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import Config
from recsys_spark.distributed import lists
from recsys_spark.io.model_tables import association_rules, fitted_from_tables
from recsys_spark.io.tables import table_name


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
    """What serving ``model`` needs from the last training, as pandas (``lists.list_tables``
    with the user factors), as far as ``serving_sources`` asks for them."""
    fitted = fitted_from_tables(spark, config)
    interactions = spark.table(str(table_name(config, "interactions")))
    items = fitted.item_factors.drop("run_id", "trained_at").toPandas()
    users = dict(interactions.groupBy("segment").agg(F.countDistinct("customer_id")).collect())
    needed = serving_sources(config, model)
    rules = association_rules(spark, config) if "rules" in needed else None
    tables = lists.list_tables(
        config.models, fitted, items, interactions, rules, users, needed, with_users=True
    )
    served = {"item_factors": tables.items, "user_factors": tables.users}
    if tables.neighbours is not None:
        served["item_neighbours"] = tables.neighbours
    if tables.pairs is not None:
        served["rules"] = tables.pairs
    served["categories"] = pd.DataFrame(
        {"item_id": list(tables.categories), "category": list(tables.categories.values())}
    )
    return served


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
