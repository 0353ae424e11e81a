"""recsys export-vectors on the tables the dev pipeline published in this session: to LanceDB,
to a real PostgreSQL with pgvector, and (as the dev pipeline ran it) to Delta with change data
feed. In each store the nearest neighbours of an item are gold.similar_items' for the same
model (the same top N up to ties), and exporting again changes nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import Config
from recsys_spark.io.tables import table_name
from recsys_spark.io.vector_stores import postgres
from recsys_spark.steps.vectors import run_export_vectors
from tests.services import start_postgres


def with_store(config: Config, **vectors: Any) -> Config:
    return dataclasses.replace(config, vectors=dataclasses.replace(config.vectors, **vectors))


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    server, conf = start_postgres(tmp_path_factory.mktemp("pg"))
    yield conf
    server.cleanup()


def similar(
    spark: SparkSession, config: Config, model: str
) -> dict[tuple[str, str], list[tuple[str, float]]]:
    rows = spark.table(str(table_name(config, "similar_items"))).where(F.col("model") == model).collect()
    lists: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for r in sorted(rows, key=lambda r: r["rank"]):
        lists.setdefault((r.segment, r.item_id), []).append((r.similar_item_id, r.score))
    return lists


def vectors_of(spark: SparkSession, config: Config) -> dict[tuple[str, str], np.ndarray]:
    rows = spark.table(str(table_name(config, "item_vectors"))).collect()
    return {(r.segment, r.item_id): np.asarray(r.vector, np.float32) for r in rows}


def assert_same_up_to_ties(found: list[tuple[str, float]], expected: list[tuple[str, float]]) -> None:
    """The same scores in order; the same items wherever a score is not tied with the last."""
    assert len(found) == len(expected)
    np.testing.assert_allclose([s for _, s in found], [s for _, s in expected], atol=1e-4)
    last = expected[-1][1]
    clear = {i for i, s in expected if s > last + 1e-4}
    assert clear <= {i for i, _ in found}


def sample_items(lists: dict[tuple[str, str], list[tuple[str, float]]]) -> list[tuple[str, str]]:
    keys = sorted(key for key, found in lists.items() if len(found) >= 3)
    assert keys, "gold.similar_items has no list to compare"
    return keys[:: max(1, len(keys) // 15)]


def test_delta_export_has_change_data_feed_and_every_vector(
    spark: SparkSession, dev_pipeline: Config
) -> None:
    name = str(table_name(dev_pipeline, "item_vectors"))
    properties = {r.key: r.value for r in spark.sql(f"SHOW TBLPROPERTIES {name}").collect()}
    assert properties["delta.enableChangeDataFeed"] == "true"
    factors = spark.table(str(table_name(dev_pipeline, "item_factors"))).where(F.col("model") == "als")
    exported = spark.table(name)
    assert exported.count() == factors.count() and {r.model for r in exported.select("model").collect()} == {
        "als"
    }
    assert exported.select("vector_id").distinct().count() == exported.count()
    customers = spark.table(str(table_name(dev_pipeline, "customer_vectors")))
    users = spark.table(str(table_name(dev_pipeline, "user_factors"))).where(F.col("model") == "als")
    assert customers.count() == users.count()
    before = spark.sql(f"DESCRIBE HISTORY {name}").agg(F.max("version")).first()[0]
    assert not run_export_vectors(spark, dev_pipeline).written
    assert spark.sql(f"DESCRIBE HISTORY {name}").agg(F.max("version")).first()[0] == before
    changes = (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", before)
        .table(name)
    )
    inserted = changes.where(F.col("_change_type") == "insert").count()
    assert inserted == exported.count()  # the latest export, as change rows an index syncs


def test_lancedb_neighbours_are_gold_similar_items(
    spark: SparkSession, dev_pipeline: Config, tmp_path: Path
) -> None:
    config = with_store(dev_pipeline, store="lancedb", path=str(tmp_path / "lance"))
    result = run_export_vectors(spark, config)
    assert result.written and result.model == "als" and result.items > 0 and result.customers > 0
    table = lancedb.connect(str(tmp_path / "lance")).open_table(config.tables.item_vectors)
    version = table.version
    lists, vectors = similar(spark, dev_pipeline, "als"), vectors_of(spark, dev_pipeline)
    for segment, item in sample_items(lists):
        found = (
            table.search(vectors[(segment, item)], vector_column_name="vector")
            .metric("cosine")
            .where(f"segment = '{segment}' AND NOT blocked AND item_id != '{item}'", prefilter=True)
            .limit(len(lists[(segment, item)]))
            .to_list()
        )
        assert_same_up_to_ties([(f["item_id"], 1 - f["_distance"]) for f in found], lists[(segment, item)])
    assert not run_export_vectors(spark, config).written
    assert lancedb.connect(str(tmp_path / "lance")).open_table(config.tables.item_vectors).version == version


def test_pgvector_neighbours_are_gold_similar_items(
    spark: SparkSession, dev_pipeline: Config, pg: Any
) -> None:
    config = with_store(dev_pipeline, store="pgvector", postgres=pg)
    result = run_export_vectors(spark, config)
    assert result.written and result.items > 0
    table = f'"{pg.schema}"."{config.tables.item_vectors}"'
    lists, vectors = similar(spark, dev_pipeline, "als"), vectors_of(spark, dev_pipeline)
    with postgres(pg) as connection:
        # Filtered HNSW search: keep scanning until 10 rows pass the filter, in exact order.
        connection.execute("SET hnsw.iterative_scan = strict_order")
        connection.execute("SET hnsw.ef_search = 200")
        oid = connection.execute(
            "SELECT to_regclass(%s)::oid", (f"{pg.schema}.{config.tables.item_vectors}",)
        ).fetchone()
        for segment, item in sample_items(lists):
            query = "[" + ",".join(str(float(v)) for v in vectors[(segment, item)]) + "]"
            found = connection.execute(
                f"SELECT item_id, 1 - (vector <=> %s::vector) FROM {table} "
                "WHERE segment = %s AND NOT blocked AND item_id <> %s "
                "ORDER BY vector <=> %s::vector LIMIT %s",
                (query, segment, item, query, len(lists[(segment, item)])),
            ).fetchall()
            assert_same_up_to_ties([(i, float(s)) for i, s in found], lists[(segment, item)])
        count = connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    assert count == result.items
    assert not run_export_vectors(spark, config).written
    with postgres(pg) as connection:
        same = connection.execute(
            "SELECT to_regclass(%s)::oid", (f"{pg.schema}.{config.tables.item_vectors}",)
        ).fetchone()
    assert same == oid  # the table was not replaced
