"""The champion as the served model gets it: the tables it needs from the last training, as
pandas (logged as the pyfunc's artifacts); its settings are ``serving.settings``."""

from __future__ import annotations

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import Config
from recsys_spark.distributed import lists
from recsys_spark.io.model_tables import association_rules, fitted_from_tables
from recsys_spark.io.tables import table_name
from recsys_spark.serving.settings import serving_sources


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
    if tables.customers is not None:
        served["customer_matrix"] = tables.customers
    # The batch's histories of every customer: a request by customer id alone gets the same list.
    kind = lists.history_kind(config.models, model)
    served["customers"] = lists.customer_histories(config.models, interactions, kind).toPandas()
    served["categories"] = pd.DataFrame(
        {"item_id": list(tables.categories), "category": list(tables.categories.values())}
    )
    return served
