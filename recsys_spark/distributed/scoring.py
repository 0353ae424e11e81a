"""Distributed top-N: ``mapInPandas`` over blocks of query rows against a per-segment catalogue.

The matching itself is ``kernels.catalog`` (shared with the served model). One function serves
every "best matches" table: users × item factors (recommendations), items ×
item factors by cosine (similar items), items × user factors (item audience), users × user factors
by cosine (lookalikes). ItemKNN scores from a user's history instead of a user vector, so it has
its own function. The catalogues travel inside the UDF's closure (pickled once per task), which
also works on Spark Connect where ``sparkContext.broadcast`` does not. This module takes and
returns DataFrames; it reads and writes no tables itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_spark.kernels.catalog import Catalog
from recsys_spark.kernels.topn import TopN, limit_threads

# queries: one row per user (or item) to score; ``catalog`` names the candidate set to use.
QUERY_COLUMNS = ["segment", "catalog", "query_id", "vector", "exclude"]
KNN_QUERY_COLUMNS = ["segment", "catalog", "query_id", "history", "history_weights"]
# The UDFs return one row per query with its matches as arrays (fewer, wider rows cross the
# Arrow boundary than one per match); _exploded turns them into one row per match in the JVM:
# segment, query_id, rank, match_id, score, reason_id.
NESTED_SCHEMA = (
    "segment string, query_id string, match_ids array<string>, scores array<float>, reason_ids array<string>"
)


class ScoringError(RuntimeError):
    """Scoring failed for a segment; the message names it."""


def top_matches_by_segment(
    queries: DataFrame,
    catalogs: dict[str, Catalog],
    n: int,
    block_rows: int,
    threads: int,
    cosine: bool = False,
) -> DataFrame:
    """For every query row, its ``n`` best candidates in ``catalogs[catalog]`` by dot product
    (cosine when ``cosine``), its ``exclude`` ids and the catalogue's blocked ids masked out."""

    def score(catalog: Catalog, part: pd.DataFrame) -> TopN:
        vectors = np.stack(part.vector.to_numpy())
        return catalog.top_for_vectors(vectors, list(part.exclude), n, cosine, block_rows)

    return _exploded(
        queries.select(*QUERY_COLUMNS).mapInPandas(_per_catalog(catalogs, threads, score), NESTED_SCHEMA)
    )


def knn_recommendations(
    queries: DataFrame, catalogs: dict[str, Catalog], n: int, block_rows: int, threads: int
) -> DataFrame:
    """ItemKNN top-N from each user's history (ids and weights), with the history item that
    contributed most as ``reason_id``."""

    def score(catalog: Catalog, part: pd.DataFrame) -> tuple[TopN, np.ndarray]:
        return catalog.top_for_histories(list(part.history), list(part.history_weights), n, block_rows)

    return _exploded(
        queries.select(*KNN_QUERY_COLUMNS).mapInPandas(_per_catalog(catalogs, threads, score), NESTED_SCHEMA)
    )


def _exploded(nested: DataFrame) -> DataFrame:
    no_reasons = F.array_repeat(F.lit(None).cast("string"), F.size("match_ids"))
    matches = F.arrays_zip(
        F.col("match_ids").alias("match_id"),
        F.col("scores").alias("score"),
        F.coalesce("reason_ids", no_reasons).alias("reason_id"),
    )
    return nested.select("segment", "query_id", F.posexplode(matches).alias("position", "match")).select(
        "segment",
        "query_id",
        (F.col("position") + 1).cast("int").alias("rank"),
        "match.match_id",
        "match.score",
        "match.reason_id",
    )


def _per_catalog(
    catalogs: dict[str, Catalog],
    threads: int,
    score: Callable[[Catalog, pd.DataFrame], TopN | tuple[TopN, np.ndarray]],
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        with limit_threads(threads):
            for frame in batches:
                for name, part in frame.groupby("catalog", sort=False):
                    catalog = catalogs.get(name)
                    if catalog is None:
                        raise ScoringError(
                            f"no trained candidates for segment {name!r} ({len(part)} rows to score); "
                            "run `recsys train` before `recsys score`"
                        )
                    try:
                        result = score(catalog, part)
                    except Exception as exc:
                        raise ScoringError(f"segment {name!r}: {type(exc).__name__}: {exc}") from exc
                    top, reasons = result if isinstance(result, tuple) else (result, None)
                    yield _nested_rows(part, catalog, top, reasons)

    return run


def _nested_rows(part: pd.DataFrame, catalog: Catalog, top: TopN, reasons: np.ndarray | None) -> pd.DataFrame:
    counts = top.counts
    valid = top.indices >= 0
    ends = np.cumsum(counts)[:-1]
    match_ids = np.split(catalog.ids[top.indices[valid]], ends)
    scores = np.split(top.scores[valid], ends)
    if reasons is None:
        reason_ids = [None] * len(part)
    else:
        reason_codes = reasons[valid]
        names = np.where(reason_codes >= 0, catalog.ids[reason_codes], None)
        reason_ids = np.split(names, ends)
    return pd.DataFrame(
        {
            "segment": part.segment.to_numpy(),
            "query_id": part.query_id.to_numpy(),
            "match_ids": match_ids,
            "scores": scores,
            "reason_ids": reason_ids,
        }
    )
