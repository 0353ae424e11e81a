"""Helpers: every table of a config as comparable frames, and run ids per table."""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys_spark.config import Config
from recsys_spark.io.tables import TABLE_LAYERS, local_location, table_name

# Columns that say when and by which run a row was written: they differ between runs by design.
STAMPS = (
    "run_id", "generated_at", "ingested_at", "trained_at", "evaluated_at", "decided_at", "loaded_at",
    "completed_at", "exported_at", "measured_at", "recommendations_run_id", "export_run_id",
)  # fmt: skip
# Tables that keep every run's rows (replaceWhere on run_id, or appended): compare the latest run's.
PER_RUN = {
    "model_metrics": "evaluated_at",
    "published_model": "decided_at",
    "step_runs": "completed_at",
    "exported_lists": "exported_at",  # one export per recommendations run
    "experiment_results": "measured_at",
}


def content(spark: SparkSession, config: Config, key: str) -> DataFrame:
    frame = spark.table(str(table_name(config, key)))
    if key in PER_RUN:
        latest = frame.agg(F.max_by("run_id", PER_RUN[key])).first()[0]
        frame = frame.where(F.col("run_id") == latest)
    if key == "step_runs":  # Delta versions grow run by run: compare which tables each step wrote
        frame = frame.withColumn("tables", F.array_sort(F.map_keys("tables")))
    # Maps cannot be sorted or hashed (chispa sorts rows): compare them as sorted entries.
    maps = {
        f.name: F.array_sort(F.map_entries(f.name))
        for f in frame.schema.fields
        if isinstance(f.dataType, T.MapType)
    }
    return frame.drop(*STAMPS).withColumns(maps)


def snapshot(spark: SparkSession, config: Config) -> dict[str, Any]:
    """Every table's content now, collected (a later run overwrites the tables themselves)."""
    return {
        key: spark.createDataFrame(content(spark, config, key).toPandas(), content(spark, config, key).schema)
        for key in TABLE_LAYERS
        if spark.catalog.tableExists(str(table_name(config, key)))
    }


def run_ids(spark: SparkSession, config: Config, key: str) -> set[str]:
    frame = spark.table(str(table_name(config, key)))
    return {r.run_id for r in frame.select("run_id").distinct().collect()}


def delta_rs_counts(config: Config) -> dict[str, int]:
    """Rows of every table on disk as delta-rs (no Spark) reads it: what pandas, Polars or DuckDB
    users see. Raises if one cannot be read."""
    from deltalake import DeltaTable

    counts = {}
    for key in TABLE_LAYERS:
        location = local_location(config, table_name(config, key))
        if (location / "_delta_log").is_dir():
            counts[key] = DeltaTable(str(location)).to_pyarrow_table().num_rows
    return counts
