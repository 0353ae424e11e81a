"""The `train` step: silver.interactions -> silver.user_factors, silver.item_factors,
silver.item_neighbours (every enabled model per segment), each replaced in one commit."""

from __future__ import annotations

from pyspark.sql import SparkSession

from recsys_spark.config import Config
from recsys_spark.config.params import train_settings
from recsys_spark.distributed.training import TrainResult, fit_models
from recsys_spark.io.model_tables import MODEL_TABLES
from recsys_spark.io.tables import overwrite_table, run_stamp, table_name
from recsys_spark.progress import stage
from recsys_spark.tracking.runs import PipelineRun, StepReport


def run_train(spark: SparkSession, config: Config, run_id: str) -> TrainResult:
    """Train every enabled model on every segment and publish the three silver model tables."""
    result = TrainResult()
    source = str(table_name(config, "interactions"))
    settings = train_settings(config.models)
    fitted = fit_models(spark, config.models, settings, spark.table(source), source, "train", result)
    with stage("train", "publish factor tables", result.seconds) as st:
        stamp = run_stamp(run_id, "trained_at")
        outputs = dict(
            zip(MODEL_TABLES, (fitted.user_factors, fitted.item_factors, fitted.item_neighbours), strict=True)
        )
        for key, frame in outputs.items():
            overwrite_table(spark, config, table_name(config, key), frame.withColumns(stamp))
            result.rows[key] = spark.table(str(table_name(config, key))).count()
        st.counts.update(result.rows)
    fitted.unpersist()
    return result


def step(spark: SparkSession, config: Config, run: PipelineRun) -> StepReport:
    result = run_train(spark, config, run.run_id)
    metrics = {
        "pairs": result.pairs,
        "segments": result.segments,
        "segments_skipped": len(result.skipped_segments),
        "segments_mllib": len(result.mllib_segments),
        **{f"rows.{k}": v for k, v in result.rows.items()},
    }
    trained = result.segments - len(result.skipped_segments)
    lines = [
        f"train: {result.pairs:,} customer x item pairs in {result.segments} segments: {trained} trained "
        f"({len(result.mllib_segments)} on Spark MLlib ALS), {len(result.skipped_segments)} too small "
        f"(min {config.models.min_segment_users} users, {config.models.min_segment_items} items)",
        "  " + ", ".join(f"{k} {v:,}" for k, v in result.rows.items()),
    ]
    left_out = [m for m in train_settings(config.models).models if m not in result.models]
    if left_out:
        lines.append(f"  left out, their input is missing: {', '.join(left_out)} (see the log)")
    return StepReport(metrics, lines)
