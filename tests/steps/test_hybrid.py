"""The hybrid recommender, the fused embedding, business rules and cold-start routing through
Spark, on the bundled sample: blending on a case worked by hand, the rules on the published
lists, the rules source, the evaluation's variants, and the routing of short histories."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import Config
from recsys_spark.config.params import business_rules
from recsys_spark.distributed.analytics import category_of, item_descriptions
from recsys_spark.distributed.lists import customer_histories, last_baskets, list_tables, route
from recsys_spark.io.model_tables import association_rules, fitted_from_tables
from recsys_spark.io.tables import table_name
from recsys_spark.kernels.lists import ListMaker, ListSpec
from recsys_spark.kernels.rerank import CANDIDATE_COLUMNS, ListSettings, final_lists
from recsys_spark.pipeline import run_steps
from recsys_spark.serving.settings import serving_settings, serving_sources
from recsys_spark.tracking.champion import served_tables
from recsys_spark.tracking.served_model import PublishedRecommender
from tests.conftest import SAMPLE_RUN, deep_merge

BLOCKED = "85123A"  # the sample's best seller: excluded, as if out of stock
EXCLUDED_CATEGORY = "BAG"
CAP = 2


SUMMARY: list[str] = []  # the hybrid run's summary lines


@pytest.fixture(scope="module")
def hybrid_run(spark: SparkSession, make_config: Callable[..., Config]) -> Config:
    config = make_config(
        **deep_merge(
            SAMPLE_RUN,
            {
                "models": {
                    "enabled": ["als", "itemknn", "popularity", "content", "hybrid"],
                    "publish": "hybrid",
                    "exclude_items": [BLOCKED],
                    "content": {"dims": 16},
                    "hybrid": {"short_history_orders": 2},
                },
                # Each customer's last order is the test: the sample's time split leaves only
                # three test customers, none with a history to recommend from.
                "evaluation": {"split": "last_basket"},
                "business_rules": {
                    "category_exclude": [EXCLUDED_CATEGORY],
                    "max_per_category": CAP,
                    "mmr_lambda": 0.7,
                },
            },
        )
    )
    SUMMARY[:] = run_steps(config, ["load-sample", "ingest", "baskets", "train", "evaluate", "score"], spark)
    return config


def test_blend_of_two_sources_by_hand() -> None:
    candidates = pd.DataFrame(
        [
            # c1: als scores 3, 2, 1 -> 1, 0.5, 0; rules 0.9, 0.3 -> 1, 0.
            ("s", "c1", "als", "a", 3.0, "factor_score", None),
            ("s", "c1", "als", "b", 2.0, "factor_score", None),
            ("s", "c1", "als", "c", 1.0, "factor_score", None),
            ("s", "c1", "rules", "c", 0.9, "bought_with_last_basket", "x"),
            ("s", "c1", "rules", "d", 0.3, "bought_with_last_basket", "y"),
            # c2: one source, one item -> 1.
            ("s", "c2", "rules", "a", 0.2, "bought_with_last_basket", "z"),
        ],
        columns=CANDIDATE_COLUMNS[:7],
    ).assign(score_low=0.0, score_high=5.0)
    lists = final_lists(candidates, ListSettings(3, {"als": 0.6, "rules": 0.4}, "hybrid"))
    # c1: a 0.6, b 0.3, c 0 + 0.4 = 0.4 (from rules, so its reason), d 0: top 3 = a, c, b.
    expected = [
        ("s", "c1", 1, "a", 0.6, "hybrid", "factor_score", None),
        ("s", "c1", 2, "c", 0.4, "hybrid", "bought_with_last_basket", "x"),
        ("s", "c1", 3, "b", 0.3, "hybrid", "factor_score", None),
        ("s", "c2", 1, "a", 0.4, "hybrid", "bought_with_last_basket", "z"),
    ]
    got = [(*row[:4], round(float(row[4]), 6), *row[5:8]) for row in lists.itertuples(index=False)]
    assert sorted(got, key=str) == sorted(expected, key=str)
    assert lists.score_low.isna().all() and lists.score_high.isna().all()  # a blend has no interval


def test_published_lists_follow_every_business_rule(spark: SparkSession, hybrid_run: Config) -> None:
    silver = spark.table(str(table_name(hybrid_run, "interactions")))
    recs = spark.table(str(table_name(hybrid_run, "recommendations")))
    assert recs.count() > 0
    categories = item_descriptions(silver).select(
        "item_id", category_of(F.col("description")).alias("category")
    )
    rows = recs.join(categories, "item_id", "left").toPandas()
    assert BLOCKED not in set(rows.item_id)
    assert EXCLUDED_CATEGORY not in set(rows.category)
    per_list = rows.dropna(subset=["category"]).groupby(["segment", "customer_id", "category"]).size()
    assert per_list.max() <= CAP
    bought = silver.select("segment", "customer_id", "item_id")
    assert recs.join(bought, ["segment", "customer_id", "item_id"], "left_semi").count() == 0
    ranks = rows.groupby(["segment", "customer_id"])["rank"].agg(["min", "max", "count"])
    assert (ranks["min"] == 1).all() and (ranks["max"] == ranks["count"]).all()
    # Every list is full: the sample has far more items than any customer bought, so the rules
    # (exclusion, a category filter, a cap of 2) cutting candidates never leaves a list short.
    assert (ranks["count"] == hybrid_run.models.top_n).all()
    assert set(rows.model) <= {"hybrid", "popularity"}


def test_rules_source_fires_from_the_last_basket(spark: SparkSession, hybrid_run: Config) -> None:
    silver = spark.table(str(table_name(hybrid_run, "interactions")))
    recs = spark.table(str(table_name(hybrid_run, "recommendations"))).where(
        "reason = 'bought_with_last_basket'"
    )
    assert recs.count() > 0
    baskets = last_baskets(silver)
    fired = recs.join(baskets, ["segment", "customer_id"]).where(
        F.array_contains("last_basket", F.col("reason_item_id"))
    )
    assert fired.count() == recs.count()
    rules = association_rules(spark, hybrid_run)
    assert rules is not None
    pairs = rules.where(F.size("antecedent") == 1).select(
        F.col("antecedent")[0].alias("reason_item_id"), F.col("consequent")[0].alias("item_id")
    )
    assert recs.join(pairs, ["reason_item_id", "item_id"], "left_anti").count() == 0


def test_fused_embedding_mixes_the_cosines_and_reaches_unbought_items(
    spark: SparkSession, hybrid_run: Config
) -> None:
    factors = spark.table(str(table_name(hybrid_run, "item_factors"))).toPandas()
    segment = factors[factors.model == "als"].segment.iat[0]  # a trained segment
    rows = {
        model: factors[(factors.segment == segment) & (factors.model == model)].set_index("item_id").factors
        for model in ("als", "content", "hybrid_embedding")
    }
    assert set(rows["hybrid_embedding"].index) == set(rows["als"].index) | set(rows["content"].index)
    a, b = sorted(set(rows["als"].index) & set(rows["content"].index))[:2]

    def cosine(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.dot(x, y) / np.linalg.norm(x) / np.linalg.norm(y))

    alpha = hybrid_run.models.fusion.alpha
    mixed = alpha * cosine(rows["als"][a], rows["als"][b]) + (1 - alpha) * cosine(
        rows["content"][a], rows["content"][b]
    )
    assert cosine(rows["hybrid_embedding"][a], rows["hybrid_embedding"][b]) == pytest.approx(mixed, abs=1e-4)
    similar = spark.table(str(table_name(hybrid_run, "similar_items"))).where("model = 'hybrid_embedding'")
    assert similar.count() > 0


def test_evaluation_measures_content_hybrid_and_each_rule(spark: SparkSession, hybrid_run: Config) -> None:
    metrics = spark.table(str(table_name(hybrid_run, "model_metrics")))
    models = {r.model for r in metrics.select("model").distinct().collect()}
    assert {"content", "hybrid", "hybrid+exclude", "hybrid+filter", "hybrid+cap", "hybrid+mmr"} <= models
    assert "hybrid+rules" in models
    wanted = metrics.where("segment = 'all' AND slice = 'all' AND k = 10 AND metric IN ('ndcg', 'diversity')")
    assert {r.metric for r in wanted.where("model = 'hybrid+mmr'").collect()} == {"ndcg", "diversity"}
    choice = spark.table(str(table_name(hybrid_run, "published_model"))).first()
    assert "+" not in choice.model


def test_short_histories_are_routed_to_the_hybrid(
    spark: SparkSession, hybrid_run: Config, make_config: Callable[..., Config]
) -> None:
    orders = spark.createDataFrame([(None,), (0,), (1,), (2,), (7,)], "orders int")
    routes = [
        r.route for r in orders.select(route(hybrid_run.models, F.col("orders")).alias("route")).collect()
    ]
    assert routes == ["popularity", "popularity", "short_history", "champion", "champion"]
    without = make_config(models={"enabled": ["als", "popularity"]})
    routes = [r.route for r in orders.select(route(without.models, F.col("orders")).alias("route")).collect()]
    assert routes == ["popularity", "popularity", "champion", "champion", "champion"]

    # In the published table: one-order customers got the hybrid with short-history weights.
    silver = spark.table(str(table_name(hybrid_run, "interactions")))
    one_order = (
        silver.groupBy("segment", "customer_id").agg(F.countDistinct("order_id").alias("n")).where("n = 1")
    )
    recs = spark.table(str(table_name(hybrid_run, "recommendations")))
    published = recs.join(one_order.select("segment", "customer_id"), ["segment", "customer_id"])
    assert one_order.count() > 0 and published.count() > 0
    assert {r.model for r in published.select("model").distinct().collect()} <= {"hybrid", "popularity"}
    # Their lists are the hybrid's with the short-history weights, not with the champion's.
    models = hybrid_run.models
    fitted = fitted_from_tables(spark, hybrid_run)
    items = fitted.item_factors.select("segment", "item_id", "model", "factors").toPandas()
    histories = customer_histories(models, silver, "hybrid").join(
        one_order.select("segment", "customer_id"), ["segment", "customer_id"], "left_semi"
    )
    users = dict(silver.groupBy("segment").agg(F.countDistinct("customer_id")).collect())
    rules_table = association_rules(spark, hybrid_run)
    sources = serving_sources(hybrid_run, "hybrid")
    tables = list_tables(models, fitted, items, silver, rules_table, users, sources, with_users=True)
    rules = business_rules(hybrid_run.business_rules, {BLOCKED})
    maker = ListMaker.of(
        tables, dataclasses.replace(ListSpec.of(serving_settings(hybrid_run, "hybrid")), rules=rules)
    )
    customers = histories.toPandas()

    def hybrid_with(weights: dict[str, float]) -> dict[str, list[str]]:
        return ranked_items(maker.published(customers, "hybrid", weights))

    assert ranked_items(published) == hybrid_with(models.hybrid.short_history_weights)
    assert ranked_items(published) != hybrid_with(models.hybrid.weights)
    # The summary counts them by route, and says which model filled the lists.
    score = next(i for i, line in enumerate(SUMMARY) if line.startswith("score:"))
    assert f"{one_order.count():,} short_history (hybrid)" in SUMMARY[score + 1]
    filled = dict(recs.where("rank = 1").groupBy("model").count().collect())
    assert (
        "; lists filled by: " + ", ".join(f"{m} {n:,}" for m, n in sorted(filled.items())) + "; topped up"
    ) in SUMMARY[score + 1]


def ranked_items(lists: DataFrame | pd.DataFrame) -> dict[str, list[str]]:
    frame = (
        lists
        if isinstance(lists, pd.DataFrame)
        else lists.select("customer_id", "rank", "item_id").toPandas()
    )
    rows = frame.sort_values(["customer_id", "rank"])
    return {customer: part.item_id.tolist() for customer, part in rows.groupby("customer_id")}


def test_score_says_to_run_baskets_when_the_hybrid_needs_rules(
    spark: SparkSession, make_config: Callable[..., Config]
) -> None:
    fresh = make_config()
    with pytest.raises(ValueError, match="run `recsys baskets` before `recsys score`"):
        association_rules(spark, fresh)
    # Overlays merge into base.yml's weights: a source is left out with weight 0.
    no_rules = make_config(
        models={"hybrid": {"weights": {"rules": 0}, "short_history_weights": {"rules": 0}}}
    )
    assert association_rules(spark, no_rules) is None


def test_the_served_hybrid_gives_the_batch_lists(
    spark: SparkSession, hybrid_run: Config, tmp_path: Path
) -> None:
    """The pyfunc (no Spark) routes, blends and applies the rules as the batch scoring did."""
    tables = served_tables(spark, hybrid_run, "hybrid")
    artifacts = {}
    for key, frame in tables.items():
        artifacts[key] = str(tmp_path / f"{key}.parquet")
        frame.to_parquet(artifacts[key])
    path = tmp_path / "model"
    mlflow.pyfunc.save_model(
        path,
        python_model=PublishedRecommender(),
        artifacts=artifacts,
        model_config=serving_settings(hybrid_run, "hybrid"),
    )
    served_model = mlflow.pyfunc.load_model(str(path))
    silver = spark.table(str(table_name(hybrid_run, "interactions")))
    request = (
        customer_histories(hybrid_run.models, silver, "hybrid")
        .select("segment", "customer_id", "history", "history_weights", "orders", "last_basket")
        .toPandas()
    )
    answer = served_model.predict(request)
    batch = spark.table(str(table_name(hybrid_run, "recommendations"))).toPandas()

    def lists(frame: pd.DataFrame) -> dict[tuple[str, str], list[tuple[str, str, str | None]]]:
        ordered = frame.sort_values(["segment", "customer_id", "rank"])
        ordered = ordered.assign(
            reason_item_id=ordered.reason_item_id.astype(object).where(ordered.reason_item_id.notna(), None)
        )
        entries = zip(ordered.item_id, ordered.reason, ordered.reason_item_id, strict=True)
        keys = zip(ordered.segment, ordered.customer_id, strict=True)
        out: dict[tuple[str, str], list[tuple[str, str, str | None]]] = {}
        for key, entry in zip(keys, entries, strict=True):
            out.setdefault(key, []).append(entry)
        return out

    served, published = lists(answer), lists(batch)
    assert served == published  # items, their order, and why each is there
    by_id = lists(served_model.predict(request[["customer_id"]]))
    assert by_id == published  # the model reads each customer's history from its own copy
    assert len(published) == len(request) > 0
    reasons = {reason for entries in published.values() for _, reason, _ in entries}
    assert {"bought_with_last_basket", "because_bought"} <= reasons  # rules and ItemKNN took part
