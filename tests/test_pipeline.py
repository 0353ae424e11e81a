"""End to end: `recsys run` on the bundled real sample, with MLflow tracking and re-run safety."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest
import yaml
from pyspark.sql import SparkSession

from recsys_spark.cli import main
from recsys_spark.config import Config
from recsys_spark.io.tables import table_name
from recsys_spark.pipeline import run_order
from recsys_spark.tracking.runs import tracking_uri


def test_each_bundle_task_is_tracked_and_stamps_the_rows_it_wrote(
    spark: SparkSession, dev_pipeline: Config
) -> None:
    """The bundle's dev tasks ran once (conftest's dev_pipeline): each task is an MLflow run of
    its own, and silver's rows carry the run id of the ingest that inserted them. A second run
    on the same input is tested in tests/reliability (it adds nothing, one run per step)."""
    config = dev_pipeline
    assert run_order(config) == [
        "load-sample",
        "ingest",
        "experiment",
        "baskets",
        "train",
        "evaluate",
        "score",
        "analytics",
        "export",
        "export-vectors",
    ]
    interactions = spark.table(str(table_name(config, "interactions")))
    recommendations = spark.table(str(table_name(config, "recommendations")))
    # The evaluation's choice is what was published (customers of small countries get popularity).
    champion = (
        spark.table(str(table_name(config, "published_model"))).orderBy("decided_at").collect()[-1].model
    )
    # Customers with a single order take the short-history route: the hybrid (cold-start routing).
    models = {r.model for r in recommendations.select("model").distinct().collect()}
    assert champion in models and models <= {champion, "popularity", "hybrid"}

    client = mlflow.MlflowClient(tracking_uri(config))
    experiment = client.get_experiment_by_name(config.mlflow.experiment)
    runs = client.search_runs([experiment.experiment_id], order_by=["start_time ASC"])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    # A step's runs; train's tuning trials are runs nested under train's (tests/steps/test_tuning.py).
    steps = [r for r in runs if r.data.tags.get("recsys.step") in run_order(config)]
    assert [r.data.tags["recsys.steps"] for r in parents] == run_order(config)
    assert [r.data.tags["recsys.step"] for r in steps] == run_order(config)
    ingest = next(r for r in parents if r.data.tags["recsys.steps"] == "ingest")
    assert {r.run_id for r in interactions.select("run_id").distinct().collect()} == {ingest.info.run_id}
    ingest_step = next(r for r in steps if r.data.tags["mlflow.parentRunId"] == ingest.info.run_id)
    assert ingest_step.data.metrics["silver_inserted"] == interactions.count()
    assert ingest.data.params["input.columns.customer_id"] == "CustomerID"
    assert Path(tracking_uri(config).removeprefix("file://")).is_relative_to(config.work_path)


def test_cli_reports_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump({"spark": {"shuffle_partitions": "eight"}}))
    assert main(["ingest", "--conf", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yml: key 'spark.shuffle_partitions' must be an integer" in err


def test_cli_runs_a_step(
    spark: SparkSession,
    make_config: Callable[..., Config],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = make_config()
    overlay = tmp_path / "test.yml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "work_dir": config.work_dir,
                "schemas": vars(config.schemas),
                "input": {"landing_path": config.input.landing_path},
            }
        )
    )
    assert main(["load-sample", "--conf", str(overlay)]) == 0
    out = capsys.readouterr().out
    assert "bronze: landed 2 files" in out
    assert f"table {table_name(config, 'purchases')}" in out
