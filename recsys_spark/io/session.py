"""SparkSession factory: local Spark with Delta, or the session Databricks already runs."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from recsys_spark.config import Config, ConfigError, on_databricks
from recsys_spark.io.tables import register_local_tables
from recsys_spark.io.views import create_views

log = logging.getLogger(__name__)

# Delta Lake 4.0.x is the release line built for Spark 4.0 / Scala 2.13 (Databricks Runtime 17).
DELTA_VERSION = "4.0.1"
DELTA_ARTIFACTS = (f"io.delta:delta-spark_2.13:{DELTA_VERSION}", f"io.delta:delta-storage:{DELTA_VERSION}")
LOG4J_CONF = Path(__file__).parent.parent / "log4j2.properties"


def jars_dir(config: Config) -> Path:
    return config.work_path / "jars"


def delta_jar_paths(config: Config) -> list[Path]:
    """The Delta jars in the work folder, or [] when they have not been fetched yet."""
    paths = [jars_dir(config) / _jar_file(artifact) for artifact in DELTA_ARTIFACTS]
    return paths if all(p.is_file() for p in paths) else []


def fetch_delta_jars(config: Config) -> list[Path]:
    """Download Delta's jars from Maven Central into the work folder once; later runs work offline.

    Uses Maven when it is installed, otherwise Spark's own Ivy resolution (``spark.jars.packages``).
    """
    if paths := delta_jar_paths(config):
        return paths
    target = jars_dir(config)
    target.mkdir(parents=True, exist_ok=True)
    if shutil.which("mvn"):
        for artifact in DELTA_ARTIFACTS:
            cmd = [
                "mvn",
                "-B",
                "-q",
                "dependency:copy",
                f"-Dartifact={artifact}",
                f"-DoutputDirectory={target}",
            ]
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(
                    f"could not fetch {artifact} from Maven Central with `{' '.join(cmd)}`:\n"
                    f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
                )
    else:
        _ivy_fetch(config, target)
    if not (paths := delta_jar_paths(config)):
        raise RuntimeError(f"Delta jars not found in {target} after fetching; see the messages above")
    log.info("Delta jars ready in %s", target)
    return paths


def writable_work_dir(config: Config) -> Path:
    """``config.work_path``, created if missing; a ConfigError (one line) when it cannot be
    written, before Spark or MLflow fail on it with a long trace."""
    work = config.work_path
    probe = work / ".recsys-write-check"
    try:
        work.mkdir(parents=True, exist_ok=True)
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"work_dir {work} cannot be written ({exc.strerror or exc}): set work_dir in conf "
            "(or --set work_dir=...) to a folder this user can write"
        ) from None
    return work


def get_spark(config: Config) -> SparkSession:
    """The SparkSession for ``config``: Databricks' own session there, local Spark + Delta here.

    Locally the warehouse, Delta tables and jars live under ``config.work_path``; tables written
    by earlier runs are registered in the session catalog so that SQL sees them by name.
    """
    if on_databricks():
        return SparkSession.builder.getOrCreate()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    work = writable_work_dir(config)
    # HotSpot leaves a method over 8,000 bytes of bytecode interpreted; Spark's generated code
    # for wide rows (ingest's parsing, for one) is bigger: ingest's dedupe job ran 1.8x as long.
    java_opts = (
        f"-Dlog4j2.configurationFile={LOG4J_CONF} -Dderby.system.home={work} -XX:-DontCompileHugeMethods"
    )
    builder = (
        SparkSession.builder.master(config.spark.master)
        .appName(config.project)
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.warehouse.dir", str(work / "warehouse"))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.pyspark.fallback.enabled", "false")
        .config("spark.sql.shuffle.partitions", str(config.spark.shuffle_partitions))
        .config("spark.sql.session.timeZone", config.spark.timezone)
        .config("spark.driver.memory", config.spark.driver_memory)
        .config("spark.driver.extraJavaOptions", java_opts)
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.ui.enabled", "false")
        .config("spark.local.dir", str(work / "spark-tmp"))
        # Small local tables: fewer snapshot partitions make each Delta commit much cheaper.
        .config("spark.databricks.delta.snapshotPartitions", "2")
        .config("spark.databricks.delta.stats.collect", "true")
        # Workers import the installed pyspark, not Spark's zip (io/local_daemon.py says why).
        .config("spark.python.daemon.module", "recsys_spark.io.local_daemon")
    )
    for key, value in config.spark.conf.items():
        builder = builder.config(key, value)
    if jars := delta_jar_paths(config):
        builder = builder.config("spark.jars", ",".join(map(str, jars)))
    else:
        builder = builder.config("spark.jars.packages", DELTA_ARTIFACTS[0]).config(
            "spark.jars.ivy", str(work / "ivy")
        )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(config.spark.log_level)
    register_local_tables(spark, config)
    create_views(spark, config)
    return spark


def _jar_file(artifact: str) -> str:
    _, name, version = artifact.split(":")
    return f"{name}-{version}.jar"


def _ivy_fetch(config: Config, target: Path) -> None:
    ivy = config.work_path / "ivy"
    spark = (
        SparkSession.builder.master("local[1]")
        .config("spark.jars.packages", DELTA_ARTIFACTS[0])
        .config("spark.jars.ivy", str(ivy))
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.stop()
    for artifact in DELTA_ARTIFACTS:
        found = next(ivy.glob(f"jars/*{_jar_file(artifact).removesuffix('.jar')}*.jar"), None)
        if found:
            shutil.copy(found, target / _jar_file(artifact))


def read_secret(spark: SparkSession | None, env: str, scope: str | None, key: str | None) -> str | None:
    """A secret: from the Databricks secret ``scope``/``key`` when both are set and this runs
    there, else from the environment variable ``env`` (None: unset). Never from conf, so it
    never reaches logs or MLflow params.

    Example::

        salt = read_secret(spark, "RECSYS_EXPORT_SALT", "recsys", "crm_export_salt")
    """
    if scope and key and on_databricks():
        from pyspark.dbutils import DBUtils  # only on Databricks

        return DBUtils(spark).secrets.get(scope, key)
    return os.environ.get(env)
