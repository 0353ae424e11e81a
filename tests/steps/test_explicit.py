"""Explicit feedback (models.feedback: explicit): MovieLens ratings ingested as ratings, ALS in
the segment's task or on MLlib over the bias baseline's residuals, RMSE and MAE beside the
ranking metrics, and a guardrail on RMSE against the bias baseline."""

from __future__ import annotations

import dataclasses
import gzip
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession

from recsys_spark.config import Config
from recsys_spark.distributed.evaluation import rating_sums
from recsys_spark.io.tables import overwrite_table, table_name
from recsys_spark.kernels.intervals import Z_95
from recsys_spark.kernels.metrics import rating_errors
from recsys_spark.pipeline import run_steps

RATINGS = Path(__file__).parents[1] / "data" / "movielens" / "ratings.csv.gz"
NOT_A_RATING = "four stars"


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with gzip.open(RATINGS, "rt") as handle:
        ratings = pd.read_csv(handle, dtype={"rating": str})
    ratings = ratings[ratings.userId <= 200]
    bad = ratings.iloc[:1].assign(movieId=-1, rating=NOT_A_RATING)
    folder = tmp_path_factory.mktemp("ratings")
    pd.concat([ratings, bad]).to_csv(folder / "ratings.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def explicit(spark: SparkSession, make_config: Callable[..., Config], landing: Path) -> Config:
    absent = ("order_id", "quantity", "unit_price", "description", "category", "segment")
    config = make_config(
        landing=landing,
        load_sample=True,
        mlflow={"experiment": "explicit_test", "registered_model": "explicit_test_model"},
        input={
            "columns": {
                **dict.fromkeys(absent),
                "customer_id": "userId",
                "item_id": "movieId",
                "rating": "rating",
                "event_ts": "timestamp",
            },
            "timestamp_format": "epoch_seconds",
            "category_from_description": False,
            "cancellation_prefix": None,
            "non_product_codes": [],
            "non_product_code_pattern": None,
        },
        models={
            "feedback": "explicit",
            "enabled": ["als", "popularity"],
            "min_segment_users": 10,
            "als": {"factors": 16, "regularization": 0.2, "iterations": 10},
        },
        evaluation={"primary_metric": "rmse", "baseline": "bias", "min_coverage": 0.0},
        business_rules={"max_per_category": None, "mmr_lambda": None},
    )
    run_steps(config, ["load-sample", "ingest", "train", "evaluate", "score"], spark)
    return config


def test_ratings_are_ingested_as_values_and_an_unparseable_one_is_quarantined(
    spark: SparkSession, explicit: Config, landing: Path
) -> None:
    source = pd.read_csv(landing / "ratings.csv", dtype={"rating": str})
    good = source[source.rating != NOT_A_RATING]
    silver = spark.table(str(table_name(explicit, "interactions"))).toPandas()
    assert len(silver) == len(good)
    assert silver.rating.sum() == pytest.approx(good.rating.astype(float).sum())
    quarantine = spark.table(str(table_name(explicit, "interactions_quarantine"))).toPandas()
    assert list(quarantine.reason) == ["unparseable_rating"]
    assert quarantine.raw.iat[0]["rating"] == NOT_A_RATING


def test_explicit_als_factorizes_what_the_bias_baseline_leaves(spark: SparkSession, explicit: Config) -> None:
    """Each ALS vector ends with the bias model's: [x_u, 1, mu + b_u] . [y_i, b_i, 1]."""
    for table, key in (("user_factors", "customer_id"), ("item_factors", "item_id")):
        rows = spark.table(str(table_name(explicit, table))).where("model IN ('als', 'bias')").toPandas()
        vectors = rows.pivot(index=key, columns="model", values="factors")
        assert len(vectors) and vectors.notna().all().all()
        for als_vector, bias_vector in zip(vectors.als, vectors.bias, strict=True):
            assert len(als_vector) == 16 + 2
            np.testing.assert_allclose(als_vector[-2:], bias_vector, rtol=1e-6)
    engines = spark.table(str(table_name(explicit, "user_factors"))).where("model = 'als'").select("engine")
    assert {r.engine for r in engines.distinct().collect()} == {"implicit"}  # the segment's own task


def training_rmse(spark: SparkSession, config: Config) -> float:
    """RMSE of ALS's dot products on the ratings it was trained on."""
    factors = {
        kind: spark.table(str(table_name(config, f"{kind}_factors"))).where("model = 'als'").toPandas()
        for kind in ("user", "item")
    }
    users = factors["user"].set_index("customer_id").factors
    items = factors["item"].set_index("item_id").factors
    ratings = spark.table(str(table_name(config, "interactions"))).toPandas()
    predicted = [users[c] @ items[i] for c, i in zip(ratings.customer_id, ratings.item_id, strict=True)]
    return float(np.sqrt(np.mean((ratings.rating.to_numpy() - np.array(predicted)) ** 2)))


def test_explicit_als_on_mllib_fits_the_same_objective_as_the_task(
    spark: SparkSession, make_config: Callable[..., Config], explicit: Config
) -> None:
    """Above models.mllib_min_pairs the segment trains on MLlib (implicitPrefs off): the same
    vectors' layout, and the same objective, so the fit to the ratings is close to the task's."""
    models = {**dataclasses.asdict(explicit.models), "mllib_min_pairs": 0, "publish": "als"}
    on_mllib = make_config(
        input=dataclasses.asdict(explicit.input),
        models=models,
        evaluation={"primary_metric": "rmse", "baseline": "bias"},
    )
    interactions = spark.table(str(table_name(explicit, "interactions")))
    overwrite_table(spark, on_mllib, table_name(on_mllib, "interactions"), interactions)
    run_steps(on_mllib, ["train", "score"], spark)
    engines = spark.table(str(table_name(on_mllib, "user_factors"))).where("model = 'als'").select("engine")
    assert {r.engine for r in engines.distinct().collect()} == {"mllib"}
    kernel, mllib = training_rmse(spark, explicit), training_rmse(spark, on_mllib)
    assert 0.3 < kernel < 0.9 and abs(kernel - mllib) < 0.05, (kernel, mllib)
    # The published lists' intervals: sigma^2 (Y_u'Y_u + lambda n_u I)^-1 over the rated films'
    # fitted parts, sigma^2 ALS's mean squared training error.
    lists = spark.table(str(table_name(on_mllib, "recommendations"))).where("model = 'als'").toPandas()
    assert len(lists) and lists.score_low.notna().all()
    items = spark.table(str(table_name(on_mllib, "item_factors"))).where("model = 'als'").toPandas()
    fitted = items.set_index("item_id").factors.map(lambda v: np.asarray(v[:16], np.float64))
    ratings = spark.table(str(table_name(on_mllib, "interactions"))).toPandas()
    customer = lists.customer_id.iloc[0]
    rated = np.stack(fitted.loc[ratings[ratings.customer_id == customer].item_id.unique()].to_numpy())
    covariance = mllib**2 * np.linalg.inv(rated.T @ rated + 0.2 * len(rated) * np.eye(16))
    mine = lists[lists.customer_id == customer]
    listed = np.stack(fitted.loc[mine.item_id].to_numpy())
    deviation = np.sqrt(np.einsum("if,fg,ig->i", listed, covariance, listed))
    np.testing.assert_allclose(mine.score_high - mine.score, Z_95 * deviation, rtol=2e-3)


def test_rmse_and_mae_sit_beside_the_ranking_metrics_and_the_guardrail_judges_on_rmse(
    spark: SparkSession, explicit: Config
) -> None:
    metrics = spark.table(str(table_name(explicit, "model_metrics"))).toPandas()
    rated = metrics[metrics.metric.isin(["rmse", "mae", "rated_pairs"])]
    assert set(rated.model) == {"als", "bias"} and rated.k.isna().all()
    overall = rated[rated.segment == "all"].pivot(index="model", columns="metric", values="value")
    assert overall.rated_pairs.nunique() == 1 and overall.rated_pairs.iat[0] > 100  # the same ratings
    assert (overall.mae > 0).all() and (overall.rmse >= overall.mae).all()
    base = rated[(rated.segment == "all") & (rated.model == "bias")].set_index("metric").value
    for row in rated[rated.segment == "all"].itertuples():
        assert row.baseline_value == pytest.approx(base[row.metric])
    assert {"ndcg", "precision"} <= set(metrics[metrics.model == "als"].metric)  # ranking too

    choice = spark.table(str(table_name(explicit, "published_model"))).first()
    assert choice.metric == "rmse" and choice.baseline_value == pytest.approx(overall.rmse["bias"])
    expected = "als" if overall.rmse["als"] < overall.rmse["bias"] else "bias"
    assert choice.model == expected, choice.reason
    lists = spark.table(str(table_name(explicit, "recommendations"))).select("model").distinct().collect()
    assert {r.model for r in lists} == {expected}


def test_rmse_matches_an_independent_computation_on_the_ratings_every_model_predicts(
    spark: SparkSession,
) -> None:
    def frame(rows: list[tuple[Any, ...]], schema: str) -> Any:
        return spark.createDataFrame(rows, schema)

    users = [
        ("s1", "u1", "als", [1.0, 2.0]),
        ("s1", "u1", "bias", [1.0, 4.0]),
        ("s1", "u2", "als", [0.5, 0.0]),
        ("s1", "u2", "bias", [1.0, 3.0]),
        ("s2", "u1", "als", [2.0, 1.0]),
        ("s2", "u1", "bias", [1.0, 3.5]),
        ("s2", "u3", "bias", [1.0, 2.0]),
    ]  # fmt: skip  (u3: no ALS factors)
    items = [("s1", "i1", "als", [1.0, 1.0]), ("s1", "i1", "bias", [0.5, 1.0]),
             ("s1", "i2", "als", [2.0, 0.0]), ("s1", "i2", "bias", [-0.5, 1.0]),
             ("s2", "i1", "als", [1.0, 0.5]), ("s2", "i1", "bias", [0.0, 1.0])]  # fmt: skip
    ratings = [("s1", "u1", "i1", 4.0), ("s1", "u1", "i2", 2.5), ("s1", "u2", "i2", 3.0),
               ("s2", "u1", "i1", 5.0), ("s2", "u3", "i1", 1.0)]  # fmt: skip
    user_factors = frame(users, "segment string, customer_id string, model string, factors array<float>")
    item_factors = frame(items, "segment string, item_id string, model string, factors array<float>")
    test = frame(ratings, "segment string, customer_id string, item_id string, rating double")
    scores = rating_errors(rating_sums(test, user_factors, item_factors, ["als", "bias"]), "all")

    # By hand: the four ratings both models predict (u3 has no ALS factors: left out for both).
    als = np.array([1 * 1 + 2 * 1, 1 * 2 + 2 * 0, 0.5 * 2 + 0, 2 * 1 + 1 * 0.5]) - [4.0, 2.5, 3.0, 5.0]
    bias = np.array([0.5 + 4, -0.5 + 4, -0.5 + 3, 0 + 3.5]) - [4.0, 2.5, 3.0, 5.0]
    overall = scores[scores.segment == "all"].set_index("model")
    for model, errors in (("als", als), ("bias", bias)):
        assert overall.loc[model, "pairs"] == 4
        assert overall.loc[model, "rmse"] == pytest.approx(math.sqrt(np.mean(errors**2)))
        assert overall.loc[model, "mae"] == pytest.approx(np.mean(np.abs(errors)))
    s2 = scores[(scores.segment == "s2") & (scores.model == "als")]
    assert s2.pairs.iat[0] == 1 and s2.rmse.iat[0] == pytest.approx(abs(als[3]))
