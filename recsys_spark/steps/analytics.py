"""The `analytics` step: item and customer dimensions, merchandiser tables and the analyst views.

Reads silver.interactions, the trained factors and gold.association_rules; writes gold.items,
gold.customers, gold.category_saturation, gold.cross_sell_potential, gold.rules_graph_edges and
gold.rules_graph_nodes (each replaced in one commit), then (re)creates the views of views.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import Config
from recsys_spark.distributed import analytics as A
from recsys_spark.distributed.errors import udf_errors
from recsys_spark.distributed.lists import item_audience
from recsys_spark.io.model_tables import fitted_from_tables, published_model
from recsys_spark.io.tables import overwrite_table, run_stamp, table_name
from recsys_spark.io.views import create_views
from recsys_spark.kernels.factors import FACTOR_MODELS
from recsys_spark.progress import stage
from recsys_spark.tracking.runs import PipelineRun, StepReport

log = logging.getLogger(__name__)


@dataclass
class AnalyticsResult:
    rows: dict[str, int] = field(default_factory=dict)
    views: list[str] = field(default_factory=list)
    cross_sell_items: list[str] = field(default_factory=list)
    cross_sell_model: str | None = None
    skipped: dict[str, str] = field(default_factory=dict)  # output -> why it was not written


def run_analytics(spark: SparkSession, config: Config, run_id: str) -> AnalyticsResult:
    """Build and publish the analytics tables, then the views."""
    conf = config.analytics
    result = AnalyticsResult()
    stamp = run_stamp(run_id, "generated_at")
    interactions = spark.table(str(table_name(config, "interactions")))

    def publish(key: str, frame: DataFrame) -> None:
        name = table_name(config, key)
        with udf_errors(ValueError):
            result.rows[key] = overwrite_table(spark, config, name, frame.withColumns(stamp))

    with stage("analytics", "item and customer dimensions") as st:
        publish("items", A.items(interactions))
        publish("customers", A.customers(interactions, conf.active_days, conf.lapsed_days))
        for key, column in (("items", "item_id"), ("customers", "customer_id")):
            in_silver = interactions.select(column).distinct().count()
            if result.rows[key] != in_silver:
                raise AssertionError(
                    f"analytics lost rows: {key} has {result.rows[key]:,} rows, "
                    f"but silver has {in_silver:,} distinct ids"
                )
        st.counts.update(items=result.rows["items"], customers=result.rows["customers"])

    with stage("analytics", "category saturation") as st:
        categories = spark.table(str(table_name(config, "items"))).select("item_id", "category")
        missing = _saturation_input_missing(interactions, categories)
        if missing:
            result.skipped["category_saturation"] = missing
        else:
            publish("category_saturation", A.category_saturation(interactions, categories))
        st.counts.update(rows=result.rows.get("category_saturation", 0))

    with stage("analytics", "cross-sell potential") as st:
        _cross_sell(spark, config, interactions, result, publish)
        st.counts.update(items=len(result.cross_sell_items), rows=result.rows.get("cross_sell_potential", 0))

    with stage("analytics", "rules graph") as st:
        _rules_graph(spark, config, result, publish)
        st.counts.update(
            edges=result.rows.get("rules_graph_edges", 0), nodes=result.rows.get("rules_graph_nodes", 0)
        )

    with stage("analytics", "analyst views") as st:
        result.views = [str(v) for v in create_views(spark, config)]
        st.counts.update(views=len(result.views))
    for output, why in result.skipped.items():
        log.warning("analytics: %s not written: %s", output, why)
    return result


def _saturation_input_missing(interactions: DataFrame, categories: DataFrame) -> str | None:
    """Why category saturation cannot be measured on this input, or None."""
    if not A.has_categories(categories):
        return (
            "no item has a category (map input.columns.category, or set "
            "input.category_from_description for retail descriptions)"
        )
    if interactions.where(F.col("revenue").isNotNull()).limit(1).count() == 0:
        return "the input has no prices (input.columns.unit_price is null), so no spend to share"
    return None


def _rules_graph(spark: SparkSession, config: Config, result: AnalyticsResult, publish) -> None:
    """gold.rules_graph_edges and gold.rules_graph_nodes from the association rules."""
    conf = config.analytics
    rules_name = table_name(config, "association_rules")
    if not spark.catalog.tableExists(str(rules_name)):
        result.skipped["rules_graph"] = f"{rules_name} does not exist: run `recsys baskets` first"
        return
    rules = spark.table(str(rules_name))
    edges, nodes = A.rules_graph(rules, conf.rules_graph_segment, conf.pagerank_damping)
    publish("rules_graph_edges", edges)
    publish("rules_graph_nodes", nodes)
    if result.rows["rules_graph_edges"] == 0:
        log.warning(
            "analytics: no single-item rules in segment %r (analytics.rules_graph_segment)",
            conf.rules_graph_segment,
        )


def _cross_sell(
    spark: SparkSession, config: Config, interactions: DataFrame, result: AnalyticsResult, publish
) -> None:
    """Customers with the highest predicted affinity for the target items, among non-buyers,
    scored with the published factor model (or the first enabled one)."""
    conf = config.analytics
    targets = conf.cross_sell_items or A.top_sellers(interactions, conf.cross_sell_top_sellers)
    result.cross_sell_items = targets
    publish_model, _ = published_model(spark, config)
    factor_models = [m for m in [publish_model, *config.models.enabled] if m in FACTOR_MODELS]
    if not factor_models:
        result.skipped["cross_sell_potential"] = (
            "no factor model (als, bpr, graph or content) in models.enabled"
        )
        return
    model = result.cross_sell_model = factor_models[0]
    fitted = fitted_from_tables(spark, config)
    items = fitted.item_factors.where((F.col("model") == model) & F.col("item_id").isin(targets))
    items_pd = items.select("segment", "item_id", "model", "factors").toPandas()
    unknown = sorted(set(targets) - set(items_pd.item_id))
    if unknown:
        log.warning(
            "analytics: %d cross-sell item(s) have no %s factors in any segment (never sold there, "
            "or segment not trained): %s",
            len(unknown),
            model,
            ", ".join(unknown[:20]),
        )
    audience = item_audience(
        spark,
        config.models.score_block_rows,
        model,
        items_pd,
        fitted.user_factors,
        interactions,
        conf.cross_sell_customers,
        targets,
    )
    publish("cross_sell_potential", audience)


def step(spark: SparkSession, config: Config, run: PipelineRun) -> StepReport:
    result = run_analytics(spark, config, run.run_id)
    metrics: dict[str, float] = {f"rows.{k}": v for k, v in result.rows.items()}
    metrics["views"] = len(result.views)
    lines = [
        "analytics: " + ", ".join(f"{k} {v:,}" for k, v in result.rows.items()),
        "  check: items and customers = the distinct item and customer ids in silver",
        f"  cross-sell: {len(result.cross_sell_items)} target items scored with {result.cross_sell_model}"
        if result.cross_sell_model
        else "  cross-sell: not written",
        *(f"  {output} not written: {why}" for output, why in result.skipped.items()),
        f"  views: {', '.join(result.views) or 'none'}",
    ]
    return StepReport(metrics, lines)
