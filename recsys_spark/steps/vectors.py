"""export-vectors step: the factor model's item and customer vectors to a vector store.

The vectors are the published model's when it is a factor model (ALS, BPR, content), else ALS's
(``serving.settings.vector_model``), with the fused ALS + content item vector beside them where
trained, and each item's category, description and exclude-list flag. ``vectors.store`` picks
where they go: LanceDB (a folder), PostgreSQL + pgvector, or gold.item_vectors and
gold.customer_vectors with change data feed for a Databricks Vector Search delta-sync index
(docs/serving.md gives the index definition). Every store is replaced atomically for readers
and stamped with the training run; exporting the same run again changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import Config
from recsys_spark.io.model_tables import blocked_items, published_model
from recsys_spark.io.session import read_secret
from recsys_spark.io.step_runs import complete_versions, read_complete
from recsys_spark.io.tables import ensure_table, overwrite_table, table_name, utc_now
from recsys_spark.io.vector_stores import write_lancedb, write_pgvector
from recsys_spark.kernels.fusion import FUSED_MODEL
from recsys_spark.progress import stage
from recsys_spark.serving.settings import vector_model
from recsys_spark.tracking.runs import PipelineRun, StepReport

log = logging.getLogger(__name__)

STEP = "export-vectors"


@dataclass
class VectorsResult:
    store: str
    model: str | None  # None: no factor model trained, nothing exported
    items: int = 0
    customers: int = 0
    written: bool = False  # False: the store held this training run's vectors already
    run_id: str | None = None  # the training run the vectors come from
    where: str = ""


def item_rows(spark: SparkSession, config: Config, versions: dict[str, int], model: str) -> DataFrame:
    """segment × item: vector_id, the model's vector, the fused one, category, description,
    blocked, run_id (the training's)."""
    factors = read_complete(spark, config, "item_factors", versions)
    keys = ["segment", "item_id"]
    own = factors.where(F.col("model") == model).select(*keys, F.col("factors").alias("vector"), "run_id")
    fused = factors.where(F.col("model") == FUSED_MODEL).select(*keys, F.col("factors").alias("fused_vector"))
    rows = own.join(fused, keys, "left")
    if spark.catalog.tableExists(str(table_name(config, "items"))):
        attributes = read_complete(spark, config, "items", versions).select(
            "item_id", "category", "description"
        )
        rows = rows.join(attributes, "item_id", "left")
    else:
        log.info(
            "%s: no gold.items yet (run `recsys analytics`): items exported without category or description",
            STEP,
        )
        rows = rows.withColumns(
            {"category": F.lit(None).cast("string"), "description": F.lit(None).cast("string")}
        )
    blocked = sorted(blocked_items(spark, config))
    return rows.select(
        F.to_json(F.array(*keys)).alias("vector_id"),
        *keys,
        F.lit(model).alias("model"),
        "vector",
        "fused_vector",
        "category",
        "description",
        F.col("item_id").isin(blocked).alias("blocked"),
        "run_id",
    )


def customer_rows(spark: SparkSession, config: Config, versions: dict[str, int], model: str) -> DataFrame:
    factors = read_complete(spark, config, "user_factors", versions).where(F.col("model") == model)
    keys = ["segment", "customer_id"]
    return factors.select(
        F.to_json(F.array(*keys)).alias("vector_id"),
        *keys,
        "model",
        F.col("factors").alias("vector"),
        "run_id",
    )


def padded(rows: DataFrame, *columns: str) -> DataFrame:
    """Each of ``columns``' vectors zero-padded to that column's longest: a vector index takes
    one length, and tuning may give segments different factor counts. Zeros change no dot
    product or cosine, and a search never crosses segments (their spaces differ)."""
    longest = rows.agg(*(F.max(F.size(c)).alias(c) for c in columns)).first()
    for column in columns:
        if longest[column] is None or longest[column] < 0:  # no vector at all
            continue
        zeros = F.array_repeat(F.lit(0.0).cast("float"), F.lit(longest[column]) - F.size(column))
        rows = rows.withColumn(column, F.when(F.col(column).isNotNull(), F.concat(F.col(column), zeros)))
    return rows


def run_export_vectors(spark: SparkSession, config: Config) -> VectorsResult:
    store = config.vectors.store
    versions = complete_versions(spark, config)
    published, _ = published_model(spark, config)
    trained = read_complete(spark, config, "item_factors", versions).select("model").distinct().collect()
    model = vector_model(published, {r.model for r in trained})
    if model is None:
        log.info("%s: no factor model trained (als, bpr or content): nothing to export", STEP)
        return VectorsResult(store, None)
    result = VectorsResult(store, model)
    frames = {
        "item_vectors": padded(item_rows(spark, config, versions, model), "vector", "fused_vector"),
        "customer_vectors": padded(customer_rows(spark, config, versions, model), "vector"),
    }
    for key, rows in frames.items():
        with stage(STEP, f"write {key} ({store})") as current:
            count, written, result.run_id = _write(spark, config, key, rows)
            current.counts.update(rows=count, written=int(written))
        result.written |= written
        if key == "item_vectors":
            result.items = count
        else:
            result.customers = count
    result.where = _where(config)
    return result


def _write(spark: SparkSession, config: Config, key: str, rows: DataFrame) -> tuple[int, bool, str | None]:
    """(rows, whether the store changed, the training run) for table ``key``."""
    stamped = rows.withColumn("exported_at", F.lit(utc_now()).cast("timestamp"))
    if config.vectors.store == "delta":
        return _write_delta(spark, config, key, stamped)
    table = pa.Table.from_pandas(stamped.toPandas(), preserve_index=False)
    run_id = str(table["run_id"][0]) if table.num_rows else None
    name = getattr(config.tables, key)
    if config.vectors.store == "lancedb":
        written = write_lancedb(str(_lancedb_path(config)), name, table)
    else:
        conf = config.vectors.postgres
        password = read_secret(spark, conf.password_env, conf.password_secret_scope, conf.password_secret_key)
        written = write_pgvector(conf, name, table, password)
    return table.num_rows, written, run_id


def _write_delta(
    spark: SparkSession, config: Config, key: str, rows: DataFrame
) -> tuple[int, bool, str | None]:
    name = table_name(config, key)
    incoming = rows.select("run_id").first()
    run_id = incoming.run_id if incoming else None
    if spark.catalog.tableExists(str(name)):
        held = spark.table(str(name)).select("run_id").first()
        if held is not None and held.run_id == run_id:
            return spark.table(str(name)).count(), False, run_id
    else:  # change data feed from the first write on: the index syncs changes only
        ensure_table(spark, config, name, rows.schema, properties={"delta.enableChangeDataFeed": "true"})
    count = overwrite_table(spark, config, name, rows)
    return count, True, run_id


def _lancedb_path(config: Config) -> Path:
    # A folder per gold schema, as the tables have one: configs side by side never share it.
    default = config.work_path / "vectors" / config.schemas.gold
    return config.resolve_path(config.vectors.path) if config.vectors.path else default


def _where(config: Config) -> str:
    store = config.vectors.store
    if store == "lancedb":
        return f"LanceDB at {_lancedb_path(config)}"
    if store == "pgvector":
        conf = config.vectors.postgres
        return f"PostgreSQL {conf.user}@{conf.host}:{conf.port}/{conf.database}, schema {conf.schema}"
    return f"{table_name(config, 'item_vectors')} and {table_name(config, 'customer_vectors')}"


def step(spark: SparkSession, config: Config, run: PipelineRun) -> StepReport:
    result = run_export_vectors(spark, config)
    if result.model is None:
        return StepReport({}, [f"{STEP}: no factor model trained, nothing exported"])
    change = "written" if result.written else "unchanged (this training run's vectors are there already)"
    lines = [
        f"{STEP}: {result.items:,} item and {result.customers:,} customer vectors of {result.model} "
        f"(training run {result.run_id}) to {result.where}: {change}"
    ]
    return StepReport({"item_vectors": result.items, "customer_vectors": result.customers}, lines)
