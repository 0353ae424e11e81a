"""Delta write helpers: the rows a write reports are the rows it wrote, read from its commit;
views over tables an earlier version wrote."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from pyspark.sql import SparkSession

from recsys_spark.config import Config
from recsys_spark.io.tables import overwrite_table, table_name
from recsys_spark.io.views import create_views, view_name


def test_overwrite_reports_the_rows_it_wrote_even_when_a_replace_copies_others(
    spark: SparkSession, make_config: Callable[..., Config]
) -> None:
    config = make_config()
    name = table_name(config, "model_metrics")
    runs = spark.range(10).selectExpr("id", "concat('run', cast(id % 2 as string)) as run_id").coalesce(1)
    assert overwrite_table(spark, config, name, runs) == 10
    # One file holds both runs: replacing run1's rows writes run0's again (copied), not counted.
    again = spark.range(3).selectExpr("id", "'run1' as run_id")
    assert overwrite_table(spark, config, name, again, "run_id = 'run1'") == 3
    assert spark.table(str(name)).count() == 8
    assert overwrite_table(spark, config, name, runs.limit(0)) == 0


def test_a_view_over_a_table_an_earlier_version_wrote_waits_for_its_next_write(
    spark: SparkSession, make_config: Callable[..., Config]
) -> None:
    """gold.recommendations as versions before the score intervals wrote it (no score_low,
    score_high): the session's views skip v_recommendations_latest instead of failing, and the
    next write (which adds the columns) brings it."""
    config = make_config()
    items = spark.createDataFrame(
        [("i1", "a mug", "mugs")], "item_id string, description string, category string"
    )
    overwrite_table(spark, config, table_name(config, "items"), items)
    old = "segment string, customer_id string, rank int, item_id string, score float, model string, "
    old += "reason string, reason_item_id string, run_id string, generated_at timestamp"
    row = ("all", "c1", 1, "i1", 0.5, "als", "als_score", None, "r1", datetime(2026, 1, 1))
    recommendations = table_name(config, "recommendations")
    overwrite_table(spark, config, recommendations, spark.createDataFrame([row], old))
    assert view_name(config, "v_recommendations_latest") not in create_views(spark, config)
    newer = spark.createDataFrame(
        [(*row[:8], 0.25, 0.75, "r2", datetime(2026, 1, 2))],
        old.replace("run_id string", "score_low float, score_high float, run_id string"),
    )
    overwrite_table(spark, config, recommendations, newer, "run_id = 'r2'")
    assert view_name(config, "v_recommendations_latest") in create_views(spark, config)
    latest = spark.table(str(view_name(config, "v_recommendations_latest")))
    assert latest.select("run_id", "score_low", "score_high").collect() == [("r2", 0.25, 0.75)]
