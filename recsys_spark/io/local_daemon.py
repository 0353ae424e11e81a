"""The Python worker daemon of local Spark sessions (``spark.python.daemon.module``): pyspark's
own daemon, started without the archives Spark puts first on every worker's path.

Spark puts ``$SPARK_HOME/python/lib/pyspark.zip``, the py4j zip and the spark-core jar ahead of
site-packages. Workers then import pyspark from the zip (compiled from source in every new
worker: a zip holds no bytecode cache) and every task's ``importlib.invalidate_caches()``
re-reads the three archives' directories, about 20 ms a task. With pyspark installed from pip,
SPARK_HOME is that installed package, so the workers import the same code from site-packages.
The archives stay on the path when pyspark cannot be found without them.
"""

from __future__ import annotations

import importlib.util
import os
import runpy
import sys


def path_without_spark_archives(path: list[str], spark_home: str) -> list[str]:
    """``path`` less the .zip and .jar entries inside ``spark_home``."""
    home = os.path.realpath(spark_home) + os.sep
    return [
        entry
        for entry in path
        if not (entry.endswith((".zip", ".jar")) and os.path.realpath(entry).startswith(home))
    ]


def main() -> None:
    spark_home = os.environ.get("SPARK_HOME")
    if spark_home:
        kept = sys.path[:]
        sys.path[:] = path_without_spark_archives(sys.path, spark_home)
        if importlib.util.find_spec("pyspark") is None:
            sys.path[:] = kept
        # Finding this module already opened the archives: forget them, or every task's
        # invalidate_caches() still re-reads them.
        for entry in set(kept) - set(sys.path):
            sys.path_importer_cache.pop(entry, None)
    # Workers are forked from the daemon: what it imports, every worker starts with, instead of
    # each new worker importing the pipeline (numpy to MLflow) when it unpickles its first UDF.
    importlib.import_module("recsys_spark.pipeline")
    runpy.run_module("pyspark.daemon", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
