"""MLflow tracking: one parent run per pipeline run, one nested run per step.

The parent run's id is the ``run_id`` stamped on every table row the run writes. Locally the
store is a file store under the work folder; on Databricks it is the workspace.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

# Batch jobs: no progress bars in the logs.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from recsys_spark.config import Config, on_databricks
from recsys_spark.tracking.served_model import PublishedRecommender

log = logging.getLogger(__name__)

# MLflow rejects longer param values.
MAX_PARAM_CHARS = 6000


def tracking_uri(config: Config) -> str:
    if config.mlflow.tracking_uri:
        return config.mlflow.tracking_uri
    if on_databricks():
        return "databricks"
    return (config.work_path / "mlruns").as_uri()


@dataclass
class StepReport:
    """What a step did: metrics for MLflow and lines for the person at the terminal."""

    metrics: dict[str, float] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    closing: list[str] = field(default_factory=list)  # printed after every step has run


@dataclass(frozen=True)
class PipelineRun:
    """The MLflow parent run of one pipeline run."""

    run_id: str
    experiment_id: str
    tracking_uri: str
    interrupted: list[str] = field(default_factory=list)  # earlier runs found killed, one line each


@contextmanager
def pipeline_run(config: Config, steps: Sequence[str]) -> Iterator[PipelineRun]:
    """Start the parent MLflow run, log the resolved config as params, and end it (FAILED on error).

    Runs that a killed process left RUNNING are marked FAILED first, each with a warning.
    """
    uri = tracking_uri(config)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.set_experiment(config.mlflow.experiment)
    interrupted = close_interrupted_runs(experiment.experiment_id)
    with mlflow.start_run(run_name="pipeline: " + " > ".join(steps), tags=_process_tags()) as run:
        params = {k: _param_value(v) for k, v in config.to_flat_dict().items()}
        mlflow.log_params(params)
        mlflow.set_tags({"recsys.steps": ",".join(steps), "recsys.target": config.target})
        mlflow.log_dict(params, "config/resolved_config.json")
        yield PipelineRun(run.info.run_id, experiment.experiment_id, uri, interrupted)


@contextmanager
def step_run(step: str) -> Iterator[dict[str, float]]:
    """A nested run for one step; the metrics the caller puts in the dict are logged at its end."""
    metrics: dict[str, float] = {}
    with mlflow.start_run(run_name=step, nested=True, tags=_process_tags()):
        mlflow.set_tag("recsys.step", step)
        yield metrics
        mlflow.log_metrics(metrics)


def log_to_run(run_id: str, metrics: dict[str, float]) -> None:
    """Log ``metrics`` to an earlier run (e.g. the one that made an export), finished or not.
    A run this tracking server no longer has (deleted, another workspace) gets a warning."""
    client = mlflow.MlflowClient()
    stamp = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    try:
        client.log_batch(run_id, [Metric(key, value, stamp, 0) for key, value in metrics.items()])
    except MlflowException as exc:
        log.warning("could not log %d metrics to MLflow run %s: %s", len(metrics), run_id, exc)


# A run on another machine (a Databricks job cluster, gone when its job ends) still RUNNING after
# this long is taken as interrupted: the job's max_concurrent_runs is 1 and jobs take minutes.
STALE_ELSEWHERE = dt.timedelta(hours=24)


def _process_tags() -> dict[str, str]:
    return {"recsys.host": socket.gethostname(), "recsys.pid": str(os.getpid())}


def close_interrupted_runs(experiment_id: str) -> list[str]:
    """Mark FAILED the experiment's runs still RUNNING whose process is gone (killed, or its
    machine lost); return one line per pipeline run found, naming the step it was in."""
    client = mlflow.MlflowClient()
    running = client.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=5000)
    gone = [r for r in running if _process_gone(r.data.tags, r.info.start_time)]
    steps = {
        r.data.tags.get("mlflow.parentRunId"): r.data.tags.get("recsys.step", r.info.run_name)
        for r in gone
        if r.data.tags.get("recsys.step") and r.data.tags.get("recsys.step") != "train.tune"
    }
    lines = []
    for run in gone:
        client.set_tag(run.info.run_id, "recsys.interrupted", "true")
        client.set_terminated(run.info.run_id, "FAILED")
        if "mlflow.parentRunId" not in run.data.tags:
            started = dt.datetime.fromtimestamp(run.info.start_time / 1000, dt.UTC).strftime(
                "%Y-%m-%d %H:%M:%S"
            )
            lines.append(
                f"previous run {run.info.run_id} (started {started} UTC, {run.info.run_name}) was "
                f"interrupted in step {steps.get(run.info.run_id, 'before its first step')}: marked "
                "FAILED; its step's tables may be from two runs until this run rewrites them"
            )
            log.warning(lines[-1])
    return lines


def _process_gone(tags: dict[str, str], start_ms: int) -> bool:
    if tags.get("recsys.host") != socket.gethostname():
        started = dt.datetime.fromtimestamp(start_ms / 1000, dt.UTC)
        return dt.datetime.now(dt.UTC) - started > STALE_ELSEWHERE
    pid = int(tags.get("recsys.pid", "0"))
    if pid == os.getpid() or pid <= 0:
        return False  # this process's own runs are ended by their context managers
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


def log_trials(trials: pd.DataFrame) -> None:
    """Each tuning trial as a run nested in the active (train step) run: its segment, model and
    values as params, its validation NDCG as a metric, the chosen ones tagged."""
    for row in trials.itertuples():
        with mlflow.start_run(run_name=f"tune {row.model} {row.segment} #{row.trial}", nested=True):
            mlflow.log_params(
                {"segment": row.segment, "model": row.model, "trial": row.trial, **json.loads(row.params)}
            )
            mlflow.log_metrics({"validation_ndcg": row.ndcg, "seconds": row.seconds})
            mlflow.set_tags({"recsys.step": "train.tune", "recsys.chosen": str(bool(row.chosen)).lower()})


def _param_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, list | tuple | dict) else str(value)
    return text[:MAX_PARAM_CHARS]


def _signature() -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, DataType, Schema

    text = DataType.string
    inputs = Schema(
        [
            ColSpec(text, "customer_id"),
            # Optional: without a history the model reads the customer's from its own copy of
            # the batch's (by segment where given, else in every segment they bought in).
            ColSpec(text, "segment", required=False),
            ColSpec(Array(text), "history", required=False),
            # Optional: ItemKNN's history weights, cold-start routing by order count, and the
            # hybrid's rules from the last basket.
            ColSpec(Array(DataType.double), "history_weights", required=False),
            ColSpec(DataType.long, "orders", required=False),
            ColSpec(Array(text), "last_basket", required=False),
        ]
    )
    outputs = Schema(
        [
            ColSpec(text, "segment"),
            ColSpec(text, "customer_id"),
            ColSpec(DataType.long, "rank"),
            ColSpec(text, "item_id"),
            ColSpec(DataType.float, "score"),
            ColSpec(text, "reason"),
            ColSpec(text, "reason_item_id", required=False),
            ColSpec(DataType.float, "score_low", required=False),
            ColSpec(DataType.float, "score_high", required=False),
        ]
    )
    return ModelSignature(inputs, outputs)


SIGNATURE = _signature()


def _log_pyfunc(name: str, settings: dict[str, Any], artifacts: dict[str, str]) -> Any:
    return mlflow.pyfunc.log_model(
        name="champion",
        python_model=PublishedRecommender(),
        artifacts=artifacts,
        model_config=settings,
        signature=SIGNATURE,
        code_paths=[str(Path(__file__).parent.parent)],  # the recsys_spark package
        pip_requirements=["implicit>=0.7.2,<0.8", "numpy", "pandas", "pyarrow", "scipy", "threadpoolctl"],
        registered_model_name=name,
    )


def log_evaluation(figures: dict[str, Any], report_html: str, published: str, reason: str) -> None:
    """On the active (evaluate step) run: the plots, the HTML report and the publishing decision."""
    for name, figure in figures.items():
        mlflow.log_figure(figure, f"plots/{name}")
    mlflow.log_text(report_html, "report/evaluation.html")
    mlflow.set_tags({"recsys.published_model": published, "recsys.guardrail": reason[:MAX_PARAM_CHARS]})


def log_champion(config: Config, tables: dict[str, Any], settings: dict[str, Any]) -> str | None:
    """Log the published model as a pyfunc (its tables as parquet artifacts, ``settings`` as its
    model config: see ``serving.settings.serving_settings``), register it and point the registered model's
    ``champion`` alias at the new version; returns the version."""
    model = settings["model"]
    name = config.mlflow.registered_model
    with tempfile.TemporaryDirectory() as folder:
        artifacts = {}
        for key, frame in tables.items():
            path = Path(folder, f"{key}.parquet")
            frame.to_parquet(path)
            artifacts[key] = str(path)
        with warnings.catch_warnings():
            # The signature is given; an input example would only repeat it.
            warnings.filterwarnings("ignore", message=".*input example was not provided.*")
            info = _log_pyfunc(name, settings, artifacts)
    version = info.registered_model_version
    if version is not None:
        mlflow.MlflowClient().set_registered_model_alias(name, "champion", str(version))
        log.info("registered %s version %s as %s@champion", model, version, name)
    return str(version) if version is not None else None
