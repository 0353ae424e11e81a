"""Crashes: a pipeline process killed with SIGKILL (``RECSYS_KILL_AT``, progress.py) between two
table commits leaves every table readable and readers on the last complete step, its MLflow run
is marked FAILED by the next run, which says so, and the rerun completes every table."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import mlflow
import yaml
from pyspark.sql import SparkSession

from recsys_spark.config import Config
from recsys_spark.io.step_runs import complete_versions, read_complete
from recsys_spark.io.tables import table_name
from recsys_spark.pipeline import run_steps
from recsys_spark.progress import KILL_AT
from recsys_spark.steps.ingest import ingest, load_sample
from recsys_spark.tracking.runs import tracking_uri
from tests.conftest import SAMPLE_RUN
from tests.reliability.tables import delta_rs_counts, run_ids
from tests.reliability.test_bad_input import covers

BASKETS_TABLES = ("frequent_itemsets", "association_rules", "frequently_bought_together", "substitutes")


def recsys(
    config: Config, folder: Path, command: str, kill_at: str | None = None
) -> subprocess.CompletedProcess:
    """``recsys <command>`` in a process of its own, over exactly ``config``."""
    overlay = folder / "conf.yml"
    values = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("sources", "root")}
    overlay.write_text(yaml.safe_dump(values))
    env = {k: v for k, v in os.environ.items() if k != KILL_AT} | ({KILL_AT: kill_at} if kill_at else {})
    return subprocess.run(
        [sys.executable, "-m", "recsys_spark.cli", command, "--conf", str(overlay)],
        capture_output=True, text=True, timeout=600, cwd=folder, env=env,
    )  # fmt: skip


@covers("killed_between_table_commits")
def test_a_run_killed_between_two_commits_is_marked_failed_and_the_rerun_completes(
    spark: SparkSession, make_config: Callable[..., Config], tmp_path: Path
) -> None:
    config = make_config(**SAMPLE_RUN, mlflow={"experiment": "crashes"})
    load_sample(spark, config)
    ingest(spark, config, "run_0")
    run_steps(config, ["baskets"], spark)  # a complete run of the step first
    complete = complete_versions(spark, config)
    (first_id,) = run_ids(spark, config, "frequent_itemsets")

    killed = recsys(config, tmp_path, "baskets", kill_at="write|association_rules")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    # The table written before the kill has the killed run, the later ones the complete run's;
    # readers (views, export) still see the complete run's tables only.
    (killed_id,) = run_ids(spark, config, "frequent_itemsets")
    assert killed_id != first_id
    assert all(run_ids(spark, config, key) == {first_id} for key in BASKETS_TABLES[1:3])
    assert complete_versions(spark, config) == complete
    seen = read_complete(spark, config, "frequent_itemsets").select("run_id").distinct().collect()
    assert [r.run_id for r in seen] == [first_id]
    # Every table readable by Spark and by delta-rs, with the same rows.
    by_delta_rs = delta_rs_counts(config)
    assert len(by_delta_rs) >= 8
    assert by_delta_rs == {key: spark.table(str(table_name(config, key))).count() for key in by_delta_rs}
    mlflow.set_tracking_uri(tracking_uri(config))
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("crashes").experiment_id
    (left_running,) = client.search_runs(
        [experiment], "attributes.status = 'RUNNING' AND tags.`recsys.steps` = 'baskets'"
    )

    # The rerun in this session: a second cold JVM would cost more than the step itself.
    said = run_steps(config, ["baskets"], spark)[0]
    assert said.startswith(f"previous run {left_running.info.run_id} (started ")
    assert "pipeline: baskets) was interrupted in step baskets: marked FAILED" in said
    assert client.get_run(left_running.info.run_id).info.status == "FAILED"
    assert client.get_run(left_running.info.run_id).data.tags["recsys.interrupted"] == "true"
    assert not client.search_runs([experiment], "attributes.status = 'RUNNING'")
    # Every table there and readable, each from the rerun alone (the sample has no substitutes).
    runs = {key: run_ids(spark, config, key) for key in BASKETS_TABLES}
    (rerun_id,) = runs["frequent_itemsets"]
    assert rerun_id not in (left_running.info.run_id, first_id)
    assert runs == {**{key: {rerun_id} for key in BASKETS_TABLES}, "substitutes": set()}
    seen = read_complete(spark, config, "association_rules").select("run_id").distinct().collect()
    assert [r.run_id for r in seen] == [rerun_id]
