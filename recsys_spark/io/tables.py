"""Table names and schemas (the contracts in docs/architecture.md) and Delta write helpers.

Names are built only from validated config identifiers and always backquoted, so no user text is
spliced into SQL. Locally each table is an external Delta table under ``work/warehouse``,
re-registered by name at session start; on Databricks names are three-level (catalog.schema.table).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from delta.exceptions import DeltaConcurrentModificationException
from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys_spark.config import Config, on_databricks
from recsys_spark.io.comments import TABLES, TableDoc, bronze_doc, column_comments, sql_string
from recsys_spark.io.names import TABLE_LAYERS, TableName, local_location, table_name
from recsys_spark.progress import kill_point

log = logging.getLogger(__name__)

INTERACTIONS_SCHEMA = T.StructType(
    [
        T.StructField("segment", T.StringType(), False),
        T.StructField("customer_id", T.StringType(), False),
        T.StructField("item_id", T.StringType(), False),
        T.StructField("order_id", T.StringType(), False),
        T.StructField("event_ts", T.TimestampType(), True),  # null: the input has no time column
        T.StructField("quantity", T.DoubleType(), False),
        T.StructField("unit_price", T.DoubleType(), True),  # null: the input has no price column
        T.StructField("revenue", T.DoubleType(), True),
        T.StructField("description", T.StringType(), True),
        T.StructField("category", T.StringType(), True),
        T.StructField("rating", T.DoubleType(), True),  # null: the input has no rating column
        T.StructField("line_id", T.StringType(), False),
        T.StructField("source_file", T.StringType(), True),
        T.StructField("run_id", T.StringType(), False),
        T.StructField("ingested_at", T.TimestampType(), False),
    ]
)

QUARANTINE_SCHEMA = T.StructType(
    [
        T.StructField("raw", T.MapType(T.StringType(), T.StringType(), True), False),
        T.StructField("reason", T.StringType(), False),
        T.StructField("line_id", T.StringType(), False),
        T.StructField("source_file", T.StringType(), True),
        T.StructField("run_id", T.StringType(), False),
        T.StructField("ingested_at", T.TimestampType(), False),
    ]
)


def utc_now() -> dt.datetime:
    """Now in UTC, whole seconds, naive (Spark's session time zone is UTC): one stamp per write."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0, tzinfo=None)


def run_stamp(run_id: str, at_column: str) -> dict[str, Column]:
    """The columns every row a run writes carries: ``run_id`` and ``at_column`` (now, UTC);
    for ``DataFrame.withColumns``, one stamp shared by the step's tables."""
    return {"run_id": F.lit(run_id), at_column: F.lit(utc_now()).cast("timestamp")}


def register_local_tables(spark: SparkSession, config: Config) -> list[TableName]:
    """Register the Delta tables that earlier local runs left under the warehouse, by name."""
    registered = []
    for key in TABLE_LAYERS:
        name = table_name(config, key)
        location = local_location(config, name)
        if (location / "_delta_log").is_dir() and not spark.catalog.tableExists(str(name)):
            spark.sql(f"CREATE SCHEMA IF NOT EXISTS {name.schema_name}")
            DeltaTable.createIfNotExists(spark).tableName(str(name)).location(str(location)).execute()
            registered.append(name)
    return registered


def ensure_table(
    spark: SparkSession,
    config: Config,
    name: TableName,
    schema: T.StructType,
    partition_by: tuple[str, ...] = (),
    properties: dict[str, str] | None = None,
) -> DeltaTable:
    """Create the Delta table with ``schema``, its comments and table ``properties`` unless it
    exists; return it."""
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {name.schema_name}")
    doc = table_doc(config, name, schema.fieldNames())
    comments = column_comments(doc, schema.fieldNames())
    schema = T.StructType([_with_comment(f, comments.get(f.name)) for f in schema.fields])
    builder = DeltaTable.createIfNotExists(spark).tableName(str(name)).addColumns(schema).comment(doc.comment)
    if partition_by:
        builder = builder.partitionedBy(*partition_by)
    for key, value in (properties or {}).items():
        builder = builder.property(key, value)
    if not on_databricks():
        builder = builder.location(str(local_location(config, name)))
    table = builder.execute()
    if _evolve(spark, name, table, schema):
        table = DeltaTable.forName(spark, str(name))  # the handle made before knows the old schema
    return table


def _evolve(spark: SparkSession, name: TableName, table: DeltaTable, schema: T.StructType) -> bool:
    """Bring a table made by an earlier version up to ``schema``: add its new columns and let
    columns the contract now allows to be null take nulls (optional input columns). Returns
    whether anything changed."""
    current = {f.name: f for f in table.toDF().schema.fields}
    added = [f for f in schema.fields if f.name not in current]
    relaxed = False
    if added:
        columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in added)
        spark.sql(f"ALTER TABLE {name} ADD COLUMNS ({columns})")
    for f in schema.fields:
        if f.nullable and f.name in current and not current[f.name].nullable:
            spark.sql(f"ALTER TABLE {name} ALTER COLUMN `{f.name}` DROP NOT NULL")
            relaxed = True
    return bool(added) or relaxed


def update_rows(spark: SparkSession, name: TableName, where: Column, values: dict[str, Column]) -> int:
    """Set ``values`` on the rows matching ``where`` in one commit; returns how many changed."""
    table = DeltaTable.forName(spark, str(name))
    with conflicts_explained(name):
        table.update(where, values)
    last = _last_commit(spark, name)
    _record(name, last.version)
    return int(last.operationMetrics.get("numUpdatedRows", 0)) if last.operation == "UPDATE" else 0


# The tables written by the step now running, with the Delta version each write made: the step's
# completion marker (gold.step_runs) records them, and readers pin each table to that version.
# A context variable, so that two runs in two threads of one process keep their own records.
_recording: ContextVar[tuple[dict[str, int], ...]] = ContextVar("recsys_recording", default=())


@contextmanager
def recording_writes() -> Iterator[dict[str, int]]:
    """Collect ``logical table -> Delta version`` of every write made inside the block."""
    written: dict[str, int] = {}
    token = _recording.set((*_recording.get(), written))
    try:
        yield written
    finally:
        _recording.reset(token)


def _last_commit(spark: SparkSession, name: TableName) -> Row:
    """The table's latest commit: its version, operation and operationMetrics."""
    history = DeltaTable.forName(spark, str(name)).history(1)
    return history.select("version", "operation", "operationMetrics").first()


def _record(name: TableName, version: int | None = None, spark: SparkSession | None = None) -> None:
    recording = _recording.get()
    if not recording or name.key is None:
        return
    if version is None and spark is not None:
        version = _last_commit(spark, name).version
    recording[-1][name.key] = int(version)


def merge_new_rows(
    spark: SparkSession,
    config: Config,
    name: TableName,
    rows: DataFrame,
    schema: T.StructType,
    keys: tuple[str, ...],
    retract_where: str | None = None,
) -> tuple[int, int]:
    """Insert the rows whose ``keys`` are not in the table yet, and delete the table's rows that
    match ``retract_where`` (SQL on the table as ``t``) but are not among ``rows``, in one atomic
    MERGE; return (inserted, retracted).

    Rows already present are left untouched, so re-running on the same input changes nothing.
    The table is created with ``schema`` (the contract) on first use.
    """
    kill_point("write", name.key or name.table)
    table = ensure_table(spark, config, name, schema)
    rows = rows.select(*(rows[f.name].cast(f.dataType) for f in schema.fields))
    condition = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
    merge = table.alias("t").merge(rows.alias("s"), condition).whenNotMatchedInsertAll()
    if retract_where:
        merge = merge.whenNotMatchedBySourceDelete(retract_where)
    with conflicts_explained(name):
        result = merge.execute().first()
    _record(name, spark=spark)
    describe_table(spark, name, table_doc(config, name, schema.fieldNames()))
    return int(result["num_inserted_rows"]), int(result["num_deleted_rows"])


def overwrite_table(
    spark: SparkSession, config: Config, name: TableName, rows: DataFrame, replace_where: str | None = None
) -> int:
    """Replace the table's contents (or only the rows matching ``replace_where``) in one commit;
    return the rows written (the commit's own count: no job re-reads the table to count them).

    Readers see the previous version or the new one, never a mix. The table is created on first
    use (locally as an external table under the work folder); new columns are added. The
    columns carry their comments into the commit.
    """
    kill_point("write", name.key or name.table)
    doc = table_doc(config, name, rows.columns)
    comments = column_comments(doc, rows.columns)
    kept = {f.name: f.metadata for f in rows.schema.fields}  # e.g. bronze's raw column names
    rows = rows.select(
        *(F.col(quoted(c)).alias(c, metadata={**kept[c], **_comment(comments.get(c))}) for c in rows.columns)
    )
    writer = rows.write.format("delta").mode("overwrite")
    if spark.catalog.tableExists(str(name)):
        if replace_where:
            writer = writer.option("replaceWhere", replace_where).option("mergeSchema", "true")
        else:
            writer = writer.option("overwriteSchema", "true")
    else:
        spark.sql(f"CREATE SCHEMA IF NOT EXISTS {name.schema_name}")
        if not on_databricks():
            writer = writer.option("path", str(local_location(config, name)))
    with conflicts_explained(name):
        writer.saveAsTable(str(name))
    last = _last_commit(spark, name)
    _record(name, last.version)
    describe_table(spark, name, doc)
    metrics = last.operationMetrics
    if "numOutputRows" not in metrics:  # a commit without the count (not expected from a Delta write)
        table = spark.table(str(name))
        return (table.where(replace_where) if replace_where else table).count()
    # A replaceWhere that rewrites a file also writes that file's other rows again (copied).
    return int(metrics["numOutputRows"]) - int(metrics.get("numCopiedRows", 0))


def table_doc(config: Config, name: TableName, columns: list[str]) -> TableDoc:
    """The comments of table ``name`` (bronze's depend on the input's columns)."""
    if name.key == "purchases":
        return bronze_doc(config.input.columns, columns)
    return TABLES.get(name.key or "", TableDoc(""))


def describe_table(spark: SparkSession, name: TableName, doc: TableDoc) -> None:
    """Set the table comment and any column comment the table lacks (tables written before).

    Writes carry the column comments, so this usually only comments a table it just created:
    one metadata commit, once.
    """
    current = table_comments(spark, name)
    if doc.comment and current.get("") != doc.comment:
        spark.sql(f"COMMENT ON TABLE {name} IS {sql_string(doc.comment)}")
    for column, text in column_comments(doc, [c for c in current if c]).items():
        if current[column] != text:
            spark.sql(f"ALTER TABLE {name} ALTER COLUMN {quoted(column)} COMMENT {sql_string(text)}")


def table_comments(spark: SparkSession, name: TableName) -> dict[str, str | None]:
    """Column -> comment from ``DESCRIBE TABLE EXTENDED``; key "" is the table's own comment."""
    comments: dict[str, str | None] = {}
    in_columns = True
    for row in spark.sql(f"DESCRIBE TABLE EXTENDED {name}").collect():
        if not row.col_name or row.col_name.startswith("#"):
            in_columns = False  # past the columns: partitioning, then the detailed table information
        elif in_columns:
            comments[row.col_name] = row.comment or None
        elif row.col_name == "Comment":
            comments[""] = row.data_type
    return comments


def _comment(text: str | None) -> dict[str, str]:
    return {"comment": text} if text else {}


def _with_comment(column: T.StructField, text: str | None) -> T.StructField:
    return T.StructField(column.name, column.dataType, column.nullable, {**column.metadata, **_comment(text)})


def quoted(column: str) -> str:
    """``column`` as a backquoted SQL name, any backtick in it doubled."""
    return "`" + column.replace("`", "``") + "`"


class ConcurrentRunError(RuntimeError):
    """Another run changed a table while this run was writing it; nothing of this write landed."""


@contextmanager
def conflicts_explained(name: TableName) -> Iterator[None]:
    """Turn Delta's optimistic-concurrency conflicts into an error that says what happened."""
    try:
        yield
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, DeltaConcurrentModificationException) and "DELTA_CONCURRENT" not in text:
            raise
        raise ConcurrentRunError(
            f"{name} was changed by another run while this one was writing it, so this write was "
            f"not committed ({type(exc).__name__}); the table holds the other run's complete "
            "result. Run this step again once the other run has finished (the bundle's job allows "
            "one run at a time: max_concurrent_runs 1)."
        ) from exc
