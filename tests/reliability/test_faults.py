"""Faults and re-runs: idempotent steps, atomic publishing under injected failures, concurrent
runs, and the count invariant each step logs."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import mlflow
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

import recsys_spark.distributed.lists as lists
import recsys_spark.steps.baskets as baskets_step
from recsys_spark.io.tables import ConcurrentRunError, table_name
from recsys_spark.pipeline import run_order, run_steps
from recsys_spark.steps.baskets import run_baskets
from recsys_spark.steps.score import run_score
from recsys_spark.tracking.runs import tracking_uri
from tests.conftest import without_comments
from tests.reliability.conftest import PipelineRuns
from tests.reliability.tables import content, run_ids

N = r"([\d,]+)"
INGEST_LINE = rf"check: {N} read = {N} silver \+ {N} quarantine \+ {N}"
BASKETS_LINE = rf"baskets: {N} baskets = {N} mined \+ {N} oversized.*?\+ {N} in"
TRAIN_LINE = rf"in {N} segments: {N} trained.*?, {N} too small"
SCORE_LINE = (
    rf"score: {N} customers \(per segment\) = {N} by their route's model "
    rf"\+ {N} overall popularity.*?\+ {N} with"
)
ROUTES_LINE = r"by route: ([^;]*);"
EXPORT_LINE = rf"export: {N} customers \(.*?\) of {N} with a list; {N} inactive"
BASKET_TABLES = ("frequent_itemsets", "association_rules", "frequently_bought_together", "substitutes")


def test_every_step_rerun_gives_the_same_tables(spark: SparkSession, runs: PipelineRuns) -> None:
    """The same rows, and the same values up to the last bits of averages of doubles (Spark adds
    partial sums in the order its tasks finish)."""
    assert len(runs.snapshot) >= 20
    for key, before in runs.snapshot.items():
        after = content(spark, runs.config, key)
        assert_approx_df_equality(
            without_comments(after),
            without_comments(before),
            precision=1e-9,
            ignore_row_order=True,
            ignore_nullable=True,
            ignore_column_order=True,
        )


def test_no_duplicate_rows_after_reruns(spark: SparkSession, runs: PipelineRuns) -> None:
    keys = {
        "interactions": ["line_id"],
        "interactions_quarantine": ["line_id"],
        "recommendations": ["segment", "customer_id", "rank"],
        "association_rules": ["segment", "antecedent", "consequent"],
        "user_factors": ["segment", "customer_id", "model"],
        "customers": ["customer_id"],
        "items": ["item_id"],
    }
    for key, columns in keys.items():
        frame = spark.table(str(table_name(runs.config, key)))
        assert frame.count() == frame.select(*columns).distinct().count(), key


def test_each_step_logs_a_count_invariant_that_holds(runs: PipelineRuns) -> None:
    for lines in (runs.first, runs.second):
        text = "\n".join(lines)
        read, silver, quarantine, duplicates = _numbers(INGEST_LINE, text)
        assert read == silver + quarantine + duplicates
        total, mined, oversized, skipped = _numbers(BASKETS_LINE, text)
        assert total == mined + oversized + skipped
        segments, trained, small = _numbers(TRAIN_LINE, text)
        assert segments == trained + small
        customers, published, fallback, nothing = _numbers(SCORE_LINE, text)
        assert customers == published + fallback + nothing
        routes = re.search(ROUTES_LINE, text).group(1)  # type: ignore[union-attr]
        assert customers == sum(int(n.replace(",", "")) for n in re.findall(rf"{N} \w+ \(", routes))
        exported, listed, inactive = _numbers(EXPORT_LINE, text)
        assert listed == exported + inactive
    # The second run found every line already ingested.
    assert "valid (silver)" in "\n".join(runs.second) and "new 0" in "\n".join(runs.second)


def test_each_run_is_one_mlflow_run_with_a_run_per_step(runs: PipelineRuns) -> None:
    """`recsys run` twice on the same input: two parent runs, each with a child run per step;
    the second ingest inserted nothing."""
    order = run_order(runs.config)
    client = mlflow.MlflowClient(tracking_uri(runs.config))
    experiment = client.get_experiment_by_name(runs.config.mlflow.experiment)
    tracked = client.search_runs([experiment.experiment_id], order_by=["start_time ASC"])
    # Later tests here run single steps under their own runs: the fixture's two come first.
    first, second = [r for r in tracked if r.data.tags.get("recsys.steps") == ",".join(order)][:2]
    for parent in (first, second):
        children = [r for r in tracked if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert sorted(r.data.tags["recsys.step"] for r in children) == sorted(order)
        ingest = next(r for r in children if r.data.tags["recsys.step"] == "ingest")
        inserted = ingest.data.metrics["silver_inserted"]
        assert inserted > 0 if parent is first else inserted == 0


def _numbers(pattern: str, text: str) -> list[int]:
    match = re.search(pattern, text, flags=re.S)
    assert match, f"no line matches {pattern!r}"
    return [int(g.replace(",", "")) for g in match.groups()]


def failing_after(frame: DataFrame, rows: int, column: str = "score") -> DataFrame:
    """``frame`` whose computation fails once it gets past its first ``rows`` rows (in column
    ``column``, which the write keeps): an error in the middle of a step, after part of the
    output exists."""
    numbered = frame.withColumn("_n", F.monotonically_increasing_id())
    boom = F.raise_error(F.lit("injected failure in the middle of the step"))
    failing = F.when(F.col("_n") < rows, F.col(column)).otherwise(boom)
    return numbered.withColumn(column, failing).drop("_n")


def test_failure_in_the_middle_of_scoring_leaves_the_previous_run_readable(
    spark: SparkSession, runs: PipelineRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = runs.config
    name = str(table_name(config, "recommendations"))
    before_ids = run_ids(spark, config, "recommendations")
    before = content(spark, config, "recommendations").toPandas()
    assert len(before_ids) == 1

    real_made_lists = lists.made_lists

    def broken(*args: Any, **kwargs: Any) -> DataFrame:
        return failing_after(real_made_lists(*args, **kwargs), 50)

    monkeypatch.setattr(lists, "made_lists", broken)
    with pytest.raises(Exception, match="injected failure"):
        run_score(spark, config, "run_broken")
    # Readers still see the previous run, whole.
    assert run_ids(spark, config, "recommendations") == before_ids
    assert len(spark.table(name).toPandas()) == len(before)

    monkeypatch.setattr(lists, "made_lists", real_made_lists)
    run_score(spark, config, "run_after_failure")
    assert run_ids(spark, config, "recommendations") == {"run_after_failure"}
    assert_df_equality(
        content(spark, config, "recommendations"),
        spark.createDataFrame(before, content(spark, config, "recommendations").schema),
        ignore_row_order=True,
        ignore_nullable=True,
        ignore_metadata=True,
    )


def test_failure_between_published_tables_keeps_each_table_whole(
    spark: SparkSession, runs: PipelineRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = runs.config
    real_overwrite = baskets_step.overwrite_table
    written: list[str] = []

    def third_write_fails(spark_: SparkSession, config_: Any, name: Any, frame: DataFrame, **kw: Any) -> int:
        if len(written) == 2:
            frame = failing_after(frame, 5, column="segment")
        rows = real_overwrite(spark_, config_, name, frame, **kw)
        written.append(str(name))
        return rows

    monkeypatch.setattr(baskets_step, "overwrite_table", third_write_fails)
    with pytest.raises(Exception, match="injected failure"):
        run_baskets(spark, config, "run_half")
    # silver.baskets_quarantine and gold.frequent_itemsets were written; association_rules failed.
    assert written == [str(table_name(config, k)) for k in ("baskets_quarantine", BASKET_TABLES[0])]
    # The first table has the new run, the others still the old one: each table is one run.
    # (substitutes may be empty on the sample: no run at all.)
    for key in BASKET_TABLES:
        assert len(run_ids(spark, config, key)) <= 1, key
    assert run_ids(spark, config, BASKET_TABLES[0]) == {"run_half"}
    assert not any("run_half" in run_ids(spark, config, key) for key in BASKET_TABLES[1:])
    assert run_ids(spark, config, BASKET_TABLES[1])  # the previous run's rules, still there

    monkeypatch.setattr(baskets_step, "overwrite_table", real_overwrite)
    run_baskets(spark, config, "run_whole")
    assert all(run_ids(spark, config, key) <= {"run_whole"} for key in BASKET_TABLES)
    assert run_ids(spark, config, BASKET_TABLES[1]) == {"run_whole"}


def test_two_runs_at_once_serialise_or_fail_clearly(spark: SparkSession, runs: PipelineRuns) -> None:
    config = runs.config

    def run(_: int) -> str:
        try:
            run_steps(config, ["score"], spark)
            return "ok"
        except ConcurrentRunError as exc:
            assert "was changed by another run" in str(exc) and "Run this step again" in str(exc)
            return "conflict"

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(run, range(2)))
    print("concurrent score runs:", outcomes)  # shown with -s: which of the two cases happened
    assert "ok" in outcomes
    for key in ("recommendations", "similar_items", "item_audience", "lookalikes"):
        assert len(run_ids(spark, config, key)) == 1, f"{key} mixes runs"
    recommendations = spark.table(str(table_name(config, "recommendations")))
    keys = recommendations.select("segment", "customer_id", "rank")
    assert recommendations.count() == keys.distinct().count()
    # Whatever the interleaving, the published content is the same as a lone run's.
    assert_df_equality(
        content(spark, config, "recommendations"),
        runs.snapshot["recommendations"],
        ignore_row_order=True,
        ignore_nullable=True,
        ignore_column_order=True,
        ignore_metadata=True,
    )
