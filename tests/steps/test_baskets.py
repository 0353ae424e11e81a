"""Distributed mining on real Spark: exact on Groceries (vs the reference and MLlib), the
published tables on the Online Retail sample, cart add-ons in Python and SQL, guard rails."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.ml.fpm import FPGrowth
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark import synthetic
from recsys_spark.config import Config
from recsys_spark.distributed import baskets as mining
from recsys_spark.io.tables import table_name
from recsys_spark.kernels.itemsets import ItemsetCeilingError
from recsys_spark.steps.baskets import recommend_for_cart, run_baskets
from recsys_spark.steps.ingest import ingest, load_sample
from tests.conftest import DATA

DOCS = Path(__file__).resolve().parents[2] / "docs" / "baskets.md"


def settings(
    min_support: float, chunk_baskets: int = 50_000, max_itemsets: int = 100_000
) -> mining.MiningSettings:
    return mining.MiningSettings(min_support, 10, max_itemsets, chunk_baskets, 1, 1)


@pytest.fixture(scope="module")
def groceries(spark: SparkSession) -> DataFrame:
    lines = spark.read.text(str(DATA / "groceries" / "groceries.csv"))
    frame = lines.select(
        F.lit("all").alias("segment"),
        F.monotonically_increasing_id().cast("string").alias("order_id"),
        F.array_sort(F.array_distinct(F.transform(F.split("value", ","), F.trim))).alias("items"),
    )
    return frame.persist()


ALL_RULES = mining.RuleSettings(0.0, 0.0)


def mine(
    spark: SparkSession,
    baskets: DataFrame,
    conf: mining.MiningSettings,
    rules: mining.RuleSettings = ALL_RULES,
) -> mining.Mined:
    return mining.mine(spark, baskets, mining.segment_plan(baskets, conf), conf, rules)


def test_groceries_exact_and_equal_to_mllib(spark: SparkSession, groceries: DataFrame) -> None:
    ours = mine(spark, groceries, settings(0.01)).itemsets
    sizes = {r["size"]: r["count"] for r in ours.groupBy(F.size("items").alias("size")).count().collect()}
    assert ours.count() == 333 and sizes == {1: 88, 2: 213, 3: 32}
    milk = ours.where(F.col("items") == F.array(F.lit("whole milk"))).first()
    assert milk.freq == 2513 and round(milk.support, 4) == 0.2555

    mllib = FPGrowth(itemsCol="items", minSupport=0.01).fit(groceries).freqItemsets
    expected = mllib.select(F.array_sort("items").alias("items"), F.col("freq").cast("long"))
    assert_df_equality(
        ours.select("items", "freq"),
        expected,
        ignore_row_order=True,
        ignore_nullable=True,
        ignore_metadata=True,
    )


def test_several_chunks_give_the_same_itemsets_and_rules(spark: SparkSession, groceries: DataFrame) -> None:
    rules = mining.RuleSettings(0.1, 1.0)
    whole = mine(spark, groceries, settings(0.01), rules)
    chunked_plan = mining.segment_plan(groceries, settings(0.01, chunk_baskets=1_500))
    assert int(chunked_plan.chunks.iloc[0]) == 7
    chunked = mine(spark, groceries, settings(0.01, chunk_baskets=1_500), rules)
    assert_df_equality(
        chunked.itemsets, whole.itemsets, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True
    )
    assert_approx_df_equality(
        chunked.rules.drop("conviction"),
        whole.rules.drop("conviction"),
        1e-12,
        ignore_row_order=True,
        ignore_nullable=True,
    )
    assert whole.rules.count() > 0


def test_many_chunks_where_some_find_nothing(spark: SparkSession) -> None:
    """Synthetic orders of 3 lines in 20 chunks, beside a segment where nothing is frequent: a
    chunk that finds nothing returns an empty list column, which once failed the whole job in
    Arrow (float64 to array<string>) at 3M lines."""
    lines = synthetic.purchases(n_users=500, n_items=60, n_events=6_000, n_categories=5, seed=1)
    lines["order_id"] = "O" + (lines.index // 3).astype(str)
    unique = pd.DataFrame({"segment": "rare", "order_id": [f"R{i}" for i in range(2_000)]})
    unique["item_id"] = "X" + unique.order_id  # every item bought once: nothing is frequent
    frame = spark.createDataFrame(pd.concat([lines[["segment", "order_id", "item_id"]], unique]))
    baskets = frame.groupBy("segment", "order_id").agg(F.array_sort(F.collect_set("item_id")).alias("items"))
    rules = mining.RuleSettings(0.0, 0.0)
    in_chunks = settings(0.02, chunk_baskets=100)
    chunked_plan = mining.segment_plan(baskets, in_chunks)
    assert dict(zip(chunked_plan.segment, chunked_plan.chunks, strict=True)) == {"all": 20, "rare": 20}
    chunked = mine(spark, baskets, in_chunks, rules)
    whole = mine(spark, baskets, settings(0.02), rules)
    assert_df_equality(
        chunked.itemsets, whole.itemsets, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True
    )
    assert_approx_df_equality(chunked.rules, whole.rules, 1e-12, ignore_row_order=True, ignore_nullable=True)
    counts = {r.segment: r["count"] for r in chunked.itemsets.groupBy("segment").count().collect()}
    assert counts == {"all": 50} and chunked.rules.count() == 20


def test_rules_by_hand_through_spark(spark: SparkSession) -> None:
    baskets = spark.createDataFrame(
        [
            ("s", str(i), items)
            for i, items in enumerate([["a", "b"], ["a", "b", "c"], ["a", "c"], ["b"], ["a", "b"]])
        ],
        "segment string, order_id string, items array<string>",
    )
    rules = mine(spark, baskets, settings(1), mining.RuleSettings(0.5, 0.0)).rules
    expected = spark.createDataFrame(
        [
            ("s", ["a"], ["b"], 0.6, 0.75, 0.9375, -0.04, 0.8),
            ("s", ["b"], ["a"], 0.6, 0.75, 0.9375, -0.04, 0.8),
            ("s", ["a"], ["c"], 0.4, 0.5, 1.25, 0.08, 1.2),
            ("s", ["c"], ["a"], 0.4, 1.0, 1.25, 0.08, float("inf")),
            ("s", ["c"], ["b"], 0.2, 0.5, 0.625, -0.12, 0.4),
            ("s", ["a", "c"], ["b"], 0.2, 0.5, 0.625, -0.12, 0.4),
            ("s", ["b", "c"], ["a"], 0.2, 1.0, 1.25, 0.04, float("inf")),
        ],
        mining.RULE_SCHEMA,
    )
    # chispa's approximate comparison cannot compare inf to inf: check conviction on its own.
    no_inf = ["segment", "antecedent", "consequent", "support", "confidence", "lift", "leverage"]
    assert_approx_df_equality(
        rules.select(no_inf),
        expected.select(no_inf),
        1e-9,
        ignore_row_order=True,
        ignore_nullable=True,
    )
    conviction = {(tuple(r.antecedent), r.consequent[0]): r.conviction for r in rules.collect()}
    assert conviction[(("c",), "a")] == float("inf") and conviction[(("a",), "b")] == pytest.approx(0.8)


def test_ceiling_stops_before_memory_runs_out(spark: SparkSession, groceries: DataFrame) -> None:
    with pytest.raises(ItemsetCeilingError, match=r"segment 'all': more than 50 .*baskets\.min_support"):
        mine(spark, groceries, settings(0.001, max_itemsets=50))


@pytest.fixture(scope="module")
def published(spark: SparkSession, make_config: Callable[..., Config]) -> tuple[Config, object]:
    config = make_config(
        baskets={
            "min_support": 0.02,
            "min_segment_baskets": 20,
            "max_basket_items": 60,
            "substitutes": {"min_item_support": 0.03, "max_lift": 0.9, "min_expected": 1.0},
        }
    )
    load_sample(spark, config)
    ingest(spark, config, "run-ingest")
    return config, run_baskets(spark, config, "run-baskets")


def table(spark: SparkSession, config: Config, key: str) -> DataFrame:
    return spark.table(str(table_name(config, key)))


def test_published_tables_and_basket_accounting(
    spark: SparkSession, published: tuple[Config, object]
) -> None:
    config, result = published
    interactions = table(spark, config, "interactions")
    per_segment = interactions.select("segment", "order_id").distinct().count()
    assert result.baskets == per_segment + interactions.select("order_id").distinct().count()
    oversized = table(spark, config, "baskets_quarantine")
    assert oversized.count() == result.oversized > 0
    assert oversized.where("n_items <= 60").count() == 0
    assert result.baskets == result.mined_baskets + result.oversized + result.skipped_baskets
    assert result.skipped_segments and all(
        "min_segment_baskets" in r for r in result.skipped_segments.values()
    )

    itemsets = table(spark, config, "frequent_itemsets")
    assert itemsets.count() == result.itemsets > 0
    assert {r.run_id for r in itemsets.select("run_id").distinct().collect()} == {"run-baskets"}
    assert itemsets.where(F.col("segment").isin(list(result.skipped_segments))).count() == 0
    # supports against a direct count on silver for one mined pair
    pair = itemsets.where("size = 2 AND segment = 'all'").orderBy(F.desc("freq"), "items").first()
    orders = (
        interactions.where(F.col("item_id").isin(pair["items"]))
        .groupBy("order_id")
        .agg(F.countDistinct("item_id").alias("n"))
    )
    kept = interactions.groupBy("order_id").agg(F.countDistinct("item_id").alias("k")).where("k <= 60")
    assert orders.where("n = 2").join(kept, "order_id").count() == pair.freq

    rules = table(spark, config, "association_rules")
    assert rules.count() == result.rules > 0
    assert rules.where("confidence < 0.05 OR lift < 1.0").count() == 0
    addons = table(spark, config, "frequently_bought_together")
    ranks = addons.groupBy("segment", "item_id").agg(F.max("rank").alias("top"), F.count("*").alias("n"))
    assert ranks.where("top != n OR top > 10").count() == 0
    subs = table(spark, config, "substitutes")
    assert subs.count() == result.substitutes
    assert subs.where("lift >= 0.9 OR together / expected_together >= 0.9").count() == 0


def test_recommend_for_cart_and_the_documented_sql_agree(
    spark: SparkSession, published: tuple[Config, object]
) -> None:
    config, _ = published
    rules = table(spark, config, "association_rules").where("segment = 'all'")
    top = rules.orderBy(F.desc("confidence"), F.desc("lift")).first()
    cart = list(top.antecedent)
    suggestions = recommend_for_cart(spark, config, cart, "all", n=5)
    assert suggestions and suggestions[0].confidence == pytest.approx(top.confidence)
    assert all(s.item_id not in cart and set(s.because_of) <= set(cart) for s in suggestions)
    assert [s.confidence for s in suggestions] == sorted((s.confidence for s in suggestions), reverse=True)

    sql = re.search(r"```sql\n(.*?)```", DOCS.read_text(), re.S).group(1)
    sql = sql.replace("gold.association_rules", str(table_name(config, "association_rules")))
    sql = sql.replace("array('85123A', '22423')", "array(" + ", ".join(f"'{i}'" for i in cart) + ")")
    sql = sql.replace("LIMIT 10", "LIMIT 5")
    from_sql = [(r.item_id, r.confidence, r.lift) for r in spark.sql(sql).collect()]
    assert from_sql == [(s.item_id, s.confidence, s.lift) for s in suggestions]
    assert recommend_for_cart(spark, config, [], "all") == []


def test_rerun_replaces_rather_than_appends(spark: SparkSession, published: tuple[Config, object]) -> None:
    config, first = published
    before = table(spark, config, "frequent_itemsets").drop("run_id", "generated_at")
    snapshot = spark.createDataFrame(before.collect(), before.schema)
    again = run_baskets(spark, config, "run-baskets-2")
    assert (again.itemsets, again.rules) == (first.itemsets, first.rules)
    after = table(spark, config, "frequent_itemsets")
    assert {r.run_id for r in after.select("run_id").distinct().collect()} == {"run-baskets-2"}
    assert_df_equality(
        after.drop("run_id", "generated_at"), snapshot, ignore_row_order=True, ignore_metadata=True
    )


def test_every_segment_too_small_publishes_empty_tables(
    spark: SparkSession, make_config: Callable[..., Config], published: tuple[Config, object]
) -> None:
    source, _ = published
    config = make_config(schemas=vars(source.schemas), baskets={"min_segment_baskets": 10**9})
    result = run_baskets(spark, config, "run-empty")
    assert result.mined_segments == 0 and result.mined_baskets == 0
    assert result.skipped_baskets == result.baskets - result.oversized
    for key in ("frequent_itemsets", "association_rules", "frequently_bought_together", "substitutes"):
        assert table(spark, config, key).count() == 0, key
