"""One local SparkSession (Delta enabled) for the whole test run, over a temporary work folder."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import Config, load_config
from recsys_spark.io.session import fetch_delta_jars, get_spark, jars_dir

DATA = Path(__file__).parent / "data"
SAMPLE = DATA / "online_retail_sample"
DIRTY = DATA / "dirty"

_names = itertools.count()
# The lists as the models make them (no business rule, so no evaluated rule variant); the rules
# have their tests in test_hybrid and the kernels.
NO_RULES: dict[str, Any] = {"max_per_category": None, "mmr_lambda": None}
# The fixtures are tiny: compiling each query's whole-stage code, and its expressions' code, and
# running every adaptive query stage as a job of its own cost more than their data (a run of every
# step on the sample, warm: 71 s with them; 56 s without the first and the last; 41 s without all
# three). Production keeps Spark's defaults; results are the same (Spark evaluates every
# expression interpreted too).
TEST_SPARK_CONF = {
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
    "spark.sql.adaptive.enabled": "false",
}
# Every step on the bundled sample (42 customers): baskets and models sized for it.
SAMPLE_RUN: dict[str, Any] = {
    "load_sample": True,
    "baskets": {"min_support": 3, "min_count_floor": 3, "min_segment_baskets": 10, "max_len": 3},
    "models": {"min_segment_users": 10, "als": {"factors": 8, "iterations": 3}},
    # One business rule (the category cap) rather than two: evaluate measures each rule on and
    # their sum as variants, a full list pass each; MMR has its tests (test_hybrid, kernels).
    "business_rules": {"mmr_lambda": None},
    # The sample's quantile split leaves 3 test customers: judge models on them anyway (the
    # guard against too few has its test in tests/steps/test_evaluate.py).
    "evaluation": {"min_test_customers": 1},
}


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("work")
    # Reuse the jars `make setup` fetched into the project's work folder: tests run offline.
    project_jars = fetch_delta_jars(load_config("local"))[0].parent
    (work / "jars").symlink_to(project_jars, target_is_directory=True)
    return work


@pytest.fixture(scope="session")
def make_config(work_dir: Path) -> Callable[..., Config]:
    """A local config over the test work folder; each call gets schemas of its own."""

    def make(landing: Path = SAMPLE, **overrides: Any) -> Config:
        prefix = f"t{next(_names)}"
        base: dict[str, Any] = {
            "work_dir": str(work_dir),
            "schemas": {layer: f"{prefix}_{layer}" for layer in ("bronze", "silver", "gold")},
            "spark": {
                "master": "local[2]",
                "shuffle_partitions": 2,
                "driver_memory": "2g",
                "conf": TEST_SPARK_CONF,
            },
            "input": {"landing_path": str(landing)},
            # Tuning has tests of its own (tests/steps/test_tuning.py); elsewhere conf's values train.
            "models": {"tuning": {"trials": 0}},
            "evaluation": SAMPLE_RUN["evaluation"],
        }
        return load_config("local", overrides=deep_merge(base, overrides))

    return make


@pytest.fixture(scope="session")
def spark(make_config: Callable[..., Config]) -> Iterator[SparkSession]:
    config = make_config()
    assert jars_dir(config).is_dir()
    session = get_spark(config)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def dev_pipeline(spark: SparkSession, work_dir: Path) -> Iterator[Config]:
    """The dev target's pipeline run once per session, every task as the bundle declares it."""
    from tests.bundle import run_dev_pipeline  # imports this module

    with pytest.MonkeyPatch.context() as patch:
        yield run_dev_pipeline(work_dir, patch)


def without_comments(frame: DataFrame) -> DataFrame:
    """``frame`` without column metadata (the tables' comments), to compare with frames made here.

    chispa's approximate comparison compares metadata and has no switch to ignore it.
    """
    return frame.select(*(F.col(f"`{f.name}`").cast(f.dataType).alias(f.name) for f in frame.schema.fields))


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
