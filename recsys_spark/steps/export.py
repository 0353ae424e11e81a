"""The `export` step: the latest published top-N per customer as CSV and Parquet files for CRM,
and the rules graph as CSV for graph tools.

One row per customer (in the segment of their latest order), ranked item ids and descriptions
in flat columns (item_1, description_1, ...), the model, an A/B ``variant`` and the run that
produced the list. Files go to ``<export.path>/run_id=<run>/``; re-exporting a run rewrites
identical files (rows sorted, no export time inside).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from recsys_spark.config import Config
from recsys_spark.distributed.lists import customer_histories, list_tables, made_lists
from recsys_spark.io.model_tables import blocked_items, fitted_from_tables
from recsys_spark.io.session import read_secret
from recsys_spark.io.step_runs import complete_versions, read_complete
from recsys_spark.io.tables import overwrite_table, run_stamp, table_name
from recsys_spark.kernels.lists import ListMaker, ListSpec
from recsys_spark.kernels.rerank import Rules
from recsys_spark.kernels.uplift import HOLDOUT_ARM, MODEL_ARM
from recsys_spark.progress import stage
from recsys_spark.tracking.runs import PipelineRun, StepReport

log = logging.getLogger(__name__)

VARIANT_BUCKETS = 10_000
MIN_SALT_CHARS = 16


class ExportError(RuntimeError):
    """The export cannot run as configured; the message says what to set."""


@dataclass
class ExportResult:
    run_id: str
    folder: Path
    files: list[Path] = field(default_factory=list)
    rows: int = 0
    customers_published: int = 0
    inactive_dropped: int = 0
    variants: dict[str, int] = field(default_factory=dict)


def export_salt(config: Config, spark: SparkSession | None = None) -> str:
    """The salt for hashed customer ids: a Databricks secret if configured there, else the
    environment variable ``export.salt_env``. Never logged, never part of the config."""
    conf = config.export
    salt = read_secret(spark, conf.salt_env, conf.salt_secret_scope, conf.salt_secret_key)
    if not salt or len(salt) < MIN_SALT_CHARS:
        raise ExportError(
            f"export.hash_customer_ids is true but no usable salt: set the environment variable "
            f"{conf.salt_env} (or export.salt_secret_scope and salt_secret_key on Databricks) to a "
            f"secret of at least {MIN_SALT_CHARS} characters"
        )
    return salt


def variant_of(customer_id: Column, experiment: str, holdout_share: float) -> Column:
    """``holdout`` or ``model``, by a stable hash of the experiment name and the customer id: the
    same customer stays in the same arm across runs until the experiment is renamed."""
    digest = F.sha2(F.concat(F.lit(f"{experiment}:"), customer_id), 256)
    bucket = F.conv(F.substring(digest, 1, 8), 16, 10).cast("long") % VARIANT_BUCKETS
    return F.when(bucket < int(round(holdout_share * VARIANT_BUCKETS)), HOLDOUT_ARM).otherwise(MODEL_ARM)


def hash_ids(frame: DataFrame, column: str, salt: str, hashed: str) -> DataFrame:
    """Replace ``column`` by ``hashed`` = hex SHA-256 of salt + id. Done in Python so that the
    salt travels in the task closure only, never in a query plan, log or error message."""
    schema = frame.drop(column).schema.add(hashed, "string", False)

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            digests = [hashlib.sha256((salt + value).encode()).hexdigest() for value in batch[column]]
            yield batch.drop(columns=[column]).assign(**{hashed: digests})

    return frame.mapInPandas(run, schema)


def run_export(spark: SparkSession, config: Config, export_run_id: str) -> ExportResult:
    """Write the export files for the latest published recommendations run, and what each
    customer was shown to gold.exported_lists (stamped with ``export_run_id``, the pipeline run
    exporting), so that `recsys experiment` later measures what they bought against it."""
    conf = config.export
    salt = export_salt(config, spark) if conf.hash_customer_ids else None
    # The tables as their latest completed steps left them: never half of a killed run.
    versions = complete_versions(spark, config)
    recommendations = read_complete(spark, config, "recommendations", versions)
    latest = recommendations.select(
        F.max_by("run_id", "generated_at").alias("run_id"), F.max("generated_at").alias("generated_at")
    ).first()
    if latest is None or latest.run_id is None:
        raise ExportError(f"{table_name(config, 'recommendations')} is empty: run `recsys score` first")
    run_id = latest.run_id
    folder = _export_root(config) / f"run_id={run_id}"
    result = ExportResult(run_id, folder)
    customers_name = table_name(config, "customers")
    if not spark.catalog.tableExists(str(customers_name)):
        raise ExportError(f"{customers_name} does not exist: run `recsys analytics` before `recsys export`")

    published = recommendations.where(F.col("run_id") == run_id)
    kept = _chosen_customers(spark, config, published, versions, result)
    kept_count = result.customers_published - result.inactive_dropped

    with stage("export", "lists") as st:
        # Persisted: the record below and every file format read the lists (the holdout's are a UDF pass).
        lists = _model_lists(published, kept).unionByName(_holdout_lists(spark, config, kept)).persist()
        items = read_complete(spark, config, "items", versions)
        rows = _flat_rows(config, items, lists, kept, run_id, latest.generated_at)
        if salt is not None:
            rows = hash_ids(rows, "customer_id", salt, "customer_hash")
        key = "customer_hash" if salt is not None else "customer_id"
        rows = rows.select(key, *[c for c in rows.columns if c != key]).orderBy(key)
        st.counts.update(rows=kept_count)

    with stage("export", f"record {table_name(config, 'exported_lists')}") as st:
        as_of = read_complete(spark, config, "interactions", versions).agg(F.max("event_ts")).first()[0]
        shown = _shown_lists(config, lists, kept, run_id, as_of, export_run_id)
        st.counts.update(rows=_record_shown(spark, config, shown, run_id))

    with stage("export", "write files") as st:
        folder.mkdir(parents=True, exist_ok=True)
        for fmt in conf.formats:
            result.files.append(write_single_file(spark, rows, folder, "recommendations", fmt, key))
        result.files += _write_rules_graph(spark, config, folder, versions)
        result.rows = kept_count
        _write_manifest(config, result, rows.columns)
        st.counts.update(files=len(result.files), rows=result.rows)
    lists.unpersist()
    kept.unpersist()
    return result


def _chosen_customers(
    spark: SparkSession, config: Config, published: DataFrame, versions: dict[str, int], result: ExportResult
) -> DataFrame:
    """The customers exported (persisted): segment, customer_id, days_since_last_order and
    their A/B ``variant``; the counts go into ``result``."""
    conf = config.export
    with stage("export", "choose customers") as st:
        chosen = _one_segment_per_customer(published, read_complete(spark, config, "customers", versions))
        variant = variant_of(F.col("customer_id"), conf.experiment, conf.holdout_share)
        active = F.lit(True)
        if conf.active_days is not None:
            active = F.coalesce(F.col("days_since_last_order") <= conf.active_days, F.lit(False))
        chosen = chosen.withColumn("variant", variant).withColumn("active", active)
        # Every count from one job: customers by (variant, active).
        counts = chosen.groupBy("variant", "active").count().collect()
        result.customers_published = sum(r["count"] for r in counts)
        result.variants = {r.variant: r["count"] for r in counts if r.active}
        kept_count = sum(result.variants.values())
        result.inactive_dropped = result.customers_published - kept_count
        kept = chosen.where("active").drop("active").persist()
        st.counts.update(
            customers=result.customers_published,
            inactive_dropped=result.inactive_dropped,
            kept=kept_count,
            **result.variants,
        )
    return kept


def _export_root(config: Config) -> Path:
    if config.export.path is None:
        return config.work_path / "exports"
    return config.resolve_path(config.export.path)


def _one_segment_per_customer(published: DataFrame, customers: DataFrame) -> DataFrame:
    """segment, customer_id and the customer's activity: their home segment (latest order)
    where they have a list there, else their alphabetically first segment with a list."""
    listed = published.select("segment", "customer_id").distinct()
    activity = customers.select("customer_id", F.col("segment").alias("home"), "days_since_last_order")
    preference = Window.partitionBy("customer_id").orderBy(
        (F.col("segment") != F.col("home")).cast("int"), "segment"
    )
    return (
        listed.join(activity, "customer_id", "left")
        .withColumn("position", F.row_number().over(preference))
        .where("position = 1")
        .select("segment", "customer_id", "days_since_last_order")
    )


def _model_lists(published: DataFrame, kept: DataFrame) -> DataFrame:
    model_arm = kept.where(F.col("variant") == MODEL_ARM).select("segment", "customer_id")
    return published.join(model_arm, ["segment", "customer_id"]).select(
        "segment", "customer_id", "rank", "item_id", "model"
    )


def _holdout_lists(spark: SparkSession, config: Config, kept: DataFrame) -> DataFrame:
    """Segment popularity (overall where the segment was not trained) for the holdout arm, from
    the same trained popularity model that the evaluation's baseline uses."""
    holdout = kept.where(F.col("variant") == HOLDOUT_ARM).select("segment", "customer_id")
    interactions = spark.table(str(table_name(config, "interactions")))
    histories = customer_histories(config.models, interactions, "popularity").persist()
    segment_users = dict(histories.groupBy("segment").count().collect())
    fitted = fitted_from_tables(spark, config)
    popular = fitted.item_factors.where(F.col("model") == "popularity")  # all the holdout needs
    items = popular.select("segment", "item_id", "model", "factors").toPandas()
    tables = list_tables(config.models, fitted, items, interactions, None, segment_users, {"popularity"})
    rules = Rules(blocked=frozenset(blocked_items(spark, config)))
    maker = ListMaker.of(tables, ListSpec("popularity", config.models.top_n, rules))

    def popular_lists(customers: pd.DataFrame) -> pd.DataFrame:
        return maker.lists(customers, "popularity")  # as the evaluation's baseline: no top-up

    lists = made_lists(histories.join(holdout, ["segment", "customer_id"]), popular_lists)
    return lists.select("segment", "customer_id", "rank", "item_id", "model")


def _record_shown(spark: SparkSession, config: Config, shown: DataFrame, run_id: str) -> int:
    """Write the shown lists to gold.exported_lists: one export per recommendations run, as its
    folder, so exporting it again replaces its rows."""
    name = table_name(config, "exported_lists")
    return overwrite_table(spark, config, name, shown, f"recommendations_run_id = '{run_id}'")


def _shown_lists(
    config: Config,
    lists: DataFrame,
    kept: DataFrame,
    run_id: str,
    as_of: dt.datetime | None,
    export_run_id: str,
) -> DataFrame:
    """gold.exported_lists rows: one per exported customer, the items in the order shown (empty
    when nothing was left to recommend), with the newest purchase the lists were made from
    (``as_of``: the outcome windows start there)."""
    ranked = F.array_sort(F.collect_list(F.struct("rank", "item_id", "model")))
    per_customer = lists.groupBy("segment", "customer_id").agg(ranked.alias("list"))
    stamp = run_stamp(export_run_id, "exported_at")
    return kept.join(per_customer, ["segment", "customer_id"], "left").select(
        stamp["run_id"].alias("run_id"),
        F.lit(run_id).alias("recommendations_run_id"),
        F.lit(config.export.experiment).alias("experiment"),
        stamp["exported_at"].alias("exported_at"),
        F.lit(as_of).cast("timestamp").alias("as_of"),
        "segment",
        "customer_id",
        "variant",
        F.get(F.col("list"), 0)["model"].alias("model"),
        F.coalesce(F.col("list.item_id"), F.array().cast("array<string>")).alias("items"),
    )


def _flat_rows(
    config: Config,
    items: DataFrame,
    lists: DataFrame,
    kept: DataFrame,
    run_id: str,
    generated_at: dt.datetime,
) -> DataFrame:
    """One row per customer: segment, variant, model, item_1, description_1, ..., run_id,
    generated_at (of the published run)."""
    descriptions = items.select("item_id", "description")
    ranked = F.array_sort(F.collect_list(F.struct("rank", "item_id", "description", "model")))
    per_customer = (
        lists.join(descriptions, "item_id", "left")
        .groupBy("segment", "customer_id")
        .agg(ranked.alias("list"))
    )
    columns = []
    for position in range(config.models.top_n):
        entry = F.get(F.col("list"), position)
        columns += [
            entry["item_id"].alias(f"item_{position + 1}"),
            entry["description"].alias(f"description_{position + 1}"),
        ]
    # A customer with nothing left to recommend keeps a row with empty items.
    return kept.join(per_customer, ["segment", "customer_id"], "left").select(
        "customer_id",
        "segment",
        "variant",
        F.get(F.col("list"), 0)["model"].alias("model"),
        *columns,
        F.lit(run_id).alias("run_id"),
        F.lit(generated_at).cast("timestamp").alias("generated_at"),
    )


def _write_rules_graph(
    spark: SparkSession, config: Config, folder: Path, versions: dict[str, int]
) -> list[Path]:
    """The rules graph as Gephi-ready CSV: rules_graph_nodes.csv (Id, Label, PageRank, degrees)
    and rules_graph_edges.csv (Source, Target, Weight = lift, confidence, support)."""
    names = {key: table_name(config, key) for key in ("rules_graph_nodes", "rules_graph_edges", "items")}
    if not all(spark.catalog.tableExists(str(n)) for n in names.values()):
        log.info("export: no rules graph tables yet (run `recsys analytics`): graph files not written")
        return []
    labels = read_complete(spark, config, "items", versions).select(
        F.col("item_id").alias("Id"), F.col("description").alias("Label")
    )
    nodes = (
        read_complete(spark, config, "rules_graph_nodes", versions)
        .select(F.col("item_id").alias("Id"), "pagerank", "in_degree", "out_degree", "rank")
        .join(labels, "Id", "left")
        .select("Id", "Label", "pagerank", "in_degree", "out_degree", "rank")
        .orderBy("rank")
    )
    edges = read_complete(spark, config, "rules_graph_edges", versions).select(
        F.col("source_item_id").alias("Source"),
        F.col("target_item_id").alias("Target"),
        F.lit("Directed").alias("Type"),
        F.col("lift").alias("Weight"),
        "confidence",
        "support",
    )
    return [
        write_single_file(spark, nodes, folder, "rules_graph_nodes", "csv", "Id"),
        write_single_file(spark, edges.orderBy("Source", "Target"), folder, "rules_graph_edges", "csv"),
    ]


# OWASP's CSV-injection advice: a cell starting with one of these is a formula to a spreadsheet.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_OPTIONS = {
    "header": True,
    "escape": '"',  # RFC 4180: descriptions hold commas and quotes
    # Ids exactly as they are: Spark's writer trims by default, making "\t17850" "17850".
    "ignoreLeadingWhiteSpace": False,
    "ignoreTrailingWhiteSpace": False,
    "timestampFormat": "yyyy-MM-dd HH:mm:ss",
}


def spreadsheet_safe(value: Column) -> Column:
    """``value`` with a ``'`` before a leading = + - @ tab or CR, so a spreadsheet opening the
    CSV shows it as text instead of running it (``=HYPERLINK(...)``)."""
    starts = F.substring(value, 1, 1).isin(list(FORMULA_STARTS))
    return F.when(starts, F.concat(F.lit("'"), value)).otherwise(value)


def write_single_file(
    spark: SparkSession, rows: DataFrame, folder: Path, name: str, fmt: str, key: str | None = None
) -> Path:
    """Write ``rows`` (already sorted) as one file ``<name>.<fmt>`` in ``folder``. The file is
    checked to hold one row per ``key`` as written, then moved into place whole, so a reader never
    sees a half-written or wrong export; CSV text is made spreadsheet-safe."""
    staging = folder / f"_staging_{name}_{fmt}"
    shutil.rmtree(staging, ignore_errors=True)
    if fmt == "csv":
        text = [f.name for f in rows.schema.fields if f.dataType.typeName() == "string"]
        rows = rows.withColumns({c: spreadsheet_safe(F.col(c)) for c in text})
        rows.coalesce(1).write.mode("overwrite").options(**CSV_OPTIONS).csv(str(staging))
    else:
        rows.coalesce(1).write.mode("overwrite").parquet(str(staging))
    (part,) = [p for p in staging.iterdir() if p.name.startswith("part-")]
    if key is not None:
        _check_one_row_per_key(spark, part, fmt, key)
    if fmt == "parquet":
        part = _rewritten_parquet(part)
    target = folder / f"{name}.{fmt}"
    os.replace(part, target)
    shutil.rmtree(staging)
    return target


def _check_one_row_per_key(spark: SparkSession, part: Path, fmt: str, key: str) -> None:
    """Read the written file back: each ``key`` once, or ExportError naming the repeated ones
    (the file is not moved into place)."""
    reader = spark.read.options(header=True, multiLine=True, escape='"') if fmt == "csv" else spark.read
    written = reader.format(fmt).load(str(part))
    repeated = written.groupBy(key).count().where("count > 1")
    if names := [r[key] for r in repeated.limit(5).collect()]:
        raise ExportError(
            f"{part.parent.name}: {key} repeats in the written file ({', '.join(map(repr, names))}): "
            "two customers' ids differ only in ways the file cannot keep; the previous export stays"
        )


def _rewritten_parquet(path: Path) -> Path:
    """The same rows rewritten by pyarrow, batch by batch. Spark's Parquet writer lists each
    column's encodings in a hash-set order that changes from one JVM to the next, so its bytes
    differ between identical exports; pyarrow's are stable."""
    source = pq.ParquetFile(path)
    target = path.with_name(path.name + ".stable")
    with pq.ParquetWriter(target, source.schema_arrow, compression="snappy") as writer:
        for batch in source.iter_batches():
            writer.write_batch(batch)
    return target


def _write_manifest(config: Config, result: ExportResult, columns: list[str]) -> None:
    """manifest.json: what the files hold and their SHA-256, for the CRM side to check."""
    conf = config.export
    manifest = {
        "run_id": result.run_id,
        "rows": result.rows,
        "columns": columns,
        "customer_ids": "sha256(salt + customer_id)" if conf.hash_customer_ids else "raw",
        "active_days": conf.active_days,
        "experiment": conf.experiment,
        "holdout_share": conf.holdout_share,
        "variants": dict(sorted(result.variants.items())),
        "files": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in result.files},
    }
    (result.folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def step(spark: SparkSession, config: Config, run: PipelineRun) -> StepReport:
    result = run_export(spark, config, run.run_id)
    metrics = {
        "rows": result.rows,
        "customers_published": result.customers_published,
        "inactive_dropped": result.inactive_dropped,
        **{f"variant.{k}": v for k, v in result.variants.items()},
    }
    variants = ", ".join(f"{k} {v:,}" for k, v in sorted(result.variants.items()))
    lines = [
        f"export: {result.rows:,} customers ({variants}) of {result.customers_published:,} with a list; "
        f"{result.inactive_dropped:,} inactive dropped; recommendations run {result.run_id}",
        *(f"  {path}" for path in result.files),
    ]
    closing = [f"CRM export: {result.rows:,} rows in {result.folder}"]
    return StepReport(metrics, lines, closing)
