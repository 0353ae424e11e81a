"""The whole pipeline on data shaped unlike Online Retail, brought in through conf alone.

- MovieLens as implicit feedback: user, movie and a count in a tab-separated file with a spaced
  header and epoch-second timestamps; no orders, prices, descriptions or segments.
- Groceries: baskets of items with no customer and no time (each basket stands for a customer;
  evaluation holds out a random share of each basket's items).

Every step completes, no model trains on a missing input (content has no text here), and every
published row's reason is one a trained model produces.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from recsys_spark.config import Config
from recsys_spark.io.tables import table_name
from recsys_spark.pipeline import run_order, run_steps

DATA = Path(__file__).parent / "data"
NO_RETAIL_RULES = {"cancellation_prefix": None, "non_product_codes": [], "non_product_code_pattern": None}
ABSENT = {c: None for c in ("order_id", "event_ts", "quantity", "unit_price", "description", "segment")}
# The reasons each model writes into gold.recommendations (kernels/candidates.py).
CONTENT_REASONS = {"similar_description"}


def run_pipeline(make_config: Callable[..., Any], landing: Path, name: str, **overrides: Any) -> Config:
    config = make_config(
        landing=landing,
        load_sample=True,
        mlflow={"experiment": f"shapes_{name}", "registered_model": f"shapes_{name}"},
        **overrides,
    )
    lines = run_steps(config, run_order(config))
    print("\n".join(lines))
    return config


def published(spark: SparkSession, config: Config) -> pd.DataFrame:
    return spark.table(str(table_name(config, "recommendations"))).toPandas()


@pytest.fixture(scope="module")
def movielens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with gzip.open(DATA / "movielens" / "ratings.csv.gz", "rt") as f:
        ratings = pd.read_csv(f)
    ratings = ratings[ratings.userId <= 120]
    plays = pd.DataFrame(
        {
            "User ID": ratings.userId,
            "Movie ID": ratings.movieId,
            "Play Count": (ratings.rating * 2).astype(int),  # a count, as a music log would have
            "Watched At": ratings.timestamp,  # epoch seconds
        }
    )
    folder = tmp_path_factory.mktemp("movielens_tsv")
    plays.to_csv(folder / "plays.tsv", sep="\t", index=False)
    return folder


def test_movielens_as_counts_in_a_tsv(
    spark: SparkSession, make_config: Callable[..., Any], movielens: Path
) -> None:
    columns = {
        **ABSENT,
        "customer_id": "User ID",
        "item_id": "Movie ID",
        "quantity": "Play Count",
        "event_ts": "Watched At",
    }
    config = run_pipeline(
        make_config,
        movielens,
        "movielens",
        input={
            "columns": columns,
            "timestamp_format": "epoch_seconds",
            "csv": {"delimiter": "\t"},
            "category_from_description": False,
            **NO_RETAIL_RULES,
        },
        models={"confidence": {"weight": "quantity", "log_scale": True}},
        # A viewing day is a long basket: at conf's 1% support the 705 days hold 206k itemsets
        # and 925k rules, mined again by evaluate for the hybrid; 5% keeps the test about shape.
        baskets={"min_support": 0.05},
    )
    silver = spark.table(str(table_name(config, "interactions")))
    assert silver.count() == len(pd.read_csv(movielens / "plays.tsv", sep="\t"))
    assert silver.where("unit_price IS NOT NULL OR description IS NOT NULL").count() == 0
    factors = spark.table(str(table_name(config, "item_factors"))).select("model").distinct().toPandas()
    assert "content" not in set(factors.model)  # no text: left out, never trained on zeros
    recs = published(spark, config)
    assert len(recs) == recs.customer_id.nunique() * config.models.top_n
    assert not set(recs.reason) & CONTENT_REASONS
    metrics = spark.table(str(table_name(config, "model_metrics"))).toPandas()
    assert "content" not in set(metrics.model)


@pytest.fixture(scope="module")
def groceries(tmp_path_factory: pytest.TempPathFactory) -> Path:
    baskets = (DATA / "groceries" / "groceries.csv").read_text().splitlines()[:2500]
    rows = [(f"B{n:05d}", item) for n, line in enumerate(baskets) for item in line.split(",")]
    folder = tmp_path_factory.mktemp("groceries_long")
    pd.DataFrame(rows, columns=["basket", "item"]).to_csv(folder / "baskets.csv", index=False)
    return folder


def test_groceries_baskets_without_customers_or_time(
    spark: SparkSession, make_config: Callable[..., Any], groceries: Path
) -> None:
    columns = {**ABSENT, "customer_id": "basket", "item_id": "item"}
    config = run_pipeline(
        make_config,
        groceries,
        "groceries",
        input={
            "columns": columns,
            "uppercase_item_ids": False,
            "category_from_description": False,
            **NO_RETAIL_RULES,
        },
        baskets={"min_segment_baskets": 100},
    )
    rules = spark.table(str(table_name(config, "association_rules")))
    assert rules.where("antecedent = array('root vegetables')").count() > 0
    recs = published(spark, config)
    assert not set(recs.reason) & CONTENT_REASONS
    assert recs.groupby("customer_id").size().max() == config.models.top_n
    metrics = spark.table(str(table_name(config, "model_metrics"))).toPandas()
    assert {"als", "itemknn"} <= set(metrics.model)
