"""MLflow tracking: one parent run per pipeline run, one nested run per step.

The parent run's id is the ``run_id`` stamped on every table row the run writes. Locally the
store is a file store under the work folder; on Databricks it is the workspace.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import mlflow

from recsys_spark.config import Config
from recsys_spark.session import on_databricks

log = logging.getLogger(__name__)

# MLflow rejects longer param values.
MAX_PARAM_CHARS = 6000


def tracking_uri(config: Config) -> str:
    if config.mlflow.tracking_uri:
        return config.mlflow.tracking_uri
    if on_databricks():
        return "databricks"
    return (config.work_path / "mlruns").as_uri()


@dataclass(frozen=True)
class PipelineRun:
    """The MLflow parent run of one pipeline run."""

    run_id: str
    experiment_id: str
    tracking_uri: str


@contextmanager
def pipeline_run(config: Config, steps: Sequence[str]) -> Iterator[PipelineRun]:
    """Start the parent MLflow run, log the resolved config as params, and end it (FAILED on error)."""
    uri = tracking_uri(config)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.set_experiment(config.mlflow.experiment)
    with mlflow.start_run(run_name="pipeline: " + " > ".join(steps)) as run:
        params = {k: _param_value(v) for k, v in config.to_flat_dict().items()}
        mlflow.log_params(params)
        mlflow.set_tags({"recsys.steps": ",".join(steps), "recsys.target": config.target})
        mlflow.log_dict(params, "config/resolved_config.json")
        yield PipelineRun(run.info.run_id, experiment.experiment_id, uri)


@contextmanager
def step_run(step: str) -> Iterator[dict[str, float]]:
    """A nested run for one step; the metrics the caller puts in the dict are logged at its end."""
    metrics: dict[str, float] = {}
    with mlflow.start_run(run_name=step, nested=True):
        mlflow.set_tag("recsys.step", step)
        yield metrics
        mlflow.log_metrics(metrics)


def _param_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, list | tuple | dict) else str(value)
    return text[:MAX_PARAM_CHARS]
