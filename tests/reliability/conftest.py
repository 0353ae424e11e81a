"""One full pipeline run on the bundled sample, shared by the fault, idempotency and security tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pyspark.sql import SparkSession

from recsys_spark.config import Config
from recsys_spark.pipeline import run_order, run_steps
from tests.conftest import SAMPLE_RUN

SALT = "reliability-salt-5f2c9a7e1b"
SETTINGS: dict[str, Any] = {
    **SAMPLE_RUN,
    "mlflow": {"experiment": "reliability"},
    "export": {"hash_customer_ids": True, "salt_env": "RECSYS_RELIABILITY_SALT"},
}


@dataclass
class PipelineRuns:
    config: Config
    first: list[str]  # what each run printed
    second: list[str]
    snapshot: dict[str, Any]  # every table after the first run, without run stamps (pandas)


@pytest.fixture(scope="package")
def runs(spark: SparkSession, make_config: Callable[..., Config]) -> Iterator[PipelineRuns]:
    """Every step twice on the same input; the tables after the first run are kept to compare."""
    from tests.reliability.tables import snapshot

    mp = pytest.MonkeyPatch()
    mp.setenv(SETTINGS["export"]["salt_env"], SALT)
    config = make_config(**SETTINGS)
    first = run_steps(config, run_order(config), spark)
    tables = snapshot(spark, config)
    second = run_steps(config, run_order(config), spark)
    yield PipelineRuns(config, first, second, tables)
    mp.undo()
