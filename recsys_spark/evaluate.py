"""The `evaluate` step: train on the past, score the future, and choose what to publish.

Every enabled model and both popularity baselines are trained on the split's train part (in
memory, the silver tables are untouched) and scored for the test customers; metrics land in
gold.model_metrics (each beside the named baseline's value), and the guardrail's choice in
gold.published_model, which `recsys score` reads when ``models.publish`` is ``champion``.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from functools import reduce

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark import evaluation as ev
from recsys_spark.baskets import mine_rules
from recsys_spark.config import Config, EvaluationConfig
from recsys_spark.kernels.rerank import Rules
from recsys_spark.models import (
    TrainResult,
    blocked_items,
    business_rules,
    customer_histories,
    fit_models,
    hybrid_candidates,
    hybrid_uses_rules,
    list_context,
    published_lists,
)
from recsys_spark.progress import stage
from recsys_spark.tables import overwrite_table, table_name, utc_now

log = logging.getLogger(__name__)

BASELINES = ("popularity", "popularity_global")
# Business-rule variants are evaluated as "<model>+<rule>": reported, never chosen by the guardrail
# (the rules apply to whatever is published).
VARIANT_MARK = "+"
LIST_METRICS = ("coverage", "novelty", "popularity_bias", "diversity")


@dataclass(frozen=True)
class Decision:
    model: str
    reason: str
    value: float  # the primary metric of the published model
    baseline_value: float


@dataclass
class EvaluateResult:
    split: str
    cutoff: dt.datetime | None
    train_lines: int = 0
    test_customers: int = 0
    test_pairs: int = 0
    cold_start_customers: int = 0
    cold_start_pairs: int = 0  # test pairs whose item nobody bought before the cutoff
    overall: pd.DataFrame = field(default_factory=pd.DataFrame)  # model × k: every metric
    decision: Decision | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def make_split(interactions: DataFrame, conf: EvaluationConfig) -> ev.Split:
    if conf.split == "last_basket":
        return ev.leave_last_basket_out(interactions)
    if conf.split == "date":
        if conf.cutoff_date is None:
            raise ValueError("evaluation.split is date but evaluation.cutoff_date is not set (YYYY-MM-DD)")
        return ev.time_split(interactions, cutoff_date=dt.datetime.fromisoformat(conf.cutoff_date))
    if conf.split == "last_days":
        if conf.last_days is None:
            raise ValueError("evaluation.split is last_days but evaluation.last_days is not set")
        return ev.time_split(interactions, last_days=conf.last_days)
    return ev.time_split(interactions, cutoff_quantile=conf.cutoff_quantile)


def choose(overall: pd.DataFrame, conf: EvaluationConfig) -> Decision:
    """The guardrail: the best model on the primary metric at primary_k among those that beat the
    baseline and reach ``min_coverage``; the baseline itself when none does."""
    at_k = overall[overall.k == conf.primary_k].set_index("model")
    metric, k, baseline = conf.primary_metric, conf.primary_k, conf.baseline
    if baseline not in at_k.index:
        raise ValueError(f"the baseline {baseline} was not evaluated at k={k}")
    base = float(at_k.loc[baseline, metric])
    passing, failing = [], []
    for model in [m for m in at_k.index if m not in BASELINES and VARIANT_MARK not in m]:
        value, coverage = float(at_k.loc[model, metric]), float(at_k.loc[model, "coverage"])
        if value <= base:
            failing.append(f"{model}: {metric}@{k} {value:.4f} does not beat {baseline} {base:.4f}")
        elif coverage < conf.min_coverage:
            failing.append(
                f"{model}: coverage {coverage:.3f} below evaluation.min_coverage {conf.min_coverage}"
            )
        else:
            passing.append((value, model, coverage))
    if not passing:
        reason = "; ".join(failing) or "no model besides the baselines is enabled"
        return Decision(baseline, f"baseline published: {reason}", base, base)
    value, model, coverage = max(passing)
    others = [f"{m} {v:.4f}" for v, m, _ in sorted(passing, reverse=True)[1:]]
    reason = (
        f"{model}: {metric}@{k} {value:.4f} beats {baseline} {base:.4f}, coverage {coverage:.3f} "
        f">= {conf.min_coverage}" + (f"; also passing: {', '.join(others)}" if others else "")
    )
    return Decision(model, reason, value, base)


def run_evaluate(spark: SparkSession, config: Config, run_id: str) -> EvaluateResult:
    conf = config.evaluation
    if not re.fullmatch(r"[0-9A-Za-z_-]+", run_id):
        raise ValueError(f"unexpected run id {run_id!r}")
    interactions = spark.table(str(table_name(config, "interactions")))
    with stage("evaluate", f"split ({conf.split})") as st:
        split = make_split(interactions, conf)
        train = split.train.persist()
        test = split.test.persist()
        result = EvaluateResult(conf.split, split.cutoff)
        result.train_lines, result.test_pairs = train.count(), test.count()
        test_customers = test.select(*ev.KEYS).distinct()
        result.test_customers = test_customers.count()
        known = train.select(*ev.KEYS).distinct()
        result.cold_start_customers = test_customers.join(known, ev.KEYS, "left_anti").count()
        known_items = train.select("segment", "item_id").distinct()
        result.cold_start_pairs = test.join(known_items, ["segment", "item_id"], "left_anti").count()
        if result.test_pairs == 0:
            raise ValueError(
                f"the {conf.split} split left no new purchases to test on: move the cutoff "
                "(evaluation.cutoff_quantile, cutoff_date or last_days) earlier"
            )
        st.counts.update(
            cutoff=split.cutoff,
            train_lines=result.train_lines,
            test_pairs=result.test_pairs,
            test_customers=result.test_customers,
            cold_start=result.cold_start_customers,
            new_item_pairs=result.cold_start_pairs,
        )

    fitted = fit_models(spark, config, train, "evaluate", TrainResult(seconds=result.seconds))

    with stage("evaluate", "score test customers", result.seconds) as st:
        items = fitted.item_factors.select("segment", "item_id", "model", "factors").toPandas()
        histories = (
            customer_histories(config, train, "hybrid").join(test_customers, ev.KEYS, "left_semi").persist()
        )
        segment_users = dict(known.groupBy("segment").count().collect())
        mined = mine_rules(spark, config, train) if hybrid_uses_rules(config) else None
        raw = Rules()  # the models as they are; business rules are measured as variants
        context = list_context(config, train, items, raw, mined.rules if mined else None, segment_users)
        candidates = [m for m in config.models.enabled if m != "popularity"] + list(BASELINES)
        variants = rule_variants(config, blocked_items(spark, config))
        n = max(conf.k)
        pool = None  # the hybrid's candidates, made once for it and its variants
        if "hybrid" in candidates:
            weights = config.models.hybrid.weights
            # Checkpointed, not only cached: the hybrid and its variants each read it, and their
            # union's plan would otherwise repeat the candidates' whole plan in every branch.
            pool = hybrid_candidates(config, fitted, items, histories, context, weights).localCheckpoint()
        frames = []
        for model in candidates:
            recs = published_lists(config, model, fitted, items, histories, context, n, candidates=pool)
            frames.append(recs.select(F.lit(model).alias("model"), *ev.KEYS, "rank", "item_id"))
        base = "hybrid" if "hybrid" in candidates else candidates[0]
        for name, rules in variants.items():
            with_rules = context.with_rules(rules)
            recs = published_lists(config, base, fitted, items, histories, with_rules, n, candidates=pool)
            frames.append(recs.select(F.lit(f"{base}+{name}").alias("model"), *ev.KEYS, "rank", "item_id"))
        candidates += [f"{base}+{name}" for name in variants]
        # The metrics below read it many times: checkpointed for a short plan.
        recs = reduce(DataFrame.unionByName, frames).localCheckpoint()
        st.counts.update(models=candidates, rows=recs.count())
        if mined is not None:
            mined.unpersist()

    with stage("evaluate", "metrics", result.seconds) as st:
        per_user = ev.user_metrics(recs, test, conf.k, candidates).persist()
        slices = ev.history_slices(train, test)
        summaries = [
            ev.summarize(per_user, ["model"]).withColumns({"segment": F.lit("all"), "slice": F.lit("all")}),
            # Segment "all" is every customer; data without segments has only that one.
            ev.summarize(per_user, ["model", "segment"])
            .where(F.col("segment") != "all")
            .withColumn("slice", F.lit("all")),
            ev.summarize(per_user.join(slices, ev.KEYS), ["model", "history"])
            .withColumnRenamed("history", "slice")
            .withColumn("segment", F.lit("all")),
        ]
        lists = ev.list_metrics(recs, train, conf.k, ev.item_categories(interactions))
        overall = summaries[0].join(lists, ["model", "k"], "left").toPandas()
        result.overall = (
            overall.drop(columns=["segment", "slice"])
            .sort_values(["model", "k"])
            .fillna(
                {"coverage": 0.0}  # a model with no list at all covers nothing
            )
        )
        result.decision = choose(result.overall, conf)
        metrics = _long(summaries, lists, conf.baseline, run_id)
        overwrite_table(spark, config, table_name(config, "model_metrics"), metrics, f"run_id = '{run_id}'")
        st.counts.update(
            rows=spark.table(str(table_name(config, "model_metrics"))).where(f"run_id = '{run_id}'").count()
        )

    decision = result.decision
    choice = spark.createDataFrame(
        [
            (
                run_id,
                decision.model,
                decision.reason,
                conf.primary_metric,
                conf.primary_k,
                decision.value,
                decision.baseline_value,
            )
        ],
        "run_id string, model string, reason string, metric string, k int, value double, "
        "baseline_value double",
    ).withColumn("decided_at", F.lit(utc_now()).cast("timestamp"))
    overwrite_table(spark, config, table_name(config, "published_model"), choice, f"run_id = '{run_id}'")
    log.info("evaluate: publish %s: %s", decision.model, decision.reason)
    for frame in (train, test, histories, recs, per_user):
        frame.unpersist()
    fitted.unpersist()
    return result


def rule_variants(config: Config, blocked: set[str]) -> dict[str, Rules]:
    """Each business rule that conf turns on, alone, and all of them together (``rules``)."""
    conf = config.business_rules
    alone = {
        "exclude": Rules(blocked=frozenset(blocked)) if blocked else None,
        "filter": Rules(
            category_include=frozenset(conf.category_include),
            category_exclude=frozenset(conf.category_exclude),
        )
        if conf.category_include or conf.category_exclude
        else None,
        "cap": Rules(max_per_category=conf.max_per_category) if conf.max_per_category else None,
        "mmr": Rules(mmr_lambda=conf.mmr_lambda) if conf.mmr_lambda is not None else None,
    }
    variants = {name: rules for name, rules in alone.items() if rules is not None}
    if len(variants) > 1:
        variants["rules"] = business_rules(config, blocked)
    return variants


def _long(summaries: list[DataFrame], lists: DataFrame, baseline: str, run_id: str) -> DataFrame:
    """gold.model_metrics rows: one per model × segment × slice × metric × k, with the baseline's value."""
    metric_names = [*ev.METRICS, "customers"]
    stacked = []
    for summary in summaries:
        stacked.append(_melt(summary, ["model", "segment", "slice", "k"], metric_names))
    stacked.append(
        _melt(
            lists.withColumns({"segment": F.lit("all"), "slice": F.lit("all")}),
            ["model", "segment", "slice", "k"],
            list(LIST_METRICS),
        )
    )
    rows = stacked[0]
    for frame in stacked[1:]:
        rows = rows.unionByName(frame)
    base = rows.where(F.col("model") == baseline).select(
        "segment", "slice", "metric", "k", F.col("value").alias("baseline_value")
    )
    return rows.join(base, ["segment", "slice", "metric", "k"], "left").select(
        F.lit(run_id).alias("run_id"),
        "model",
        "segment",
        "slice",
        "metric",
        F.col("k").cast("int").alias("k"),
        "value",
        "baseline_value",
        F.lit(utc_now()).cast("timestamp").alias("evaluated_at"),
    )


def _melt(frame: DataFrame, ids: list[str], metrics: list[str]) -> DataFrame:
    pairs = F.explode(
        F.array(
            *(F.struct(F.lit(m).alias("metric"), F.col(m).cast("double").alias("value")) for m in metrics)
        )
    )
    return frame.select(*ids, pairs.alias("pair")).select(*ids, "pair.metric", "pair.value")
