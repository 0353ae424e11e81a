"""Distributed market-basket mining per segment: exact frequent itemsets, rules, add-ons, substitutes.

Design (exact; one Spark pass, two for very large segments):
1. Each segment's baskets are cut into chunks of at most ``chunk_baskets``; a pandas UDF mines each
   chunk with the bitset kernel at the chunk's share of the minimum count (SON): every globally
   frequent itemset is locally frequent in some chunk, so the union of chunk results holds them all.
2. A segment in one chunk is exact after that pass, and the same UDF derives its rules there.
   For a segment in several chunks, a second pass counts every candidate in every chunk, Spark sums
   the counts, and a per-segment UDF derives the rules.
This module takes and returns DataFrames; it reads and writes no tables itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from recsys_spark.config import BasketsConfig
from recsys_spark.distributed.errors import udf_errors
from recsys_spark.kernels import itemsets as kernel
from recsys_spark.kernels.routing import GLOBAL_SEGMENT

ITEMSET_SCHEMA = "segment string, items array<string>, freq long"
RULE_SCHEMA = (
    "segment string, antecedent array<string>, consequent array<string>, support double, "
    "confidence double, lift double, leverage double, conviction double"
)
# The first pass returns itemsets (consequent null) and, for one-chunk segments, rules in one frame.
MINED_SCHEMA = (
    "segment string, items array<string>, freq long, consequent string, support double, confidence double, "
    "lift double, leverage double, conviction double"
)
MINED_COLUMNS = [f.split()[0] for f in MINED_SCHEMA.split(", ")]
SUBSTITUTE_SCHEMA = (
    "segment string, item_id string, substitute_item_id string, item_support double, "
    "substitute_support double, expected_together double, together long, lift double"
)
# Partial pair counts are summed by Spark: a few chunks give parallelism without tiny UDF calls.
SUBSTITUTE_CHUNKS = 8
PAIR_SCHEMA = "segment string, item_a string, item_b string, together long"


@dataclass(frozen=True)
class MiningSettings:
    min_support: float  # a fraction of baskets below 1, an absolute basket count from 1 up
    max_len: int
    max_itemsets: int
    chunk_baskets: int
    min_segment_baskets: int
    min_count_floor: int

    def min_count(self, n_baskets: int) -> int:
        wanted = self.min_support if self.min_support >= 1 else self.min_support * n_baskets
        # Round before ceil so that 0.01 * 9835 = 98.35 (not 98.35000000000001) gives 99.
        return max(self.min_count_floor, math.ceil(round(wanted, 9)))


def build_baskets(interactions: DataFrame, per_segment: bool, include_global: bool) -> DataFrame:
    """One row per basket: segment, order_id, items (distinct item ids, sorted), n_items."""
    lines = interactions.select("segment", "order_id", "item_id")
    parts = []
    if per_segment:
        parts.append(lines)
    if include_global or not per_segment:
        parts.append(lines.withColumn("segment", F.lit(GLOBAL_SEGMENT)))
    union = parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1])
    return (
        union.groupBy("segment", "order_id")
        .agg(F.array_sort(F.collect_set("item_id")).alias("items"))
        .withColumn("n_items", F.size("items"))
    )


def segment_plan(baskets: DataFrame, settings: MiningSettings) -> pd.DataFrame:
    """Per segment: n_baskets, min_count, chunks, and why it is skipped (None when mined)."""
    plan = baskets.groupBy("segment").count().toPandas().rename(columns={"count": "n_baskets"})
    plan["min_count"] = [settings.min_count(int(n)) for n in plan.n_baskets]
    plan["chunks"] = [max(1, math.ceil(n / settings.chunk_baskets)) for n in plan.n_baskets]
    plan["skip_reason"] = [
        f"{n} baskets < baskets.min_segment_baskets={settings.min_segment_baskets}"
        if n < settings.min_segment_baskets
        else None
        for n in plan.n_baskets
    ]
    return plan.sort_values("segment").reset_index(drop=True)


@dataclass(frozen=True)
class RuleSettings:
    min_confidence: float
    min_lift: float


@dataclass(frozen=True)
class Mined:
    itemsets: DataFrame  # segment, items, freq, support
    rules: DataFrame  # RULE_SCHEMA
    cache: DataFrame | None = None  # the cached first pass both frames read from

    def unpersist(self) -> None:
        if self.cache is not None:
            self.cache.unpersist()


def mine(
    spark: SparkSession, baskets: DataFrame, plan: pd.DataFrame, settings: MiningSettings, rules: RuleSettings
) -> Mined:
    """Exact frequent itemsets and association rules of every mined segment in ``plan``.

    The first pass is run and cached here; a ceiling error inside it is raised as the kernel's
    ItemsetCeilingError. The returned frames are lazy over that cache.
    """
    mined = plan[plan.skip_reason.isna()]
    if mined.empty:
        return Mined(
            spark.createDataFrame([], ITEMSET_SCHEMA + ", support double"),
            spark.createDataFrame([], RULE_SCHEMA),
        )
    stats = spark.createDataFrame(mined[["segment", "n_baskets", "min_count", "chunks"]])
    chunked = (
        baskets.join(F.broadcast(stats), "segment")
        .withColumn("chunk", F.pmod(F.xxhash64("order_id"), F.col("chunks")).cast("int"))
        .select("segment", "chunk", "items", "n_baskets", "min_count")
    )
    found = (
        chunked.groupBy("segment", "chunk")
        .applyInPandas(_mine_chunk(settings.max_len, settings.max_itemsets, rules), MINED_SCHEMA)
        .persist()
    )
    materialize(found)
    is_rule = F.col("consequent").isNotNull()
    itemsets = found.where(~is_rule).select("segment", "items", "freq")
    rule_rows = found.where(is_rule).select(
        "segment",
        F.col("items").alias("antecedent"),
        F.array("consequent").alias("consequent"),
        "support",
        "confidence",
        "lift",
        "leverage",
        "conviction",
    )
    split = list(mined.segment[mined.chunks > 1])
    if split:
        exact = _count_candidates(chunked, itemsets, stats, split)
        itemsets = itemsets.where(~F.col("segment").isin(split)).unionByName(exact)
        sizes = stats.select("segment", "n_baskets")
        rule_rows = rule_rows.unionByName(
            exact.join(F.broadcast(sizes), "segment")
            .groupBy("segment")
            .applyInPandas(_rules_of_segment(rules), RULE_SCHEMA)
        )
    sizes = F.broadcast(stats.select("segment", "n_baskets"))
    itemsets = itemsets.join(sizes, "segment").select(
        "segment", "items", F.col("freq").cast("long"), (F.col("freq") / F.col("n_baskets")).alias("support")
    )
    return Mined(itemsets, rule_rows, found)


def _count_candidates(chunked: DataFrame, found: DataFrame, stats: DataFrame, split: list[str]) -> DataFrame:
    """Pass 2 for segments mined in several chunks: count every candidate in every chunk, sum."""
    rows = found.where(F.col("segment").isin(split)).select("segment", "items").distinct().collect()
    candidates: dict[str, list[list[str]]] = {}
    for row in rows:
        candidates.setdefault(row.segment, []).append(list(row.items))
    return (
        chunked.where(F.col("segment").isin(split))
        .groupBy("segment", "chunk")
        .applyInPandas(_count_chunk(candidates), ITEMSET_SCHEMA)
        .groupBy("segment", "items")
        .agg(F.sum("freq").alias("freq"))
        .join(F.broadcast(stats.select("segment", "min_count")), "segment")
        .where(F.col("freq") >= F.col("min_count"))
        .select("segment", "items", "freq")
    )


def materialize(frame: DataFrame) -> int:
    """Count ``frame``; a ceiling error inside a mining UDF is raised as the kernel's own error."""
    with udf_errors(kernel.ItemsetCeilingError):
        return frame.count()


def single_item_rules(rules: DataFrame, antecedent_as: str, consequent_as: str) -> DataFrame:
    """The rules with one item on each side: segment, the two items under the given names,
    support, confidence, lift."""
    return rules.where(F.size("antecedent") == 1).select(
        "segment",
        F.col("antecedent")[0].alias(antecedent_as),
        F.col("consequent")[0].alias(consequent_as),
        "support",
        "confidence",
        "lift",
    )


def frequently_bought_together(rules: DataFrame, top_n: int) -> DataFrame:
    """For each item, its top-N add-ons: single-item rules ranked by confidence, lift, then id."""
    pairs = single_item_rules(rules, "item_id", "addon_item_id")
    order = Window.partitionBy("segment", "item_id").orderBy(
        F.desc("confidence"), F.desc("lift"), F.asc("addon_item_id")
    )
    return pairs.withColumn("rank", F.row_number().over(order)).where(F.col("rank") <= top_n)


def substitutes(
    baskets: DataFrame,
    plan: pd.DataFrame,
    min_item_support: float,
    max_lift: float,
    min_expected: float,
    spark: SparkSession,
) -> DataFrame:
    """Pairs of popular items bought together far less than chance predicts (lift < max_lift).

    Both sides need support >= min_item_support, and the pair an expected co-count of at least
    min_expected, so that "rarely together" is not just "rarely bought". Both directions are kept.
    """
    mined = plan[plan.skip_reason.isna()]
    if mined.empty:
        return spark.createDataFrame([], SUBSTITUTE_SCHEMA)
    sizes = spark.createDataFrame(mined[["segment", "n_baskets"]])
    exploded = baskets.join(F.broadcast(sizes), "segment").select(
        "segment", "order_id", "n_baskets", F.explode("items").alias("item")
    )
    popular = (
        exploded.groupBy("segment", "item")
        .agg(F.count("*").alias("n_item"), F.first("n_baskets").alias("n_baskets"))
        .where(F.col("n_item") >= F.col("n_baskets") * min_item_support)
    ).persist()
    together = _popular_pair_counts(exploded, popular)
    a, b = popular.alias("a"), popular.alias("b")
    pairs = (
        a.join(b, (F.col("a.segment") == F.col("b.segment")) & (F.col("a.item") != F.col("b.item")))
        .select(
            F.col("a.segment").alias("segment"),
            F.col("a.item").alias("item_id"),
            F.col("b.item").alias("substitute_item_id"),
            (F.col("a.n_item") / F.col("a.n_baskets")).alias("item_support"),
            (F.col("b.n_item") / F.col("b.n_baskets")).alias("substitute_support"),
            (F.col("a.n_item") * F.col("b.n_item") / F.col("a.n_baskets")).alias("expected_together"),
        )
        .where(F.col("expected_together") >= min_expected)
    )
    keyed = together.select("segment", F.col("item_a").alias("lo"), F.col("item_b").alias("hi"), "together")
    joined = pairs.join(
        keyed,
        (pairs.segment == keyed.segment)
        & (F.least(pairs.item_id, pairs.substitute_item_id) == keyed.lo)
        & (F.greatest(pairs.item_id, pairs.substitute_item_id) == keyed.hi),
        "left",
    ).drop(keyed.segment, "lo", "hi")
    return (
        joined.withColumn("together", F.coalesce("together", F.lit(0)).cast("long"))
        .withColumn("lift", F.col("together") / F.col("expected_together"))
        .where(F.col("lift") < max_lift)
    )


def _popular_pair_counts(exploded: DataFrame, popular: DataFrame) -> DataFrame:
    """Per segment and pair of popular items (item_a < item_b): the baskets holding both."""
    return (
        exploded.join(F.broadcast(popular.select("segment", "item")), ["segment", "item"])
        .groupBy("segment", "order_id")
        .agg(F.collect_list("item").alias("items"))
        .where(F.size("items") >= 2)
        .withColumn("chunk", F.pmod(F.xxhash64("order_id"), F.lit(SUBSTITUTE_CHUNKS)))
        .groupBy("segment", "chunk")
        .applyInPandas(_pair_counts, PAIR_SCHEMA)
        .groupBy("segment", "item_a", "item_b")
        .agg(F.sum("together").alias("together"))
    )


def _mine_chunk(
    max_len: int, max_itemsets: int, rules: RuleSettings
) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def mine_chunk(frame: pd.DataFrame) -> pd.DataFrame:
        segment = frame.segment.iloc[0]
        n_chunk, n_segment, min_count = len(frame), int(frame.n_baskets.iloc[0]), int(frame.min_count.iloc[0])
        # SON: a globally frequent itemset reaches this share of min_count in at least one chunk.
        local_min = max(1, math.ceil(min_count * n_chunk / n_segment))
        matrix, names = _matrix(frame["items"])
        try:
            found, counts = kernel.frequent_itemsets(matrix, local_min, max_len, max_itemsets)
        except kernel.ItemsetCeilingError as exc:
            raise kernel.ItemsetCeilingError(f"segment {segment!r}: {exc}") from None
        itemsets = pd.DataFrame(
            {"segment": segment, "items": _lists([sorted(names[list(s)]) for s in found]), "freq": counts}
        )
        if n_chunk < n_segment:
            return itemsets.reindex(columns=MINED_COLUMNS)  # candidates only: rules come after pass 2
        rule_frame = _rules_frame(segment, dict(zip(found, counts, strict=True)), names, n_segment, rules)
        return pd.concat([itemsets, rule_frame.rename(columns={"antecedent": "items"})]).reindex(
            columns=MINED_COLUMNS
        )

    return mine_chunk


def _rules_of_segment(rules: RuleSettings) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def rules_of_segment(frame: pd.DataFrame) -> pd.DataFrame:
        itemsets, names = _encode(frame["items"])
        keys = [tuple(sorted(int(i) for i in codes)) for codes in itemsets]
        counts = dict(zip(keys, frame.freq.astype(int), strict=True))
        found = _rules_frame(frame.segment.iloc[0], counts, names, int(frame.n_baskets.iloc[0]), rules)
        return found.assign(consequent=_lists([[c] for c in found.consequent])).drop(columns="freq")

    return rules_of_segment


def _rules_frame(
    segment: str,
    counts: dict[tuple[int, ...], int],
    names: np.ndarray,
    n_baskets: int,
    settings: RuleSettings,
) -> pd.DataFrame:
    rules = kernel.association_rules(counts, n_baskets, settings.min_confidence, settings.min_lift)
    return pd.DataFrame(
        {
            "segment": segment,
            "antecedent": _lists([sorted(names[list(r.antecedent)]) for r in rules]),
            "consequent": [names[r.consequent] for r in rules],
            "freq": [round(r.support * n_baskets) for r in rules],
            "support": [r.support for r in rules],
            "confidence": [r.confidence for r in rules],
            "lift": [r.lift for r in rules],
            "leverage": [r.leverage for r in rules],
            "conviction": [r.conviction for r in rules],
        },
        columns=["segment", "antecedent", *MINED_COLUMNS[2:]],
    )


def _count_chunk(candidates: dict[str, list[list[str]]]) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def count(frame: pd.DataFrame) -> pd.DataFrame:
        segment = frame.segment.iloc[0]
        matrix, names = _matrix(frame["items"])
        index = {name: i for i, name in enumerate(names)}
        present = [c for c in candidates.get(segment, []) if all(i in index for i in c)]
        counts = kernel.count_itemsets(matrix, [[index[i] for i in c] for c in present])
        return pd.DataFrame({"segment": segment, "items": _lists(present), "freq": counts})

    return count


def _pair_counts(frame: pd.DataFrame) -> pd.DataFrame:
    matrix, names = _matrix(frame["items"])
    order = np.argsort(names)
    counts = kernel.pair_counts(matrix[:, order])
    names = names[order]
    lo, hi = np.triu_indices(len(names), k=1)
    keep = counts[lo, hi] > 0
    return pd.DataFrame(
        {
            "segment": frame.segment.iloc[0],
            "item_a": names[lo[keep]],
            "item_b": names[hi[keep]],
            "together": counts[lo, hi][keep],
        }
    )


def _lists(values: list[list[str]]) -> pd.Series:
    """A column of lists for Arrow: pandas makes an empty list column float64, which Arrow cannot
    convert to array<string>, so a chunk or segment that finds nothing would fail the job."""
    return pd.Series(values, dtype=object)


def _encode(items: pd.Series) -> tuple[list[np.ndarray], np.ndarray]:
    """Each row's string ids as integer codes, and the name of each code."""
    flat = np.concatenate(items.to_numpy()) if len(items) else np.array([], dtype=object)
    codes, names = pd.factorize(flat)
    split = np.cumsum([len(i) for i in items])[:-1]
    return np.split(codes, split), np.asarray(names, dtype=object)


def _matrix(items: pd.Series) -> tuple[sp.csr_matrix, np.ndarray]:
    """Baskets of string ids as a binary matrix, and the item name of each column."""
    baskets, names = _encode(items)
    return kernel.basket_matrix(baskets, len(names)), names


def mine_rules(
    spark: SparkSession, interactions: DataFrame, settings: MiningSettings, conf: BasketsConfig
) -> Mined:
    """Itemsets and rules of ``interactions`` (e.g. an evaluation's train part) mined as the
    baskets step mines silver, without writing anything; call ``unpersist`` when done."""
    baskets = build_baskets(interactions, conf.per_segment, conf.include_global)
    kept = baskets.where(F.col("n_items") <= conf.max_basket_items)
    plan = segment_plan(kept, settings)
    return mine(spark, kept, plan, settings, RuleSettings(conf.min_confidence, conf.min_lift))
