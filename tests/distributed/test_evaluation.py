"""Splits, metric summaries and list metrics in Spark against hand-computed values."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from chispa import assert_approx_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import Config
from recsys_spark.distributed.analytics import category_of, item_categories
from recsys_spark.distributed.evaluation import (
    MEASURED_SCHEMA,
    bootstrap_intervals,
    catalogue,
    history_slices,
    leave_last_basket_out,
    list_metrics,
    summarize,
    time_split,
)
from recsys_spark.distributed.tuning import sampled_customers, validation_carve
from recsys_spark.kernels.metrics import Catalogue, measured

LOG2 = math.log2
REC_SCHEMA = "model string, segment string, customer_id string, rank int, item_id string"
PAIR_SCHEMA = "segment string, customer_id string, item_id string"


def test_summaries_average_every_test_customer_lists_or_not(spark: SparkSession) -> None:
    """The per-customer metrics (``kernels.metrics``, checked by hand there) summarised in
    Spark: a customer without a list counts, with 0."""
    recs = pd.DataFrame(
        [("m", "s", "A", r, item) for r, item in enumerate("abcde", start=1)] + [("m", "s", "C", 1, "a")],
        columns=["model", "segment", "customer_id", "rank", "item_id"],
    )
    relevant = pd.DataFrame(
        [("s", "A", "b"), ("s", "A", "d"), ("s", "A", "x"), ("s", "B", "z"), ("s", "C", "q")],
        columns=["segment", "customer_id", "item_id"],
    )
    rows = measured(recs, relevant, [5], ["m"], Catalogue({}, 0.0))
    summary = summarize(spark.createDataFrame(rows, MEASURED_SCHEMA)).first()
    assert summary.customers == 3
    assert summary.recall == pytest.approx((2 / 3) / 3)


def _lines(spark: SparkSession):
    day = dt.datetime(2024, 1, 1)
    rows = [
        ("s", "A", "a", "o1", day),
        ("s", "A", "b", "o2", day + dt.timedelta(days=10)),
        ("s", "A", "a", "o3", day + dt.timedelta(days=20)),  # re-buy: not a test item
        ("s", "A", "c", "o3", day + dt.timedelta(days=20)),
        ("s", "B", "a", "o4", day + dt.timedelta(days=5)),
        ("s", "C", "d", "o5", day + dt.timedelta(days=30)),  # cold-start customer and item
    ]
    return spark.createDataFrame(
        rows, "segment string, customer_id string, item_id string, order_id string, event_ts timestamp"
    )


def test_time_split_never_leaks_and_keeps_cold_start_rows(spark: SparkSession) -> None:
    split = time_split(_lines(spark), cutoff_date=dt.datetime(2024, 1, 15))
    train_max = split.train.agg(F.max("event_ts")).first()[0]
    assert train_max < split.cutoff
    assert {tuple(r) for r in split.test.collect()} == {("s", "A", "c"), ("s", "C", "d")}

    by_quantile = time_split(_lines(spark), cutoff_quantile=0.5)
    assert (
        by_quantile.train.count() + _lines(spark).where(F.col("event_ts") >= by_quantile.cutoff).count() == 6
    )
    assert by_quantile.train.agg(F.max("event_ts")).first()[0] < by_quantile.cutoff
    last_days = time_split(_lines(spark), last_days=15)
    assert last_days.cutoff == dt.datetime(2024, 1, 16)


def test_leave_last_basket_out_tests_each_customers_latest_order(spark: SparkSession) -> None:
    split = leave_last_basket_out(_lines(spark))
    assert {tuple(r) for r in split.test.collect()} == {("s", "A", "c")}  # a was bought before
    # B and C have one order each: it stays in train.
    assert {r.order_id for r in split.train.collect()} == {"o1", "o2", "o4", "o5"}
    with pytest.raises(ValueError, match="exactly one"):
        time_split(_lines(spark))


def test_history_slices_name_cold_start_customers(spark: SparkSession) -> None:
    split = time_split(_lines(spark), cutoff_date=dt.datetime(2024, 1, 15))
    slices = {(r.customer_id, r.history) for r in history_slices(split.train, split.test).collect()}
    assert slices == {("A", "2-4"), ("C", "cold_start")}


def test_item_categories_take_the_usual_last_word_of_the_description(spark: SparkSession) -> None:
    described = spark.createDataFrame(
        [
            ("a", "WHITE HANGING HEART T-LIGHT HOLDER"),
            ("a", "WHITE HANGING HEART T-LIGHT HOLDER"),
            ("a", "wrong description"),
            ("b", "PACK OF 72 RETROSPOT CAKE CASES "),
            ("c", None),
        ],
        "item_id string, description string",
    )
    lines = described.withColumn("category", category_of(F.col("description")))
    assert {tuple(r) for r in item_categories(lines).collect()} == {("a", "HOLDER"), ("b", "CASES")}


def test_bootstrap_intervals_are_seeded_paired_and_as_wide_as_theory(spark: SparkSession) -> None:
    customers = 2000
    rng = np.random.default_rng(7)
    hits = (rng.random(customers) < 0.3).astype(float)
    rows = [("m", "s", f"c{i}", 10, *(6 * [float(h)])) for i, h in enumerate(hits)]
    rows += [("const", "s", f"c{i}", 10, *(6 * [0.5])) for i in range(customers)]
    per_user = spark.createDataFrame(
        rows,
        "model string, segment string, customer_id string, k int, precision double, recall double, "
        "ndcg double, map double, hit_rate double, mrr double",
    )
    first = bootstrap_intervals(per_user, [["model"]], 200, seed=3)[0].where("metric = 'ndcg'").toPandas()
    again = bootstrap_intervals(per_user, [["model"]], 200, seed=3)[0].where("metric = 'ndcg'").toPandas()
    pd.testing.assert_frame_equal(first.sort_values("model"), again.sort_values("model"))
    by_model = first.set_index("model")
    assert by_model.loc["const", "ci_low"] == pytest.approx(0.5) and by_model.loc[
        "const", "ci_high"
    ] == pytest.approx(0.5)
    low, high = by_model.loc["m", "ci_low"], by_model.loc["m", "ci_high"]
    mean = hits.mean()
    theory = 2 * 1.96 * math.sqrt(mean * (1 - mean) / customers)  # the normal interval's width
    assert low < mean < high
    assert high - low == pytest.approx(theory, rel=0.25)


def test_list_metrics_equal_hand_computed_values(spark: SparkSession) -> None:
    train = spark.createDataFrame(
        [
            ("s", c, i)
            for c, i in [("A", "a"), ("B", "a"), ("C", "a"), ("A", "b"), ("B", "c"), ("C", "d"), ("C", "e")]
        ],
        PAIR_SCHEMA,
    )
    recs = pd.DataFrame(
        [("m", "s", "A", 1, "a"), ("m", "s", "A", 2, "c"), ("m", "s", "B", 1, "b"), ("m", "s", "B", 2, "d")],
        columns=["model", "segment", "customer_id", "rank", "item_id"],
    )
    categories = spark.createDataFrame(
        [("a", "X"), ("c", "X"), ("b", "Y"), ("d", "Z")], "item_id string, category string"
    )
    known, items = catalogue(train, categories)
    relevant = pd.DataFrame([("s", "A", "z"), ("s", "B", "z")], columns=["segment", "customer_id", "item_id"])
    per_user = spark.createDataFrame(measured(recs, relevant, [1, 2], ["m"], known), MEASURED_SCHEMA)
    actual = list_metrics(per_user, [1, 2], items).orderBy("k")
    rare = -LOG2(1 / 3)
    expected = spark.createDataFrame(
        [("m", 1, 2 / 5, rare / 2, 1 / 2, 1.0), ("m", 2, 4 / 5, 3 * rare / 4, 1 / 4, 0.75)],
        "model string, k int, coverage double, novelty double, popularity_bias double, diversity double",
    )
    assert_approx_df_equality(actual, expected, precision=1e-9, ignore_nullable=True)


def test_a_random_validation_carve_keeps_customers_who_buy_in_one_burst(
    spark: SparkSession, make_config: Callable[..., Config]
) -> None:
    # 100 customers, each buying 10 items on one day of their own, one day after another.
    day = dt.datetime(2024, 1, 1)
    rows = [
        ("s", f"c{c:03d}", f"i{(c + n) % 60}", f"o{c}", day + dt.timedelta(days=c))
        for c in range(100)
        for n in range(10)
    ]
    lines = spark.createDataFrame(
        rows, "segment string, customer_id string, item_id string, order_id string, event_ts timestamp"
    )
    evaluation_train = time_split(lines, cutoff_quantile=0.9).train
    known_validation = {}
    for carve in ("time", "random"):
        config = make_config(models={"tuning": {"validation": carve, "validation_share": 0.2}})
        carved = validation_carve(config, lines)
        fit_customers = {r.customer_id for r in carved.train.select("customer_id").distinct().collect()}
        validation = carved.test.toPandas()
        assert carved.train.join(carved.test, ["segment", "customer_id", "item_id"]).count() == 0
        assert set(validation.customer_id) <= {r.customer_id for r in evaluation_train.collect()}
        known_validation[carve] = len(set(validation.customer_id) & fit_customers)
    assert known_validation["time"] == 0  # the latest days hold only customers the fit part never saw
    # 90 customers trained on; each has one of 10 items held out with chance 1 - 0.8^10 = 0.89.
    assert known_validation["random"] >= 65


def test_validation_customers_are_capped_per_segment_by_a_seeded_sample(spark: SparkSession) -> None:
    # Segment a: 20 customers with 3 items each; segment b: 2 customers.
    rows = [("a", f"c{c:02d}", f"i{n}") for c in range(20) for n in range(3)]
    rows += [("b", f"d{c}", "i0") for c in range(2)]
    validation = spark.createDataFrame(rows, PAIR_SCHEMA)
    kept = sampled_customers(validation, 5, seed=42).toPandas()
    per_segment = kept.groupby("segment").customer_id.nunique().to_dict()
    assert per_segment == {"a": 5, "b": 2}
    lines = kept.groupby("customer_id").size()
    assert (lines[lines.index.str.startswith("c")] == 3).all()  # a kept customer keeps every line
    again = sampled_customers(validation, 5, seed=42).toPandas()
    assert set(again.customer_id) == set(kept.customer_id)
    others = {frozenset(sampled_customers(validation, 5, seed=s).toPandas().customer_id) for s in (1, 2, 3)}
    assert len(others | {frozenset(kept.customer_id)}) > 1  # the seed draws the sample
