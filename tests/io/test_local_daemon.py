"""The local Python worker daemon: workers import the installed pyspark, not Spark's archives,
and start with the pipeline already imported."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pandas as pd
from pyspark.sql import SparkSession

from recsys_spark.io.local_daemon import path_without_spark_archives


def test_only_the_archives_inside_spark_home_leave_the_path(tmp_path) -> None:
    home = tmp_path / "pyspark"
    path = [
        str(home / "python" / "lib" / "pyspark.zip"),
        str(home / "python" / "lib" / "py4j-0.10.9.9-src.zip"),
        str(home / "jars" / "spark-core_2.13-4.0.1.jar"),
        str(home / "python"),  # a folder inside SPARK_HOME stays
        str(tmp_path / "lib" / "python311.zip"),  # the interpreter's own zip stays
        str(tmp_path / "site-packages"),
    ]
    assert path_without_spark_archives(path, str(home)) == path[3:]


def _worker_facts(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    import sys

    import pyspark

    with open(f"/proc/{os.getppid()}/cmdline", "rb") as cmdline:
        parent = cmdline.read().replace(b"\0", b" ").decode()
    archives = [
        entry
        for entry, finder in sys.path_importer_cache.items()
        if finder is not None and type(finder).__name__ == "zipimporter" and "pyspark" in entry
    ]
    for _ in batches:
        yield pd.DataFrame(
            {
                "pyspark_file": [pyspark.__file__],
                "archives": [len(archives)],
                "parent": [parent],
                "pipeline_loaded": ["recsys_spark.pipeline" in sys.modules],
            }
        )


def test_workers_import_the_installed_pyspark_from_the_recsys_daemon(spark: SparkSession) -> None:
    schema = "pyspark_file string, archives int, parent string, pipeline_loaded boolean"
    facts = spark.range(4).repartition(2).mapInPandas(_worker_facts, schema).collect()
    for row in facts:
        assert ".zip" not in row.pyspark_file, row.pyspark_file
        assert row.archives == 0
        assert "recsys_spark.io.local_daemon" in row.parent
        assert row.pipeline_loaded
