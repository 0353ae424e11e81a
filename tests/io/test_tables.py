"""Delta write helpers: the rows a write reports are the rows it wrote, read from its commit."""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import SparkSession

from recsys_spark.config import Config
from recsys_spark.io.tables import overwrite_table, table_name


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
