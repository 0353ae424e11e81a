"""The `train` step: silver.interactions -> silver.user_factors, silver.item_factors,
silver.item_neighbours (every enabled model per segment), each replaced in one commit.

With ``models.tuning.trials`` above 0 each segment's models are first tuned (gold.tuning_trials,
one MLflow nested run per trial) and trained with the chosen values; silver.model_settings
records what every segment's models were trained with, which evaluate reads and checks.
"""

from __future__ import annotations

import dataclasses

import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from recsys_spark.config import Config
from recsys_spark.config.params import train_settings
from recsys_spark.distributed.training import TrainResult, TrainSettings, fit_models, settings_rows
from recsys_spark.distributed.tuning import TRIALS_SCHEMA, search_hybrid, search_settings, validation_carve
from recsys_spark.io.model_tables import MODEL_TABLES
from recsys_spark.io.tables import overwrite_table, run_stamp, table_name
from recsys_spark.kernels.routing import GLOBAL_SEGMENT
from recsys_spark.kernels.tuning import best_trials, chosen_values
from recsys_spark.progress import stage
from recsys_spark.tracking.runs import PipelineRun, StepReport, log_trials

SETTINGS_SCHEMA = "segment string, model string, settings string, tuned string"


def run_train(spark: SparkSession, config: Config, run_id: str) -> TrainResult:
    """Tune (when conf asks), train every enabled model on every segment and publish the silver
    model tables."""
    result = TrainResult()
    source = str(table_name(config, "interactions"))
    interactions = spark.table(source)
    settings = train_settings(config.models, _tune(spark, config, run_id, interactions, result))
    fitted = fit_models(spark, config.models, settings, interactions, source, "train", result)
    with stage("train", "publish factor tables", result.seconds) as st:
        stamp = run_stamp(run_id, "trained_at")
        outputs = dict(
            zip(MODEL_TABLES, (fitted.user_factors, fitted.item_factors, fitted.item_neighbours), strict=True)
        )
        outputs["model_settings"] = model_settings_rows(spark, settings, result)
        for key, frame in outputs.items():
            result.rows[key] = overwrite_table(
                spark, config, table_name(config, key), frame.withColumns(stamp)
            )
        st.counts.update(result.rows)
    fitted.unpersist()
    return result


def model_settings_rows(spark: SparkSession, settings: TrainSettings, result: TrainResult) -> DataFrame:
    """silver.model_settings rows: the settings of the models ``result`` says were trained."""
    trained = dataclasses.replace(settings, models=tuple(result.models))
    return spark.createDataFrame(settings_rows(trained, result.trained_segments), SETTINGS_SCHEMA)


def _tune(
    spark: SparkSession, config: Config, run_id: str, interactions: DataFrame, result: TrainResult
) -> dict[str, dict[str, dict]]:
    """The values tuning chose per segment and model ({} when tuning is off); every trial goes
    to gold.tuning_trials and to MLflow as a nested run."""
    conf = config.models.tuning
    if conf.trials <= 0 or not set(conf.models) & set(config.models.enabled):
        return {}
    with stage("train", "tune", result.seconds) as st:
        carved = validation_carve(config, interactions)
        with stage("tune", "trials per segment") as trial_stage:
            trials = search_settings(spark, config, carved, st.counts)
            trial_stage.counts.update(trials=len(trials))
        if "hybrid" in conf.models and "hybrid" in config.models.enabled:
            chosen = chosen_values(best_trials(trials))
            with stage("tune", "hybrid weights") as hybrid_stage:
                blends = search_hybrid(spark, config, carved, chosen, st.counts)
                hybrid_stage.counts.update(trials=len(blends))
            trials = pd.concat([trials, blends], ignore_index=True)
        best = best_trials(trials)
        trials["chosen"] = trials.index.isin(best.index)
        schema = f"{TRIALS_SCHEMA}, chosen boolean"
        rows = spark.createDataFrame(trials, schema).withColumns(run_stamp(run_id, "tuned_at"))
        overwrite_table(spark, config, table_name(config, "tuning_trials"), rows, f"run_id = '{run_id}'")
        log_trials(trials)
        result.tuned_segments = sorted(set(best[best.model != "hybrid"].segment))
    chosen = chosen_values(best)
    result.tuned_blend = chosen.get(GLOBAL_SEGMENT, {}).get("hybrid")
    return chosen


def step(spark: SparkSession, config: Config, run: PipelineRun) -> StepReport:
    result = run_train(spark, config, run.run_id)
    metrics = {
        "pairs": result.pairs,
        "segments": result.segments,
        "segments_skipped": len(result.skipped_segments),
        "segments_mllib": len(result.mllib_segments),
        "segments_tuned": len(result.tuned_segments),
        **{f"rows.{k}": v for k, v in result.rows.items()},
    }
    trained = result.segments - len(result.skipped_segments)
    lines = [
        f"train: {result.pairs:,} customer x item pairs in {result.segments} segments: {trained} trained "
        f"({len(result.mllib_segments)} on Spark MLlib ALS), {len(result.skipped_segments)} too small "
        f"(min {config.models.min_segment_users} users, {config.models.min_segment_items} items)",
        "  " + ", ".join(f"{k} {v:,}" for k, v in result.rows.items()),
    ]
    if config.models.tuning.trials > 0:
        lines.append(
            f"  tuned: {len(result.tuned_segments)} of {trained} segments "
            f"({', '.join(result.tuned_segments) or 'none'}), the rest keep conf's values "
            f"(fewer than {config.models.tuning.min_validation_customers} validation customers, or "
            "trained on MLlib); the choices are in gold.tuning_trials"
        )
    if result.tuned_blend:
        weights = ", ".join(f"{source} {weight:g}" for source, weight in sorted(result.tuned_blend.items()))
        lines.append(f"  hybrid weights chosen by tuning (every segment): {weights}")
    left_out = [m for m in train_settings(config.models).models if m not in result.models]
    if left_out:
        lines.append(f"  left out, their input is missing: {', '.join(left_out)} (see the log)")
    return StepReport(metrics, lines)
