"""What exported customers bought after their export, reduced to per-arm sums.

Each exported customer (gold.exported_lists) is followed through each outcome window: the
purchases in (as_of, as_of + window] of silver.interactions, whatever segment they were bought
in. Per customer and window: bought anything, bought a shown item, the share of the shown items
bought, revenue from shown items and in total. The arms are then reduced to customers, sums and
sums of squares, the sufficient statistics ``kernels.uplift`` compares them by.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recsys_spark.kernels.uplift import OUTCOMES

EXPORT = ["recommendations_run_id", "customer_id"]  # one customer once per export
ARMS = ["recommendations_run_id", "window_days", "segment", "variant"]


def customer_outcomes(shown: DataFrame, purchases: DataFrame, windows: Sequence[int]) -> DataFrame:
    """Per exported customer × window: ``ARMS`` columns, customer_id and one column per outcome
    in ``kernels.uplift.OUTCOMES`` (revenue sums are 0 where a customer bought nothing).

    ``shown``: recommendations_run_id, as_of, segment, customer_id, variant, items;
    ``purchases``: customer_id, item_id, event_ts, revenue.
    """
    days = F.explode(F.array(*(F.lit(d) for d in windows))).alias("window_days")
    exposed = shown.select(*EXPORT, "as_of", "segment", "variant", "items", days)
    exposed = exposed.withColumn("window_end", F.timestamp_add("DAY", F.col("window_days"), F.col("as_of")))
    bought = purchases.select("customer_id", "item_id", "event_ts", "revenue")
    in_window = (bought.event_ts > exposed.as_of) & (bought.event_ts <= exposed.window_end)
    joined = exposed.join(bought, (exposed.customer_id == bought.customer_id) & in_window)
    was_shown = F.array_contains(exposed["items"], bought.item_id)
    after = joined.groupBy(exposed.recommendations_run_id, exposed.customer_id, "window_days").agg(
        F.count(F.lit(1)).alias("lines"),
        F.count_distinct(F.when(was_shown, bought.item_id)).alias("shown_bought"),
        F.sum(F.when(was_shown, bought.revenue)).alias("shown_revenue"),
        F.sum(bought.revenue).alias("revenue"),
    )
    outcome = exposed.join(after, [*EXPORT, "window_days"], "left")
    listed = F.size("items")
    shown_bought = F.coalesce(F.col("shown_bought"), F.lit(0))
    return outcome.select(
        *ARMS,
        "customer_id",
        (shown_bought > 0).cast("double").alias("conversion"),
        F.col("lines").isNotNull().cast("double").alias("buyer_rate"),
        F.when(listed > 0, shown_bought / listed).otherwise(0.0).alias("hit_rate"),
        F.coalesce(F.col("shown_revenue"), F.lit(0.0)).alias("shown_revenue"),
        F.coalesce(F.col("revenue"), F.lit(0.0)).alias("revenue"),
    )


def arm_statistics(outcomes: DataFrame, metrics: Sequence[str] = tuple(OUTCOMES)) -> DataFrame:
    """Per ``ARMS``: customers and, per metric, ``<metric>_total`` and ``<metric>_squares``."""
    sums: list[Column] = []
    for metric in metrics:
        value = F.col(metric).cast("double")
        sums += [F.sum(value).alias(f"{metric}_total"), F.sum(value * value).alias(f"{metric}_squares")]
    return outcomes.groupBy(*ARMS).agg(F.count(F.lit(1)).alias("customers"), *sums)
