"""gold.step_runs: the completion marker each step writes last, and the table versions readers see.

A step writes its tables one commit each, so a run killed between two commits leaves them from
two runs. The marker row (run, step, and the Delta version of every table the step wrote) is
written only once all of them are committed; readers (the analyst views, the export) read each
table at the version the latest completed step recorded, so they always see whole steps.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from recsys_spark.config import Config
from recsys_spark.io.tables import conflicts_explained, ensure_table, table_name, utc_now

STEP_RUNS_SCHEMA = T.StructType(
    [
        T.StructField("run_id", T.StringType(), False),
        T.StructField("step", T.StringType(), False),
        T.StructField("tables", T.MapType(T.StringType(), T.LongType(), False), False),
        T.StructField("completed_at", T.TimestampType(), False),
    ]
)


def mark_step_complete(
    spark: SparkSession, config: Config, run_id: str, step: str, written: dict[str, int]
) -> None:
    """Record that ``step`` of ``run_id`` committed every table in ``written`` (key -> version).

    Example::

        with recording_writes() as written:
            run_baskets(spark, config, run_id)
        mark_step_complete(spark, config, run_id, "baskets", written)
    """
    row = spark.createDataFrame([(run_id, step, written, utc_now())], STEP_RUNS_SCHEMA)
    name = table_name(config, "step_runs")
    if not spark.catalog.tableExists(str(name)):
        ensure_table(spark, config, name, STEP_RUNS_SCHEMA)
    with conflicts_explained(name):
        row.write.format("delta").mode("append").saveAsTable(str(name))  # one commit, no read


def complete_versions(spark: SparkSession, config: Config) -> dict[str, int]:
    """Table key -> the Delta version the latest completed step that wrote it recorded.

    Example::

        complete_versions(spark, config)  # {"recommendations": 12, "items": 7, ...}
    """
    name = str(table_name(config, "step_runs"))
    if not spark.catalog.tableExists(name):
        return {}
    # Ten small rows a run: read as they are, without the shuffles a groupBy or a sort costs.
    rows = sorted(spark.table(name).select("completed_at", "tables").collect(), key=lambda r: r.completed_at)
    versions: dict[str, int] = {}
    for row in rows:
        versions.update(row.tables)  # the later step's version wins
    return versions


def read_complete(
    spark: SparkSession, config: Config, key: str, versions: dict[str, int] | None = None
) -> DataFrame:
    """Table ``key`` as the latest completed step left it (its current version when no step has
    recorded it, e.g. a table written before markers existed).

    Example::

        recommendations = read_complete(spark, config, "recommendations")
    """
    versions = complete_versions(spark, config) if versions is None else versions
    return spark.sql(f"SELECT * FROM {table_at(config, key, versions)}")


def table_at(config: Config, key: str, versions: dict[str, int]) -> str:
    """SQL for table ``key`` at its completed version (``name VERSION AS OF n``), or its name."""
    name = str(table_name(config, key))
    return f"{name} VERSION AS OF {versions[key]}" if key in versions else name
