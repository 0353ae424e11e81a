"""What the last runs published, read back: the trained model tables, the published model,
the association rules the hybrid weighs, and the items never to recommend."""

from __future__ import annotations

import dataclasses

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import Config
from recsys_spark.config.params import hybrid_uses_rules, train_settings, trained_models
from recsys_spark.distributed.training import Fitted, Tuned
from recsys_spark.io.tables import table_name
from recsys_spark.kernels.routing import GLOBAL_SEGMENT
from recsys_spark.kernels.tuning import chosen_values

MODEL_TABLES = ("user_factors", "item_factors", "item_neighbours")


def fitted_from_tables(spark: SparkSession, config: Config) -> Fitted:
    """The models the last `recsys train` published."""
    for key in MODEL_TABLES:
        if not spark.catalog.tableExists(str(table_name(config, key))):
            raise ValueError(
                f"{table_name(config, key)} does not exist: run `recsys train` before `recsys score`"
            )
    return Fitted(*(spark.table(str(table_name(config, key))) for key in MODEL_TABLES))


def trained_settings(spark: SparkSession, config: Config) -> pd.DataFrame:
    """silver.model_settings as the last `recsys train` left it: segment, model, settings, tuned
    (empty when no train has recorded them yet)."""
    name = table_name(config, "model_settings")
    if not spark.catalog.tableExists(str(name)):
        return pd.DataFrame(columns=["segment", "model", "settings", "tuned"])
    return spark.table(str(name)).select("segment", "model", "settings", "tuned").toPandas()


def tuned_values(config: Config, trained: pd.DataFrame) -> Tuned:
    """Segment -> model -> the values the last train's tuning chose (``trained_settings``' rows),
    or none when conf turns tuning off: then conf's values are what counts."""
    if config.models.tuning.trials <= 0:
        return {}
    return chosen_values(trained.dropna(subset=["tuned"]), "tuned")


def tuned_config(config: Config, trained: pd.DataFrame) -> Config:
    """``config`` with the hybrid weights the last train's tuning chose over conf's
    (``trained``: ``trained_settings``): what evaluate measures, score publishes and the served
    model blends."""
    tuned = tuned_values(config, trained)
    if "hybrid" not in tuned.get(GLOBAL_SEGMENT, {}):
        return config
    weights = train_settings(config.models, tuned).blend_weights
    hybrid = dataclasses.replace(config.models.hybrid, weights=weights)
    return dataclasses.replace(config, models=dataclasses.replace(config.models, hybrid=hybrid))


def published_model(spark: SparkSession, config: Config) -> tuple[str, str]:
    """(model, why): the conf's choice, or with ``models.publish: champion`` the latest evaluation's."""
    if config.models.publish != "champion":
        return config.models.publish, "models.publish in conf"
    name = table_name(config, "published_model")
    latest = None
    if spark.catalog.tableExists(str(name)):
        latest = spark.table(str(name)).orderBy(F.desc("decided_at")).first()
    if latest is None:
        return "popularity", "no evaluation has chosen a champion yet (run `recsys evaluate`)"
    # The baselines are trained whatever is enabled (bias with explicit feedback).
    if latest.model not in [*config.models.enabled, *trained_models(config.models), "popularity_global"]:
        return "popularity", f"the champion {latest.model} is no longer in models.enabled"
    return latest.model, latest.reason


def association_rules(spark: SparkSession, config: Config) -> DataFrame | None:
    """gold.association_rules when the hybrid weighs rules, else None."""
    if not hybrid_uses_rules(config.models):
        return None
    name = table_name(config, "association_rules")
    if not spark.catalog.tableExists(str(name)):
        raise ValueError(
            f"{name} does not exist and models.hybrid weighs rules: run `recsys baskets` before "
            "`recsys score`, or set the rules weight to 0"
        )
    return spark.table(str(name))


def blocked_items(spark: SparkSession, config: Config) -> set[str]:
    """Items never recommended: ``models.exclude_items`` plus ``models.exclude_table``'s item ids."""
    blocked = set(config.models.exclude_items)
    if config.models.exclude_table:
        table = config.models.exclude_table
        if not spark.catalog.tableExists(table):
            raise ValueError(f"models.exclude_table {table!r} does not exist: create it or set it to null")
        frame = spark.table(table)
        if "item_id" not in frame.columns:
            raise ValueError(
                f"models.exclude_table {table!r} has no item_id column (columns: {frame.columns})"
            )
        blocked |= {r.item_id for r in frame.select(F.col("item_id").cast("string")).distinct().collect()}
    return blocked
