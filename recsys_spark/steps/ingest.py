"""Bronze purchases -> silver.interactions, with every unusable row quarantined with its reason.

Accounting is exact: rows read = valid rows + quarantined rows + exact duplicates dropped, and
each stage logs its counts. Ingest is incremental and idempotent: a line's ``line_id`` is the
hash of its raw content, and silver and quarantine are MERGEd on it, so re-running on the same
bronze inserts nothing and landing a new month inserts only that month's lines.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys_spark.config import Config
from recsys_spark.io.tables import (
    INTERACTIONS_SCHEMA,
    QUARANTINE_SCHEMA,
    TableName,
    merge_new_rows,
    overwrite_table,
    run_stamp,
    table_name,
)
from recsys_spark.kernels.routing import GLOBAL_SEGMENT
from recsys_spark.progress import stage
from recsys_spark.tracking.runs import PipelineRun, StepReport

# Bronze bookkeeping columns, not part of a raw input line.
SOURCE_FILE = "source_file"
LOADED_AT = "loaded_at"
MALFORMED = "_corrupt_record"
BRONZE_META = (SOURCE_FILE, LOADED_AT)

# Quarantine reasons in precedence order: a row is quarantined once, under its first reason.
QUARANTINE_REASONS = (
    "malformed_line",
    "cancellation",
    "non_product_code",
    "missing_customer",
    "missing_item",
    "missing_order",
    "unparseable_timestamp",
    "future_timestamp",
    "unparseable_quantity",
    "non_positive_quantity",
    "unparseable_price",
    "non_positive_price",
    "missing_segment",
    "near_duplicate",  # the same purchase as another line once trimmed and parsed
)
LANDING_FILE_RE = re.compile(r"^[A-Za-z0-9._-]+\.(csv|csv\.gz|parquet)$")


class IngestError(ValueError):
    """The input cannot be ingested as configured; the message says what to change."""


@dataclass
class LandResult:
    files: list[str]
    rows_landed: int
    bronze_rows_before: int
    bronze_rows_after: int

    @property
    def rows_added(self) -> int:
        return self.bronze_rows_after - self.bronze_rows_before


@dataclass
class IngestResult:
    rows_read: int
    duplicates_dropped: int
    valid: int
    quarantined: dict[str, int] = field(default_factory=dict)
    silver_inserted: int = 0
    quarantine_inserted: int = 0

    @property
    def quarantined_total(self) -> int:
        return sum(self.quarantined.values())

    @property
    def already_ingested(self) -> int:
        """Lines an earlier run already put in silver or quarantine."""
        return self.valid + self.quarantined_total - self.silver_inserted - self.quarantine_inserted

    def check_accounting(self) -> None:
        """Fail loudly if any row went missing between read and write."""
        accounted = self.valid + self.quarantined_total + self.duplicates_dropped
        if accounted != self.rows_read:
            raise AssertionError(
                f"ingest lost rows: read {self.rows_read:,} but valid {self.valid:,} + quarantined "
                f"{self.quarantined_total:,} + duplicates {self.duplicates_dropped:,} = {accounted:,}"
            )


def landing_files(path: Path) -> list[Path]:
    """The landing files in ``path`` (CSV, gzip'd CSV or Parquet), sorted by name."""
    if not path.is_dir():
        raise IngestError(f"landing folder {path} not found: set input.landing_path in conf")
    files = sorted(p for p in path.iterdir() if p.is_file() and LANDING_FILE_RE.match(p.name))
    if not files:
        raise IngestError(f"no .csv, .csv.gz or .parquet files in {path}")
    return files


def read_landing(spark: SparkSession, files: list[Path], file_format: str) -> DataFrame:
    """Landing files as raw strings, one row per input line, plus the source file name.

    CSV lines that do not parse into the header's columns keep their text in ``_corrupt_record``
    and are quarantined by ingest as ``malformed_line`` rather than silently truncated.
    """
    paths = [str(p) for p in files]
    if file_format == "parquet":
        # Files may type a column differently (Quantity int one month, text the next): each
        # schema group is read on its own and every column becomes a string, as in CSV.
        by_schema: dict[str, list[str]] = {}
        for path in paths:
            by_schema.setdefault(_parquet_schema(spark, path).json(), []).append(path)
        parts = []
        for group in by_schema.values():
            df = spark.read.parquet(*group)
            df = df.select(*(F.col(f"`{c}`").cast("string").alias(c) for c in df.columns))
            parts.append(df.withColumn(SOURCE_FILE, F.col("_metadata.file_name")))
        return functools.reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), parts)
    # Files may differ in header (a column added one month): read each header group on its own.
    by_header: dict[tuple[str, ...], list[str]] = {}
    for path in paths:
        header = tuple(spark.read.options(header=True, multiLine=True, escape='"').csv(path).columns)
        by_header.setdefault(header, []).append(path)
    parts = []
    for header, group in by_header.items():
        schema = T.StructType([T.StructField(c, T.StringType()) for c in header])
        part = (
            spark.read.schema(schema.add(MALFORMED, T.StringType()))
            .option("header", True)
            # RFC 4180: quoted fields may hold line breaks and doubled quotes ("" for ").
            .option("multiLine", True)
            .option("escape", '"')
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", MALFORMED)
            .csv(group)
        )
        parts.append(part.withColumn(SOURCE_FILE, F.col("_metadata.file_name")))
    return functools.reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), parts)


def _parquet_schema(spark: SparkSession, path: str) -> T.StructType:
    try:
        return spark.read.parquet(path).schema
    except AnalysisException as exc:
        if "PARQUET_TYPE_ILLEGAL" not in str(exc):
            raise
        raise IngestError(
            f"{Path(path).name} has a column type Spark cannot read ({str(exc).splitlines()[0]}); "
            "nanosecond timestamps are the usual cause: write them in microseconds "
            "(pandas: to_parquet(..., coerce_timestamps='us'))"
        ) from None


def load_sample(spark: SparkSession, config: Config) -> LandResult:
    """Land the files in ``input.landing_path`` as the bronze purchases Delta table.

    Each file's rows replace that file's earlier rows in one commit (``replaceWhere`` on
    ``source_file``), so landing the same files again adds nothing and a new month adds its rows.
    """
    files = landing_files(config.landing_path)
    name = table_name(config, "purchases")
    with stage("load-sample", "read landing files") as st:
        df = read_landing(spark, files, config.input.landing_format).withColumn(
            LOADED_AT, F.current_timestamp()
        )
        df = df.cache()
        rows = df.count()
        st.counts.update(files=len(files), rows=rows)
    with stage("load-sample", f"write {name}") as st:
        exists = spark.catalog.tableExists(str(name))
        before = spark.table(str(name)).count() if exists else 0
        # File names passed LANDING_FILE_RE, so they are safe inside a quoted SQL literal.
        quoted = ", ".join(f"'{p.name}'" for p in files)
        overwrite_table(spark, config, name, df, replace_where=f"{SOURCE_FILE} IN ({quoted})")
        after = spark.table(str(name)).count()
        st.counts.update(rows_in=rows, bronze_before=before, bronze_after=after, added=after - before)
    df.unpersist()
    return LandResult([p.name for p in files], rows, before, after)


def ingest(spark: SparkSession, config: Config, run_id: str) -> IngestResult:
    """Map, validate and deduplicate bronze purchases into silver.interactions and its quarantine."""
    bronze_name = table_name(config, "purchases")
    if not spark.catalog.tableExists(str(bronze_name)):
        raise IngestError(
            f"bronze table {bronze_name} does not exist: land purchases first (`recsys load-sample` "
            "locally, or point tables.purchases / schemas.bronze at your purchases table)"
        )
    with stage("ingest", f"read {bronze_name}") as st:
        bronze = spark.table(str(bronze_name))
        raw_columns = [c for c in bronze.columns if c not in BRONZE_META]
        _check_columns(config, raw_columns, bronze_name)
        line_id = F.sha2(F.to_json(F.struct(*(F.col(f"`{c}`") for c in raw_columns))), 256)
        keyed = bronze.withColumn("line_id", line_id)
        rows_read = keyed.count()
        st.counts.update(rows=rows_read)

    with stage("ingest", "deduplicate exact lines") as st:
        deduped = keyed.dropDuplicates(["line_id"])
        classified = _classify(deduped, config, raw_columns).persist()
        by_reason = {r["reason"]: r["count"] for r in classified.groupBy("reason").count().collect()}
        distinct = sum(by_reason.values())
        st.counts.update(rows_in=rows_read, rows_out=distinct, duplicates_dropped=rows_read - distinct)

    valid = by_reason.pop(None, 0)
    quarantined = {r: by_reason[r] for r in QUARANTINE_REASONS if r in by_reason}
    result = IngestResult(rows_read, rows_read - distinct, valid, quarantined)
    result.check_accounting()
    with stage("ingest", "validate") as st:
        st.counts.update(
            rows_in=distinct, valid=valid, quarantined=result.quarantined_total, reasons=quarantined
        )

    stamp = run_stamp(run_id, "ingested_at")
    interactions = table_name(config, "interactions")
    with stage("ingest", f"merge {interactions}") as st:
        silver_rows = classified.where(F.col("reason").isNull()).withColumns(stamp)
        keys = ("line_id",)
        result.silver_inserted = merge_new_rows(
            spark, config, interactions, silver_rows, INTERACTIONS_SCHEMA, keys
        )
        st.counts.update(rows_in=valid, inserted=result.silver_inserted)
    quarantine = table_name(config, "interactions_quarantine")
    with stage("ingest", f"merge {quarantine}") as st:
        bad_rows = classified.where(F.col("reason").isNotNull()).withColumns(stamp)
        # A line never sits in both tables: one that an earlier run put in silver stays there
        # even if a newer rule (e.g. near_duplicate) would reject it now.
        in_silver = spark.table(str(interactions)).select("line_id")
        bad_rows = bad_rows.join(in_silver, "line_id", "left_anti")
        result.quarantine_inserted = merge_new_rows(
            spark, config, quarantine, bad_rows, QUARANTINE_SCHEMA, ("line_id",)
        )
        st.counts.update(rows_in=result.quarantined_total, inserted=result.quarantine_inserted)
    classified.unpersist()
    return result


def _check_columns(config: Config, raw_columns: list[str], bronze_name: TableName) -> None:
    mapping = vars(config.input.columns)
    missing = {target: source for target, source in mapping.items() if source and source not in raw_columns}
    if missing:
        wanted = ", ".join(f"{src!r} (for {tgt})" for tgt, src in missing.items())
        raise IngestError(
            f"{bronze_name} has no column {wanted}; its columns are {', '.join(raw_columns)}. "
            "Fix input.columns in conf to name the input's columns (schema drift or a renamed column?)"
        )


def _clean(name: str | None) -> Column:
    """Trimmed string, empty as null."""
    if name is None:
        return F.lit(None).cast("string")
    value = F.trim(F.col(f"`{name}`"))
    return F.when(value == "", None).otherwise(value)


def _number(name: str) -> Column:
    """The column as a finite double, or null when it is not a number (NaN and infinities too)."""
    value = _clean(name).try_cast("double")
    return F.when(~F.isnan(value) & (F.abs(value) < float("inf")), value)


def _classify(df: DataFrame, config: Config, raw_columns: list[str]) -> DataFrame:
    """Typed silver columns plus ``reason`` (null for a usable row), for every input row."""
    spec = config.input
    cols = spec.columns
    item = _clean(cols.item_id)
    if spec.uppercase_item_ids:
        item = F.upper(item)
    customer = F.regexp_replace(_clean(cols.customer_id), r"\.0+$", "")  # spreadsheet exports: 17850.0
    order = _clean(cols.order_id)
    ts_text = _clean(cols.event_ts)
    event_ts = F.try_to_timestamp(ts_text, F.lit(spec.timestamp_format))
    quantity, price = _number(cols.quantity), _number(cols.unit_price)
    segment = _clean(cols.segment) if cols.segment else F.lit(GLOBAL_SEGMENT)
    non_product = F.upper(item).isin([c.upper() for c in spec.non_product_codes])
    if spec.non_product_code_pattern:
        non_product = non_product | item.rlike(spec.non_product_code_pattern)
    latest_allowed = F.timestamp_add("HOUR", F.lit(spec.future_tolerance_hours), F.current_timestamp())
    malformed = F.col(MALFORMED).isNotNull() if MALFORMED in raw_columns else F.lit(False)
    checks = [
        ("malformed_line", malformed),
        ("cancellation", order.startswith(spec.cancellation_prefix)),
        ("non_product_code", non_product),
        ("missing_customer", customer.isNull()),
        ("missing_item", item.isNull()),
        ("missing_order", order.isNull()),
        ("unparseable_timestamp", event_ts.isNull()),
        ("future_timestamp", event_ts > latest_allowed),
        ("unparseable_quantity", quantity.isNull()),
        ("non_positive_quantity", quantity <= 0),
        ("unparseable_price", price.isNull()),
        ("non_positive_price", price <= 0),
        ("missing_segment", segment.isNull()),
    ]
    assert tuple(name for name, _ in checks) + ("near_duplicate",) == QUARANTINE_REASONS
    reason = F.lit(None).cast("string")
    for name, failed in reversed(checks):
        reason = F.when(F.coalesce(failed, F.lit(False)), F.lit(name)).otherwise(reason)
    raw = F.create_map(*(x for c in raw_columns for x in (F.lit(c), F.col(f"`{c}`"))))
    typed = df.select(
        raw.alias("raw"),
        F.col("line_id"),
        F.col(SOURCE_FILE),
        segment.alias("segment"),
        customer.alias("customer_id"),
        item.alias("item_id"),
        order.alias("order_id"),
        event_ts.alias("event_ts"),
        quantity.alias("quantity"),
        price.alias("unit_price"),
        F.round(quantity * price, 4).alias("revenue"),
        _clean(cols.description).alias("description"),
        reason.alias("reason"),
    )
    # Usable lines that differ only in spacing, case or number format (" 71053 " vs "71053",
    # "6" vs "6.0") are one purchase: the first by source file, then line id, is kept.
    purchase = ["segment", "customer_id", "item_id", "order_id", "event_ts", "quantity", "unit_price"]
    first = Window.partitionBy(*purchase, F.col("reason").isNull()).orderBy(SOURCE_FILE, "line_id")
    twin = F.col("reason").isNull() & (F.row_number().over(first) > 1)
    return typed.withColumn("reason", F.when(twin, "near_duplicate").otherwise(F.col("reason")))


def step_load_sample(spark: SparkSession, config: Config, run: PipelineRun) -> StepReport:
    result = load_sample(spark, config)
    return StepReport(
        {
            "files": len(result.files),
            "rows_landed": result.rows_landed,
            "bronze_rows_added": result.rows_added,
        },
        [
            f"bronze: landed {len(result.files)} files, {result.rows_landed:,} rows; "
            f"table now {result.bronze_rows_after:,} rows ({result.rows_added:+,})"
        ],
    )


def step(spark: SparkSession, config: Config, run: PipelineRun) -> StepReport:
    result = ingest(spark, config, run.run_id)
    metrics = {
        "rows_read": result.rows_read,
        "duplicates_dropped": result.duplicates_dropped,
        "valid_rows": result.valid,
        "quarantined_rows": result.quarantined_total,
        "silver_inserted": result.silver_inserted,
        "quarantine_inserted": result.quarantine_inserted,
        **{f"quarantined.{reason}": n for reason, n in result.quarantined.items()},
    }
    reasons = "\n".join(f"    {reason:<24}{n:>10,}" for reason, n in result.quarantined.items())
    lines = [
        f"ingest: rows read {result.rows_read:,}",
        f"  valid (silver)          {result.valid:>10,}   new {result.silver_inserted:,}",
        f"  quarantined             {result.quarantined_total:>10,}   new {result.quarantine_inserted:,}",
        reasons,
        f"  exact duplicates dropped{result.duplicates_dropped:>10,}",
        f"  check: {result.rows_read:,} read = {result.valid:,} silver + {result.quarantined_total:,} "
        f"quarantine + {result.duplicates_dropped:,} duplicates",
        f"  already ingested by earlier runs: {result.already_ingested:,}",
    ]
    return StepReport(metrics, lines)
