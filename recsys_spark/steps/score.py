"""The `score` step: the trained model tables -> gold.recommendations (every customer, through
cold-start routing, the published model or the hybrid, and the business rules),
gold.similar_items, gold.item_audience and gold.lookalikes, each replaced in one commit."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import Config
from recsys_spark.config.params import business_rules, train_settings
from recsys_spark.distributed import lists
from recsys_spark.distributed.errors import udf_errors
from recsys_spark.distributed.scoring import ScoringError
from recsys_spark.distributed.training import Fitted
from recsys_spark.io.model_tables import (
    association_rules,
    blocked_items,
    fitted_from_tables,
    published_model,
    trained_settings,
    tuned_config,
    tuned_values,
)
from recsys_spark.io.tables import overwrite_table, run_stamp, table_name
from recsys_spark.kernels import routing
from recsys_spark.kernels.candidates import POPULAR_OVERALL
from recsys_spark.kernels.factors import EMBEDDING_MODELS
from recsys_spark.kernels.lists import ListMaker, ListSpec
from recsys_spark.progress import stage
from recsys_spark.serving.settings import serving_settings, serving_sources
from recsys_spark.tracking.runs import PipelineRun, StepReport

log = logging.getLogger(__name__)

# What `score` publishes; a caller may ask for fewer (e.g. the benchmark, recommendations only).
SCORE_OUTPUTS = ("recommendations", "similar_items", "item_audience")


@dataclass
class ScoreResult:
    customers: int
    rows: dict[str, int] = field(default_factory=dict)  # per output table
    published_customers: int = 0  # got the published model's top-N
    fallback_customers: int = 0  # got overall popularity
    model: str = ""  # the published model
    why: str = ""  # why it was published
    routes: dict[str, int] = field(default_factory=dict)  # customers per cold-start route
    by_model: dict[str, int] = field(default_factory=dict)  # customers per model that filled the list
    topped_up: int = 0  # customers whose model list was topped up from the best sellers
    seconds: dict[str, float] = field(default_factory=dict)  # per stage


@dataclass
class Inputs:
    """What every output of the step reads, once."""

    fitted: Fitted
    items: pd.DataFrame  # silver.item_factors as pandas
    blocked: set[str]
    interactions: DataFrame
    stamp: dict[str, Column]


def run_score(
    spark: SparkSession, config: Config, run_id: str, outputs: tuple[str, ...] = SCORE_OUTPUTS
) -> ScoreResult:
    """Score every customer with the published model and publish the gold tables in ``outputs``
    (``item_audience`` also writes ``lookalikes``)."""
    seconds: dict[str, float] = {}
    # The hybrid blends with the weights tuning chose.
    trained = trained_settings(spark, config)
    config = tuned_config(config, trained)
    publish, why = published_model(spark, config)
    log.info("score: publishing %s (%s)", publish, why)
    fitted = fitted_from_tables(spark, config)
    with stage("score", "load item candidates", seconds) as st:
        blocked = blocked_items(spark, config)
        items = fitted.item_factors.select("segment", "item_id", "model", "factors").toPandas()
        st.counts.update(item_rows=len(items), blocked_items=len(blocked))
    interactions = spark.table(str(table_name(config, "interactions")))
    inputs = Inputs(fitted, items, blocked, interactions, run_stamp(run_id, "generated_at"))
    with stage("score", "customer histories", seconds) as st:
        histories = lists.customer_histories(
            config.models, interactions, lists.history_kind(config.models, publish)
        ).persist()
        segment_users = dict(histories.groupBy("segment").count().collect())
        result = ScoreResult(sum(segment_users.values()), seconds=seconds, model=publish, why=why)
        result.routes = lists.route_counts(config.models, histories)
        rules = business_rules(config.business_rules, blocked)
        sources = serving_sources(config, publish)
        association = association_rules(spark, config)
        tables = lists.list_tables(
            config.models, fitted, items, interactions, association, segment_users, sources
        )
        # A blended list has no intervals: the hybrid's sources need none unless a rule drops by them.
        intervals = publish != "hybrid" or rules.min_score_low is not None
        trained_with = train_settings(config.models, tuned_values(config, trained))
        posteriors = lists.interval_settings(fitted, trained_with, interactions) if intervals else {}
        settings = serving_settings(config, publish, posteriors)
        spec = dataclasses.replace(ListSpec.of(settings), rules=rules, intervals=intervals)
        maker = ListMaker.of(tables, spec)
        customers = lists.with_vectors(histories, fitted.user_factors, sources)
        st.counts.update(customers=result.customers, business_rules="on" if rules.beyond_exclusion else "off")
    _recommendations(spark, config, inputs, customers, maker, result)
    if "similar_items" in outputs:
        _similar_items(spark, config, inputs, result)
    if "item_audience" in outputs:
        _audience(spark, config, inputs, result)
    histories.unpersist()
    return result


def _recommendations(
    spark: SparkSession,
    config: Config,
    inputs: Inputs,
    customers: DataFrame,
    maker: ListMaker,
    result: ScoreResult,
) -> None:
    with stage("score", f"recommendations ({result.model})", result.seconds) as st:
        recommendations = lists.made_lists(customers, maker.predict)
        _publish(spark, config, "recommendations", recommendations.withColumns(inputs.stamp), result)
        published = spark.table(str(table_name(config, "recommendations")))
        _count_lists(published, result)
        st.counts.update(
            customers=result.customers,
            published=result.published_customers,
            popularity_fallback=result.fallback_customers,
            routes=result.routes,
            customers_by_model=result.by_model,
            topped_up=result.topped_up,
            rows=result.rows["recommendations"],
        )


def _similar_items(spark: SparkSession, config: Config, inputs: Inputs, result: ScoreResult) -> None:
    with stage("score", "similar items", result.seconds) as st:
        similar = lists.similar_items(
            config.models, inputs.items, inputs.fitted.item_neighbours, inputs.blocked, lists.SCORING_THREADS
        )
        if similar is not None:
            _publish(spark, config, "similar_items", similar.withColumns(inputs.stamp), result)
        st.counts.update(rows=result.rows.get("similar_items", 0))


def _audience(spark: SparkSession, config: Config, inputs: Inputs, result: ScoreResult) -> None:
    """gold.item_audience and gold.lookalikes from the first factor model (published first)."""
    conf = config.models
    factor_models = [m for m in [result.model, *conf.enabled] if m in EMBEDDING_MODELS]
    if not factor_models:
        log.info(
            "score: no factor model (als, bpr, graph or content) enabled: "
            "item_audience and lookalikes not written"
        )
        return
    embedding = factor_models[0]
    with stage("score", f"item audience and lookalikes ({embedding})", result.seconds) as st:
        audience = lists.item_audience(
            spark,
            conf.score_block_rows,
            embedding,
            inputs.items,
            inputs.fitted.user_factors,
            inputs.interactions,
            conf.audience_top_k,
        )
        _publish(spark, config, "item_audience", audience.withColumns(inputs.stamp), result)
        similar_customers = lists.lookalikes(spark, conf, embedding, inputs.fitted.user_factors)
        _publish(spark, config, "lookalikes", similar_customers.withColumns(inputs.stamp), result)
        st.counts.update(audience=result.rows["item_audience"], lookalikes=result.rows["lookalikes"])


def _publish(spark: SparkSession, config: Config, key: str, frame: DataFrame, result: ScoreResult) -> None:
    name = table_name(config, key)
    with udf_errors(ScoringError):
        result.rows[key] = overwrite_table(spark, config, name, frame)


def _count_lists(published: DataFrame, result: ScoreResult) -> None:
    """Customers by where their list came from, each counted once by its first row (later rows
    may be a top-up), and how many model lists were topped up from the best sellers."""
    keys = ["segment", "customer_id"]
    first = published.where(F.col("rank") == 1)
    fallback = (F.col("reason") == POPULAR_OVERALL).alias("fallback")
    per_source = first.groupBy("model", fallback).count().collect()  # one job for both counts
    result.fallback_customers = sum(r["count"] for r in per_source if r.fallback is True)
    result.published_customers = sum(r["count"] for r in per_source if r.fallback is False)
    per_model: Counter[str] = Counter()
    for r in per_source:
        per_model[r.model] += r["count"]
    result.by_model = dict(sorted(per_model.items()))
    topped = published.where((F.col("rank") > 1) & (F.col("model") == "popularity")).select(*keys)
    by_model = first.where(F.col("model") != "popularity").select(*keys)
    result.topped_up = topped.distinct().join(by_model, keys, "left_semi").count()


def step(spark: SparkSession, config: Config, run: PipelineRun) -> StepReport:
    result = run_score(spark, config, run.run_id)
    metrics = {
        "customers": result.customers,
        "published_customers": result.published_customers,
        "popularity_fallback_customers": result.fallback_customers,
        "topped_up_customers": result.topped_up,
        **{f"rows.{k}": v for k, v in result.rows.items()},
        **{f"route.{k}": v for k, v in result.routes.items()},
    }
    routed = {
        routing.CHAMPION: result.model,
        routing.SHORT_HISTORY: "hybrid",
        routing.POPULARITY: "popularity",
    }
    routes = ", ".join(f"{n:,} {route} ({routed.get(route, '?')})" for route, n in result.routes.items())
    filled = ", ".join(f"{model} {n:,}" for model, n in result.by_model.items())
    nothing = result.customers - result.published_customers - result.fallback_customers
    lines = [
        f"score: {result.customers:,} customers (per segment) = {result.published_customers:,} by their "
        f"route's model + {result.fallback_customers:,} overall popularity (untrained segments) "
        f"+ {nothing:,} with nothing left to recommend; top {config.models.top_n} each",
        f"  by route: {routes}; lists filled by: {filled}; topped up from best sellers: {result.topped_up:,}",
        "  " + ", ".join(f"{k} {v:,}" for k, v in result.rows.items()),
    ]
    return StepReport(metrics, lines)
