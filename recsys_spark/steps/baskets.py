"""The `baskets` step: silver.interactions -> frequent itemsets, rules, add-ons and substitutes.

Also ``recommend_for_cart``: add-ons for a shopping cart from the published rules.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import Config
from recsys_spark.config.params import mining_settings
from recsys_spark.distributed import baskets as mining
from recsys_spark.io.tables import overwrite_table, run_stamp, table_name
from recsys_spark.kernels.routing import GLOBAL_SEGMENT
from recsys_spark.progress import stage
from recsys_spark.tracking.runs import PipelineRun, StepReport

log = logging.getLogger(__name__)


@dataclass
class BasketsResult:
    baskets: int
    oversized: int
    skipped_segments: dict[str, str] = field(default_factory=dict)
    skipped_baskets: int = 0
    mined_segments: int = 0
    itemsets: int = 0
    rules: int = 0
    addons: int = 0
    substitutes: int = 0

    @property
    def mined_baskets(self) -> int:
        return self.baskets - self.oversized - self.skipped_baskets


def run_baskets(spark: SparkSession, config: Config, run_id: str) -> BasketsResult:
    """Mine every segment's baskets and publish the four gold tables (each replaced in one commit)."""
    conf = config.baskets
    settings = mining_settings(conf)
    stamp = run_stamp(run_id, "generated_at")
    baskets, kept, result = _baskets(spark, config, stamp)
    with stage("baskets", "plan segments") as st:
        plan = mining.segment_plan(kept, settings)
        _count_plan(plan, conf.min_segment_baskets, result, st.counts)
    with stage("baskets", "frequent itemsets and rules") as st:
        rule_settings = mining.RuleSettings(conf.min_confidence, conf.min_lift)
        mined = mining.mine(spark, kept, plan, settings, rule_settings)
        itemsets, rules = mined.itemsets.persist(), mined.rules.persist()
        result.itemsets, result.rules = itemsets.count(), rules.count()
        st.counts.update(baskets_in=result.mined_baskets, itemsets=result.itemsets, rules=result.rules)
    # Add-ons and substitutes are made as they are written: their counts are the commits'.
    with stage("baskets", "add-ons, substitutes and publish") as st:
        subs = conf.substitutes
        outputs = {
            "frequent_itemsets": itemsets.withColumn("size", F.size("items")),
            "association_rules": rules,
            "frequently_bought_together": mining.frequently_bought_together(rules, conf.top_n).select(
                "segment", "item_id", "rank", "addon_item_id", "support", "confidence", "lift"
            ),
            "substitutes": mining.substitutes(
                kept, plan, subs.min_item_support, subs.max_lift, subs.min_expected, spark
            ),
        }
        written = {
            key: overwrite_table(spark, config, table_name(config, key), frame.withColumns(stamp))
            for key, frame in outputs.items()
        }
        result.addons, result.substitutes = written["frequently_bought_together"], written["substitutes"]
        st.counts.update(tables=len(outputs), addons=result.addons, substitutes=result.substitutes)
    for frame in (baskets, itemsets, rules):
        frame.unpersist()
    mined.unpersist()
    return result


def _baskets(
    spark: SparkSession, config: Config, stamp: dict[str, Column]
) -> tuple[DataFrame, DataFrame, BasketsResult]:
    """(every basket, persisted; those within the size cap; the counts so far). Baskets over
    the cap go to silver.baskets_quarantine."""
    conf = config.baskets
    with stage("baskets", "build baskets") as st:
        interactions = spark.table(str(table_name(config, "interactions")))
        baskets = mining.build_baskets(interactions, conf.per_segment, conf.include_global).persist()
        total = baskets.count()
        oversized = baskets.where(F.col("n_items") > conf.max_basket_items)
        n_oversized = overwrite_table(
            spark,
            config,
            table_name(config, "baskets_quarantine"),
            oversized.select(
                "segment",
                "order_id",
                "n_items",
                F.lit(f"more than baskets.max_basket_items={conf.max_basket_items} items").alias("reason"),
            ).withColumns(stamp),
        )
        kept = baskets.where(F.col("n_items") <= conf.max_basket_items)
        st.counts.update(lines=interactions.count(), baskets=total, oversized=n_oversized)
    return baskets, kept, BasketsResult(total, n_oversized)


def _count_plan(plan: pd.DataFrame, min_baskets: int, result: BasketsResult, counts: dict) -> None:
    skipped = plan[plan.skip_reason.notna()]
    result.skipped_segments = dict(zip(skipped.segment, skipped.skip_reason, strict=True))
    result.skipped_baskets = int(skipped.n_baskets.sum())
    result.mined_segments = len(plan) - len(skipped)
    if len(skipped):
        listed = ", ".join(f"{seg} ({n})" for seg, n in zip(skipped.segment, skipped.n_baskets, strict=True))
        log.info(
            "baskets: %d segments skipped, fewer than baskets.min_segment_baskets=%d baskets: %s",
            len(skipped),
            min_baskets,
            listed,
        )
    counts.update(
        segments=len(plan),
        mined=result.mined_segments,
        skipped=len(skipped),
        skipped_baskets=result.skipped_baskets,
        chunks=int(plan.chunks.sum()),
    )


@dataclass(frozen=True)
class CartSuggestion:
    item_id: str
    confidence: float
    lift: float
    because_of: list[str]


def recommend_for_cart(
    spark: SparkSession,
    config: Config,
    cart_items: Sequence[str],
    segment: str = GLOBAL_SEGMENT,
    n: int = 10,
) -> list[CartSuggestion]:
    """Add-ons for a cart: rules whose whole antecedent is in the cart and whose consequent is not,
    best confidence per add-on, ranked by confidence, then lift, then item id.

    The same query in SQL is in docs/baskets.md.
    """
    cart = F.array(*(F.lit(str(i)) for i in cart_items)) if cart_items else F.array().cast("array<string>")
    rules = spark.table(str(table_name(config, "association_rules")))
    matching = rules.where(
        (F.col("segment") == segment)
        & (F.size(F.array_except("antecedent", cart)) == 0)
        & ~F.arrays_overlap("consequent", cart)
    )
    best = (
        matching.groupBy(F.col("consequent")[0].alias("item_id"))
        .agg(
            F.max_by(F.struct("confidence", "lift", "antecedent"), F.struct("confidence", "lift")).alias(
                "best"
            )
        )
        .orderBy(F.desc("best.confidence"), F.desc("best.lift"), "item_id")
        .limit(n)
    )
    return [
        CartSuggestion(r.item_id, r.best.confidence, r.best.lift, list(r.best.antecedent))
        for r in best.collect()
    ]


def step(spark: SparkSession, config: Config, run: PipelineRun) -> StepReport:
    result = run_baskets(spark, config, run.run_id)
    metrics = {k: v for k, v in vars(result).items() if isinstance(v, int)}
    lines = [
        f"baskets: {result.baskets:,} baskets = {result.mined_baskets:,} mined + {result.oversized:,} "
        f"oversized (> {config.baskets.max_basket_items} items) + {result.skipped_baskets:,} in "
        f"{len(result.skipped_segments)} skipped small segments",
        f"  {result.mined_segments} segments mined at min_support {config.baskets.min_support}: "
        f"{result.itemsets:,} frequent itemsets, {result.rules:,} rules, {result.addons:,} add-on rows, "
        f"{result.substitutes:,} substitute pairs",
    ]
    return StepReport(metrics, lines)
