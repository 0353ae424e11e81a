"""The pipeline: its steps in order (each a function of (spark, config, run) returning a
report, in ``steps/``), run under one MLflow parent run."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from pyspark.sql import SparkSession

from recsys_spark.config import Config
from recsys_spark.io.session import get_spark
from recsys_spark.io.step_runs import mark_step_complete
from recsys_spark.io.tables import TABLE_LAYERS, local_location, recording_writes, table_name
from recsys_spark.io.views import VIEWS, create_views, view_name
from recsys_spark.progress import stage
from recsys_spark.steps import (
    STEP_NAMES,
    analytics,
    baskets,
    evaluate,
    experiment,
    export,
    ingest,
    score,
    train,
    vectors,
)
from recsys_spark.tracking.runs import PipelineRun, StepReport, pipeline_run, step_run

log = logging.getLogger(__name__)


STEPS: dict[str, Callable[[SparkSession, Config, PipelineRun], StepReport]] = dict(
    zip(
        STEP_NAMES,
        (
            ingest.step_load_sample,
            ingest.step,
            experiment.step,
            baskets.step,
            train.step,
            evaluate.step,
            score.step,
            analytics.step,
            export.step,
            vectors.step,
        ),
        strict=True,
    )
)


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
        lines += run.interrupted
        for step in steps:
            start = time.perf_counter()
            with step_run(step) as metrics, recording_writes() as written:
                report = STEPS[step](spark, config, run)
                metrics.update(report.metrics, seconds=time.perf_counter() - start)
            with stage(step, "mark complete") as st:  # last: readers move on to this step's tables
                mark_step_complete(spark, config, run.run_id, step, written)
                st.counts.update(tables=len(written), views=len(create_views(spark, config, set(written))))
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
