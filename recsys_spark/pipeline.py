"""The pipeline's steps in order; each is a function of (spark, config, run) returning a report."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pyspark.sql import SparkSession

from recsys_spark.analytics import run_analytics
from recsys_spark.baskets import run_baskets
from recsys_spark.config import Config, on_databricks
from recsys_spark.evaluate import BASELINES, run_evaluate
from recsys_spark.export import run_export
from recsys_spark.ingest import ingest, load_sample
from recsys_spark.models import model_tables, run_score, run_train, serving_settings
from recsys_spark.report import build_report, write_report
from recsys_spark.session import get_spark
from recsys_spark.tables import TABLE_LAYERS, local_location, table_name
from recsys_spark.tracking import PipelineRun, log_champion, log_evaluation, pipeline_run, step_run
from recsys_spark.views import VIEWS, view_name

log = logging.getLogger(__name__)


@dataclass
class StepReport:
    """What a step did: metrics for MLflow and lines for the person at the terminal."""

    metrics: dict[str, float] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    closing: list[str] = field(default_factory=list)  # printed after every step has run


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


def step_ingest(spark: SparkSession, config: Config, run: PipelineRun) -> StepReport:
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


def step_baskets(spark: SparkSession, config: Config, run: PipelineRun) -> StepReport:
    result = run_baskets(spark, config, run.run_id)
    metrics = {k: v for k, v in vars(result).items() if isinstance(v, int)}
    lines = [
        f"baskets: {result.baskets:,} baskets = {result.mined_baskets:,} mined + {result.oversized:,} "
        f"oversized (> {config.baskets.max_basket_items} items) + {result.skipped_baskets:,} in "
        f"{len(result.skipped_segments)} skipped small segments",
        f"  {result.mined_segments} segments mined at min_support {config.baskets.min_support}: "
        f"{result.itemsets:,} frequent itemsets, {result.rules:,} rules, {result.addons:,} add-on rows, "
        f"{result.substitutes:,} substitute pairs",
    ]
    return StepReport(metrics, lines)


def step_train(spark: SparkSession, config: Config, run: PipelineRun) -> StepReport:
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
    return StepReport(metrics, lines)


def step_evaluate(spark: SparkSession, config: Config, run: PipelineRun) -> StepReport:
    result = run_evaluate(spark, config, run.run_id)
    conf = config.evaluation
    decision = result.decision
    report = build_report(spark, config, run.run_id)
    path = write_report(report, config.work_path / "reports") if not on_databricks() else None
    log_evaluation(report.figures, report.html, decision.model, decision.reason)
    version = None
    if decision.model not in BASELINES:
        tables = model_tables(spark, config, decision.model)
        version = log_champion(config, tables, serving_settings(config, decision.model))
    report.close()
    overall = result.overall
    metrics: dict[str, float] = {
        "train_lines": result.train_lines,
        "test_customers": result.test_customers,
        "test_pairs": result.test_pairs,
        "cold_start_customers": result.cold_start_customers,
        "cold_start_item_pairs": result.cold_start_pairs,
    }
    table_lines = []
    for row in overall[overall.k == conf.primary_k].itertuples():
        names = ("ndcg", "precision", "recall", "map", "hit_rate", "mrr", "coverage", "novelty", "diversity")
        for name in names:
            value = float(getattr(row, name))
            if not math.isnan(value):  # diversity needs item categories
                # MLflow metric names allow no "+": variant hybrid+mmr is logged as hybrid_mmr.
                metrics[f"{row.model.replace('+', '_')}.{name}_at_{row.k}"] = value
        table_lines.append(
            f"    {row.model:<18} ndcg {row.ndcg:.4f}  precision {row.precision:.4f}  recall {row.recall:.4f}"
            f"  hit rate {row.hit_rate:.3f}  coverage {row.coverage:.3f}  diversity {row.diversity:.3f}"
        )
    cutoff = f" at {result.cutoff:%Y-%m-%d %H:%M}" if result.cutoff else ""
    lines = [
        f"evaluate: {conf.split} split{cutoff}: {result.train_lines:,} train lines; "
        f"{result.test_customers:,} test customers ({result.cold_start_customers:,} cold start), "
        f"{result.test_pairs:,} new customer x item pairs to find ({result.cold_start_pairs:,} of items "
        f"new to their segment, which no model can recommend); at k={conf.primary_k}:",
        *table_lines,
        f"  published: {decision.model} ({decision.reason})",
        f"  registered: {config.mlflow.registered_model} version {version} (alias champion)"
        if version
        else "  registered: nothing (a baseline is published)",
        f"  report: {path}" if path else "  report: in the MLflow run (report/evaluation.html)",
    ]
    return StepReport(metrics, lines)


def step_score(spark: SparkSession, config: Config, run: PipelineRun) -> StepReport:
    result = run_score(spark, config, run.run_id)
    metrics = {
        "customers": result.customers,
        "published_customers": result.published_customers,
        "popularity_fallback_customers": result.fallback_customers,
        **{f"rows.{k}": v for k, v in result.rows.items()},
    }
    lines = [
        f"score: {result.customers:,} customers (per segment) = {result.published_customers:,} by "
        f"{result.model} + {result.fallback_customers:,} overall popularity (untrained segments) "
        f"+ {result.customers - result.published_customers - result.fallback_customers:,} with nothing "
        f"left to recommend; top {config.models.top_n} each",
        "  " + ", ".join(f"{k} {v:,}" for k, v in result.rows.items()),
    ]
    return StepReport(metrics, lines)


def step_analytics(spark: SparkSession, config: Config, run: PipelineRun) -> StepReport:
    result = run_analytics(spark, config, run.run_id)
    metrics: dict[str, float] = {f"rows.{k}": v for k, v in result.rows.items()}
    metrics["views"] = len(result.views)
    lines = [
        "analytics: " + ", ".join(f"{k} {v:,}" for k, v in result.rows.items()),
        "  check: items and customers = the distinct item and customer ids in silver",
        f"  cross-sell: {len(result.cross_sell_items)} target items scored with {result.cross_sell_model}"
        if result.cross_sell_model
        else "  cross-sell: not written",
        *(f"  {output} not written: {why}" for output, why in result.skipped.items()),
        f"  views: {', '.join(result.views) or 'none'}",
    ]
    return StepReport(metrics, lines)


def step_export(spark: SparkSession, config: Config, run: PipelineRun) -> StepReport:
    result = run_export(spark, config)
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


STEPS: dict[str, Callable[[SparkSession, Config, PipelineRun], StepReport]] = {
    "load-sample": step_load_sample,
    "ingest": step_ingest,
    "baskets": step_baskets,
    "train": step_train,
    "evaluate": step_evaluate,
    "score": step_score,
    "analytics": step_analytics,
    "export": step_export,
}


def run_order(config: Config) -> list[str]:
    """The steps `recsys run` chains, in order."""
    return [s for s in STEPS if s != "load-sample" or config.load_sample]


def run_steps(config: Config, steps: Sequence[str], spark: SparkSession | None = None) -> list[str]:
    """Run ``steps`` in order under one MLflow parent run; return the summary lines."""
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise ValueError(f"unknown step(s) {', '.join(unknown)}; known: {', '.join(STEPS)}")
    spark = spark or get_spark(config)
    lines: list[str] = []
    closing: list[str] = []
    with pipeline_run(config, steps) as run:
        for step in steps:
            start = time.perf_counter()
            with step_run(step) as metrics:
                report = STEPS[step](spark, config, run)
                metrics.update(report.metrics, seconds=time.perf_counter() - start)
            seconds = time.perf_counter() - start
            log.info("step %s done in %.1fs", step, seconds)
            lines += [f"{report.lines[0]}  [{seconds:.1f}s]", *report.lines[1:]] if report.lines else []
            closing += report.closing
        lines += _where_things_are(spark, config, run)
    return lines + closing


def _where_things_are(spark: SparkSession, config: Config, run: PipelineRun) -> list[str]:
    lines = [f"MLflow run {run.run_id} (experiment {run.experiment_id}) at {run.tracking_uri}"]
    for key in TABLE_LAYERS:
        name = table_name(config, key)
        if spark.catalog.tableExists(str(name)):
            where = "" if name.catalog else f" at {local_location(config, name)}"
            lines.append(f"table {name}{where}")
    views = [view_name(config, view) for view in VIEWS]
    lines += [f"view {name}" for name in views if spark.catalog.tableExists(str(name))]
    return lines
