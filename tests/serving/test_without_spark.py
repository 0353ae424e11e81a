"""`recsys serve` starts where only the wheel and its `serve` extra are installed: neither the
command nor the API loads Spark, Delta's Python package or py4j."""

from __future__ import annotations

import subprocess
import sys

from recsys_spark import cli, pipeline

CHECK = """
import sys
import recsys_spark.cli, recsys_spark.serving.api, recsys_spark.serving.cart
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("pyspark", "py4j", "delta"))
assert not loaded, loaded
"""


def test_the_command_and_the_api_import_no_spark() -> None:
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_the_command_names_every_step_of_the_pipeline() -> None:
    assert tuple(pipeline.STEPS) == cli.STEP_NAMES
