"""The last mile of a published list in Spark: ``kernels.rerank.final_lists`` (blend candidate
sources, then apply the business rules) in an ``applyInPandas`` over customers grouped by
segment and a hash bucket. Item categories and the vectors MMR compares travel in the task's
closure, as the scoring catalogues do. This module reads and writes no tables.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_spark.kernels import rerank

LIST_SCHEMA = (
    "segment string, customer_id string, rank int, item_id string, score float, model string, "
    "reason string, reason_item_id string"
)
BUCKETS = 64  # groups per segment: bounds one pandas call's size without one call per customer


class RerankError(RuntimeError):
    """Blending or the business rules failed for a segment; the message names it."""


def final_lists(candidates: DataFrame, settings: rerank.ListSettings) -> DataFrame:
    """Top ``settings.n`` per customer after blending and the business rules (LIST_SCHEMA)."""
    bucket = F.pmod(F.xxhash64("customer_id"), F.lit(BUCKETS)).alias("bucket")
    grouped = candidates.select(*rerank.CANDIDATE_COLUMNS, bucket).groupBy("segment", "bucket")
    return grouped.applyInPandas(_per_group(settings), LIST_SCHEMA)


def _per_group(settings: rerank.ListSettings) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def run(group: pd.DataFrame) -> pd.DataFrame:
        try:
            return rerank.final_lists(group.drop(columns="bucket"), settings)
        except Exception as exc:
            segment = group.segment.iat[0]
            raise RerankError(f"segment {segment!r}: {type(exc).__name__}: {exc}") from exc

    return run
