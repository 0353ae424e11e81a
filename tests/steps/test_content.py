"""The content model through Spark: trained per segment over the whole catalogue, published like
ALS, and able to recommend items nobody in the segment has bought."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import Config
from recsys_spark.distributed.analytics import item_descriptions
from recsys_spark.io.tables import table_name
from recsys_spark.kernels.content import ContentParams, item_vectors
from recsys_spark.pipeline import run_steps


@pytest.fixture(scope="module")
def content_run(spark: SparkSession, make_config: Callable[..., Config]) -> Config:
    config = make_config(
        models={
            "enabled": ["content", "popularity"],
            "publish": "content",
            "min_segment_users": 10,
            "min_segment_items": 10,
            "content": {"dims": 16, "min_df": 2},
        }
    )
    run_steps(config, ["load-sample", "ingest", "train", "score"], spark)
    return config


def test_content_vectors_cover_the_catalogue_in_every_trained_segment(
    spark: SparkSession, content_run: Config
) -> None:
    silver = spark.table(str(table_name(content_run, "interactions")))
    items = spark.table(str(table_name(content_run, "item_factors"))).where("model = 'content'")
    catalogue = silver.select("item_id").distinct().count()
    per_segment = items.groupBy("segment").count().collect()
    assert per_segment and all(r["count"] == catalogue for r in per_segment)
    # The vectors are the kernel's for each item's usual description, in every segment.
    texts = {r.item_id: r.description for r in item_descriptions(silver).collect()}
    for row in per_segment:
        stored = items.where(F.col("segment") == row.segment).orderBy("item_id").toPandas()
        expected = item_vectors([texts.get(i) for i in stored.item_id], ContentParams(16, 2, seed=42))
        assert np.stack(stored.factors) == pytest.approx(expected, abs=1e-5)


def test_content_reaches_items_never_bought_in_the_segment(spark: SparkSession, content_run: Config) -> None:
    silver = spark.table(str(table_name(content_run, "interactions")))
    recs = spark.table(str(table_name(content_run, "recommendations"))).where("model = 'content'")
    assert recs.count() > 0 and {r.reason for r in recs.select("reason").distinct().collect()} == {
        "similar_description"
    }
    sold_there = silver.select("segment", "item_id").distinct()
    new_to_segment = recs.join(sold_there, ["segment", "item_id"], "left_anti")
    assert new_to_segment.count() > 0
    bought = silver.select("segment", "customer_id", "item_id")
    assert recs.join(bought, ["segment", "customer_id", "item_id"], "left_semi").count() == 0
