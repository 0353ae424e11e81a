"""The `experiment` step: did the exported lists sell?

Every CRM export split its customers into ``model`` (the published lists) and ``holdout``
(segment popularity) and recorded what each was shown in gold.exported_lists. Later ingests
bring what they bought. For each export and each window of ``experiment.windows_days`` after
its newest purchase, this step compares the arms per segment and over everyone: conversion on
shown items, buying anything, hit rate of the shown list, revenue from shown items and in total
per customer, each with the model arm's uplift, its 95% interval and a verdict in words. Rows go
to gold.experiment_results; the figures are also logged to the MLflow run that made the export.

An export whose every window is complete and measured is settled: later runs leave its rows
as they are, so the step's cost follows the recent exports, not the whole history.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import Config
from recsys_spark.distributed.experiments import ARMS, arm_statistics, customer_outcomes
from recsys_spark.io.comments import sql_string
from recsys_spark.io.step_runs import read_complete
from recsys_spark.io.tables import ensure_table, overwrite_table, run_stamp, table_name
from recsys_spark.kernels import uplift
from recsys_spark.kernels.routing import GLOBAL_SEGMENT
from recsys_spark.progress import stage
from recsys_spark.tracking.runs import PipelineRun, StepReport, log_to_run

log = logging.getLogger(__name__)

COMPARED = [k for k in ARMS if k != "variant"]
HEADLINE = "conversion"  # the metric the step's lines and the report lead with


RESULT_COLUMNS = (
    "export_run_id string, recommendations_run_id string, experiment string, window_days int, "
    "as_of timestamp, observed_days double, complete boolean, segment string, metric string, "
    "model_customers long, holdout_customers long, model_value double, holdout_value double, "
    "uplift double, ci_low double, ci_high double, p_value double, verdict string"
)


@dataclass
class ExperimentResult:
    exports: int = 0  # recorded in gold.exported_lists
    settled: int = 0  # every window complete and measured before: left as they were
    waiting: int = 0  # no purchase after them yet (or no purchase times): nothing to count
    measured: list[str] = field(default_factory=list)  # recommendations runs measured now
    rows: int = 0
    results: pd.DataFrame = field(default_factory=pd.DataFrame)  # the rows written
    skipped: str | None = None  # why nothing could be measured


def run_experiment(spark: SparkSession, config: Config, run_id: str) -> ExperimentResult:
    """Measure every export not yet settled; write and log its results. gold.experiment_results
    exists from the first run on, empty until an export has purchases after it."""
    results_schema = spark.createDataFrame(
        [], f"run_id string, {RESULT_COLUMNS}, measured_at timestamp"
    ).schema
    ensure_table(spark, config, table_name(config, "experiment_results"), results_schema)
    lists_name = table_name(config, "exported_lists")
    if not spark.catalog.tableExists(str(lists_name)):
        return ExperimentResult(skipped=f"no exports recorded yet ({lists_name}): run `recsys export` first")
    interactions = read_complete(spark, config, "interactions")
    newest = interactions.agg(F.max("event_ts")).first()[0]
    if newest is None:
        reason = "silver.interactions has no purchase times (input.columns.event_ts is null)"
        return ExperimentResult(skipped=f"{reason}: purchases cannot be placed in windows after an export")
    shown = spark.table(str(lists_name))
    exports = _exports(shown)
    result = ExperimentResult(exports=len(exports))
    timed = exports[exports.as_of.notna() & (exports.as_of < pd.Timestamp(newest))]
    for run in exports.recommendations_run_id[exports.as_of.isna()]:
        log.info("experiment: export of run %s was made from data without purchase times: not measured", run)
    pending = _unsettled(spark, config, timed)
    result.waiting, result.settled = len(exports) - len(timed), len(timed) - len(pending)
    result.measured = list(pending.recommendations_run_id)
    if pending.empty:
        return result
    with stage("experiment", "outcomes") as st:
        has_revenue = interactions.where(F.col("revenue").isNotNull()).limit(1).count() > 0
        metrics = [m for m in uplift.OUTCOMES if has_revenue or m not in uplift.REVENUE_OUTCOMES]
        if not has_revenue:
            log.info("experiment: no prices in silver.interactions: revenue outcomes left out")
        followed = shown.where(F.col("recommendations_run_id").isin(result.measured))
        outcomes = customer_outcomes(followed, interactions, config.experiment.windows_days)
        stats = arm_statistics(outcomes, metrics).toPandas()
        st.counts.update(exports=len(pending), arms=len(stats))
    with stage("experiment", f"write {table_name(config, 'experiment_results')}") as st:
        rows = _results(stats, pending, metrics, newest)
        result.results = rows
        result.rows = _write(spark, config, run_id, rows, result.measured)
        st.counts.update(rows=result.rows)
    _log_to_export_runs(rows)
    return result


def _exports(shown: DataFrame) -> pd.DataFrame:
    """One row per recorded export: recommendations_run_id, export_run_id, experiment, as_of."""
    return (
        shown.groupBy("recommendations_run_id")
        .agg(
            F.max_by("run_id", "exported_at").alias("export_run_id"),
            F.max_by("experiment", "exported_at").alias("experiment"),
            F.max("as_of").alias("as_of"),
        )
        .toPandas()
    )


def _unsettled(spark: SparkSession, config: Config, timed: pd.DataFrame) -> pd.DataFrame:
    """The exports of ``timed`` not yet measured complete at every window."""
    if timed.empty:
        return timed
    name = table_name(config, "experiment_results")
    windows = sorted(config.experiment.windows_days)
    done = (
        spark.table(str(name))
        .where(F.col("complete") & F.col("window_days").isin(windows))
        .groupBy("recommendations_run_id")
        .agg(F.count_distinct("window_days").alias("windows"))
        .where(F.col("windows") == len(windows))
    )
    settled = {r[0] for r in done.select("recommendations_run_id").collect()}
    return timed[~timed.recommendations_run_id.isin(settled)]


def _results(
    stats: pd.DataFrame, exports: pd.DataFrame, metrics: list[str], newest: dt.datetime
) -> pd.DataFrame:
    """gold.experiment_results rows (without the run stamp) from the arms' statistics."""
    compared = uplift.compared(uplift.pooled(stats, COMPARED, GLOBAL_SEGMENT), COMPARED, metrics)
    rows = compared.merge(exports, on="recommendations_run_id")
    seen = (pd.Timestamp(newest) - pd.to_datetime(rows.as_of)).dt.total_seconds() / 86400
    rows["observed_days"] = np.minimum(seen.clip(lower=0), rows.window_days.astype(float))
    rows["complete"] = rows.observed_days >= rows.window_days
    rows["verdict"] = [
        uplift.verdict(uplift.OUTCOMES[r.metric], int(r.window_days), _uplift_of(r), r.observed_days)
        for r in rows.itertuples()
    ]
    return rows


def _uplift_of(row: tuple) -> uplift.Uplift:
    values = (row.model_value, row.holdout_value, row.uplift, row.ci_low, row.ci_high, row.p_value)
    return uplift.Uplift(*(float(v) for v in values))


def _write(spark: SparkSession, config: Config, run_id: str, rows: pd.DataFrame, measured: list[str]) -> int:
    columns = [c.split()[0] for c in RESULT_COLUMNS.split(", ")]
    records = [tuple(map(_plain, row)) for row in rows[columns].astype(object).itertuples(index=False)]
    frame = spark.createDataFrame(records, RESULT_COLUMNS)
    stamp = run_stamp(run_id, "measured_at")
    frame = frame.select(stamp["run_id"].alias("run_id"), *columns, stamp["measured_at"].alias("measured_at"))
    runs = ", ".join(sql_string(r) for r in measured)
    name = table_name(config, "experiment_results")
    return overwrite_table(spark, config, name, frame, f"recommendations_run_id IN ({runs})")


def _plain(value: object) -> object:
    """A pandas or numpy value as the Python value Spark takes; NaN as null."""
    if _missing(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value.item() if isinstance(value, np.generic) else value


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _log_to_export_runs(rows: pd.DataFrame) -> None:
    """Every export's pooled figures, logged to the MLflow run that made the export."""
    everyone = rows[rows.segment == GLOBAL_SEGMENT]
    for export_run, part in everyone.groupby("export_run_id"):
        metrics = {}
        for r in part.itertuples():
            for figure in ("model_value", "holdout_value", "uplift", "ci_low", "ci_high"):
                value = getattr(r, figure)
                if not _missing(value):
                    metrics[f"experiment.{r.window_days}d.{r.metric}.{figure}"] = float(value)
        log_to_run(str(export_run), metrics)


def step(spark: SparkSession, config: Config, run: PipelineRun) -> StepReport:
    result = run_experiment(spark, config, run.run_id)
    if result.skipped:
        log.info("experiment: nothing measured: %s", result.skipped)
        return StepReport({"exports_measured": 0}, [f"experiment: nothing measured: {result.skipped}"])
    head = (
        f"experiment: {len(result.measured)} export(s) measured, {result.settled} settled earlier "
        f"(left as they were), {result.waiting} without purchases after them yet; {result.rows:,} rows"
    )
    lines, metrics = [head], {"exports_measured": len(result.measured), "rows": result.rows}
    if result.measured:
        latest = result.results.sort_values("as_of").recommendations_run_id.iloc[-1]
        rows = result.results
        chosen = rows[(rows.recommendations_run_id == latest) & (rows.segment == GLOBAL_SEGMENT)]
        for r in chosen[chosen.metric == HEADLINE].sort_values("window_days").itertuples():
            lines.append(f"  export of {latest}: {r.verdict}")
            if not _missing(r.uplift):
                metrics[f"{r.window_days}d.{HEADLINE}.uplift"] = float(r.uplift)
    return StepReport(metrics, lines)
