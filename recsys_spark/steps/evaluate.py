"""The `evaluate` step: train on the past, score the future, and choose what to publish.

Every enabled model and both popularity baselines are trained on the split's train part (in
memory, the silver tables are untouched) and scored for the test customers; metrics land in
gold.model_metrics (each beside the named baseline's value), and the guardrail's choice in
gold.published_model, which `recsys score` reads when ``models.publish`` is ``champion``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import Config, EvaluationConfig, ModelsConfig, on_databricks
from recsys_spark.config.params import (
    DERIVED_MODELS,
    business_rules,
    hybrid_uses_rules,
    mining_settings,
    train_settings,
)
from recsys_spark.distributed import baskets as mining
from recsys_spark.distributed import evaluation as ev
from recsys_spark.distributed import lists
from recsys_spark.distributed.analytics import has_categories, item_categories
from recsys_spark.distributed.evaluation import ALL_SLICES
from recsys_spark.distributed.training import (
    Fitted,
    TrainResult,
    TrainSettings,
    fit_models,
    rating_weights,
    settings_rows,
)
from recsys_spark.io.model_tables import (
    blocked_items,
    fitted_from_tables,
    trained_settings,
    tuned_config,
    tuned_values,
)
from recsys_spark.io.tables import overwrite_table, run_stamp, table_name
from recsys_spark.kernels import metrics, routing
from recsys_spark.kernels.interleaving import preference_share
from recsys_spark.kernels.lists import ListMaker, ListSpec, labelled
from recsys_spark.kernels.metrics import Catalogue
from recsys_spark.kernels.rerank import Rules
from recsys_spark.kernels.routing import GLOBAL_SEGMENT
from recsys_spark.progress import stage
from recsys_spark.serving.settings import serving_settings, serving_sources
from recsys_spark.tracking.champion import served_tables
from recsys_spark.tracking.report import build_report, write_report
from recsys_spark.tracking.runs import PipelineRun, StepReport, log_champion, log_evaluation

log = logging.getLogger(__name__)

BASELINES = ("popularity", "popularity_global")
RATING_BASELINE = "bias"  # explicit feedback's baseline: mean + customer and item biases
# Explicit feedback: the models whose factors predict ratings, judged by RMSE and MAE.
RATING_MODELS = ("als", RATING_BASELINE)
LOWER_IS_BETTER = frozenset(metrics.RATING_METRICS)
# Business-rule variants are evaluated as "<model>+<rule>": reported, never chosen by the guardrail
# (the rules apply to whatever is published).
VARIANT_MARK = "+"
MODEL_SECTIONS = ("als", "bpr", "itemknn", "userknn", "graph", "popularity", "content", "hybrid")
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
    settings: TrainSettings | None = None  # what the models were evaluated with
    # Why silver's factors cannot be registered as evaluated (None: they were trained with these).
    settings_mismatch: str | None = None
    # The published model interleaved with the runner-up: per segment (and all), each one's wins.
    interleaving: pd.DataFrame = field(default_factory=pd.DataFrame)
    # Explicit feedback: per model × segment (and all), the test ratings predicted, RMSE, MAE.
    ratings: pd.DataFrame = field(default_factory=pd.DataFrame)


def baselines(models: ModelsConfig) -> tuple[str, ...]:
    """The models a published model is measured against: popularity, in the segment and
    overall, and with explicit feedback the bias baseline."""
    return (*BASELINES, RATING_BASELINE) if models.feedback == "explicit" else BASELINES


def choose(
    overall: pd.DataFrame,
    conf: EvaluationConfig,
    test_customers: int,
    baseline_models: tuple[str, ...] = BASELINES,
) -> Decision:
    """The guardrail: the best model on the primary metric at primary_k among those that beat the
    baseline and reach ``min_coverage``; the baseline itself when none does, or when the split
    left fewer than ``min_test_customers`` to judge by. RMSE and MAE are better lower; a model
    that predicts no rating (NaN) cannot pass on them."""
    at_k = overall[overall.k == conf.primary_k].set_index("model")
    metric, k, baseline = conf.primary_metric, conf.primary_k, conf.baseline
    if baseline not in at_k.index:
        raise ValueError(f"the baseline {baseline} was not evaluated at k={k}")
    base = float(at_k.loc[baseline, metric])
    if test_customers < conf.min_test_customers:
        reason = (
            f"baseline published: the split (evaluation.split {conf.split}) left {test_customers:,} "
            f"test customers, fewer than evaluation.min_test_customers={conf.min_test_customers}: "
            "too few to judge any model; widen the test period (e.g. a lower cutoff_quantile)"
        )
        log.warning("evaluate: %s", reason)
        return Decision(baseline, reason, base, base)
    passing, failing = [], []
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0  # passing ranks by sign × value
    label = metric if metric in LOWER_IS_BETTER else f"{metric}@{k}"  # a rating error has no K
    for model in [m for m in at_k.index if m not in baseline_models and VARIANT_MARK not in m]:
        value, coverage = float(at_k.loc[model, metric]), float(at_k.loc[model, "coverage"])
        if math.isnan(value):
            failing.append(f"{model}: predicts no {metric}")
        elif sign * value <= sign * base:
            failing.append(f"{model}: {label} {value:.4f} does not beat {baseline} {base:.4f}")
        elif coverage < conf.min_coverage:
            failing.append(
                f"{model}: coverage {coverage:.3f} below evaluation.min_coverage {conf.min_coverage}"
            )
        else:
            passing.append((sign * value, model, coverage))
    if not passing:
        reason = "; ".join(failing) or "no model besides the baselines is enabled"
        return Decision(baseline, f"baseline published: {reason}", base, base)
    signed, model, coverage = max(passing)
    value = sign * signed
    others = [f"{m} {sign * v:.4f}" for v, m, _ in sorted(passing, reverse=True)[1:]]
    reason = (
        f"{model}: {label} {value:.4f} beats {baseline} {base:.4f}, coverage {coverage:.3f} "
        f">= {conf.min_coverage}" + (f"; also passing: {', '.join(others)}" if others else "")
    )
    return Decision(model, reason, value, base)


@dataclass
class SplitData:
    """The evaluation's split, persisted: train lines, test lines and customers, known customers."""

    train: DataFrame
    test: DataFrame
    test_customers: DataFrame
    known: DataFrame


def run_evaluate(
    spark: SparkSession, config: Config, run_id: str, trained: pd.DataFrame | None = None
) -> EvaluateResult:
    """Evaluate with the settings silver.model_settings records (``trained``, read when not
    given): the values tuning chose for the factors in silver, conf's otherwise."""
    if not re.fullmatch(r"[0-9A-Za-z_-]+", run_id):
        raise ValueError(f"unexpected run id {run_id!r}")
    trained = trained_settings(spark, config) if trained is None else trained
    config = tuned_config(config, trained)  # the hybrid blends with the weights tuning chose
    interactions = spark.table(str(table_name(config, "interactions")))
    data, result = _split(interactions, config.evaluation, ev.split_used(config))
    source = f"the {result.split} split's train part"
    settings = train_settings(config.models, tuned_values(config, trained))
    result.settings, result.settings_mismatch = settings, settings_mismatch(settings, trained)
    fitted = fit_models(
        spark, config.models, settings, data.train, source, "evaluate", TrainResult(seconds=result.seconds)
    )
    with stage("evaluate", "score and measure test customers", result.seconds) as st:
        catalogue, catalogue_items = ev.catalogue(data.train, _categories(interactions))
        per_user, models = _test_lists(spark, config, data, fitted, catalogue, settings)
        st.counts.update(models=models, rows=per_user.count())
    if config.models.feedback == "explicit":
        with stage("evaluate", "rating errors", result.seconds) as st:
            result.ratings = _rating_errors(interactions, data, fitted)
            st.counts.update(rated_pairs=_everyone(result.ratings).pairs.max())
    with stage("evaluate", "metrics", result.seconds) as st:
        list_metrics = ev.list_metrics(per_user, config.evaluation.k, catalogue_items)
        st.counts.update(rows=_metrics(spark, config, run_id, data, per_user, list_metrics, result))
    _publish_decision(spark, config, run_id, interactions, result)
    for frame in (data.train, data.test, per_user):
        frame.unpersist()
    fitted.unpersist()
    return result


def _rating_errors(interactions: DataFrame, data: SplitData, fitted: Fitted) -> pd.DataFrame:
    """RMSE and MAE of each rating model on the test pairs' ratings (a test pair is new after
    the cutoff, so its latest rating is the test's)."""
    pair = [*ev.KEYS, "item_id"]
    ratings = rating_weights(interactions).join(data.test.select(*pair), pair)
    ratings = ratings.select(*pair, F.col("weight").alias("rating"))
    sums = ev.rating_sums(ratings, fitted.user_factors, fitted.item_factors, RATING_MODELS)
    return metrics.rating_errors(sums, GLOBAL_SEGMENT)


def _everyone(ratings: pd.DataFrame) -> pd.DataFrame:
    """The rating errors over every segment, one row per model."""
    return ratings[ratings.segment == GLOBAL_SEGMENT].set_index("model")


def settings_mismatch(settings: TrainSettings, trained: pd.DataFrame) -> str | None:
    """Why the factors in silver differ from ``settings`` (the evaluated ones), or None when
    every trained segment's models were trained with exactly these."""
    if trained.empty:
        return "silver.model_settings is empty: run `recsys train` with this conf first"
    evaluated = settings_rows(
        dataclasses.replace(settings, models=tuple(set(trained.model))), list(set(trained.segment))
    )
    both = trained.merge(evaluated, on=["segment", "model"], how="left", suffixes=("_trained", "_evaluated"))
    differ = both[both.settings_trained != both.settings_evaluated]
    if differ.empty:
        return None
    first = differ.iloc[0]
    was, now = json.loads(first.settings_trained), json.loads(first.settings_evaluated or "{}")
    changed = ", ".join(
        f"{k} {was.get(k)} -> {now.get(k)}" for k in sorted(set(was) | set(now)) if was.get(k) != now.get(k)
    )
    return (
        f"silver's {first.model} factors for segment {first.segment} were trained with other settings "
        f"than evaluated ({changed}; {len(differ)} segment x model pairs differ): run `recsys train`, "
        "then `recsys evaluate`"
    )


def _split(interactions: DataFrame, conf: EvaluationConfig, used: str) -> tuple[SplitData, EvaluateResult]:
    with stage("evaluate", f"split ({used})") as st:
        split = ev.make_split(interactions, conf, used)
        train = split.train.persist()
        test = split.test.persist()
        result = EvaluateResult(used, split.cutoff)
        test_customers = test.select(*ev.KEYS).distinct()
        known = train.select(*ev.KEYS).distinct()
        result.train_lines = train.count()
        _count_test(test, known, train.select("segment", "item_id").distinct(), result)
        _check_split(interactions, used, result)
        st.counts.update(
            cutoff=split.cutoff,
            train_lines=result.train_lines,
            test_pairs=result.test_pairs,
            test_customers=result.test_customers,
            cold_start=result.cold_start_customers,
            new_item_pairs=result.cold_start_pairs,
        )
    return SplitData(train, test, test_customers, known), result


def _count_test(test: DataFrame, known: DataFrame, known_items: DataFrame, result: EvaluateResult) -> None:
    """The test side's counts in one job: pairs, customers, and those the train side lacks."""
    item_keys = ["segment", "item_id"]
    flagged = test.join(known.withColumn("known", F.lit(True)), ev.KEYS, "left").join(
        known_items.withColumn("known_item", F.lit(True)), item_keys, "left"
    )
    customer = F.struct(*ev.KEYS)
    counts = flagged.agg(
        F.count(F.lit(1)).alias("pairs"),
        F.countDistinct(customer).alias("customers"),
        F.countDistinct(F.when(F.col("known").isNull(), customer)).alias("cold_customers"),
        F.count(F.when(F.col("known_item").isNull(), 1)).alias("cold_pairs"),
    ).first()
    result.test_pairs, result.test_customers = counts.pairs, counts.customers
    result.cold_start_customers, result.cold_start_pairs = counts.cold_customers, counts.cold_pairs


def _check_split(interactions: DataFrame, split: str, result: EvaluateResult) -> None:
    """Refuse a split with nothing to train or test on, naming the data's own cause."""
    if result.train_lines and result.test_pairs:
        return
    times = interactions.agg(
        F.count(F.lit(1)).alias("lines"), F.countDistinct("event_ts").alias("times")
    ).first()
    side = "train on" if result.train_lines == 0 else "test on"
    if split == "random":
        cause = f"{times.lines:,} lines, too few customers with two or more items to hold one out"
    elif split == "last_basket":  # orders, not times, split it
        cause = (
            "no customer has a second order whose items they had not bought before: the last_basket "
            "split needs repeat customers (input.columns.order_id), or use a time split"
        )
    elif times.lines and times.times == 1:
        cause = (
            f"all {times.lines:,} lines share one timestamp, so no time cutoff can split them: give the "
            "real purchase time (input.columns.event_ts), or set evaluation.split: random (or last_basket)"
        )
    else:
        cause = (
            f"{result.train_lines:,} lines fall before the cutoff ({result.cutoff}) and "
            f"{result.test_pairs:,} new customer x item pairs after it: move the cutoff "
            "(evaluation.cutoff_quantile, cutoff_date or last_days)"
        )
    raise ValueError(f"the {split} split left nothing to {side}: {cause}")


def _categories(interactions: DataFrame) -> DataFrame | None:
    """The items' categories diversity counts, or None: without categories diversity is not
    measured (null), rather than every item its own category."""
    categories = item_categories(interactions)
    return categories if has_categories(categories) else None


def _test_lists(
    spark: SparkSession,
    config: Config,
    data: SplitData,
    fitted: Fitted,
    catalogue: Catalogue,
    settings: TrainSettings,
) -> tuple[DataFrame, list[str]]:
    """(every evaluated model's top max(k) for the test customers as production would serve
    them, measured where they are made: ``kernels.metrics.measured`` rows, checkpointed; the
    evaluated models and business-rule variants). Each model is measured as the champion: it
    fills the lists of the champion route, while customers new since the cutoff and short
    histories get their routes' lists (segment popularity; the hybrid with short-history
    weights), the same for every model. All lists of a block of customers are made and
    measured in one task (``kernels.lists``), from candidates made once."""
    models = config.models
    items = fitted.item_factors.select("segment", "item_id", "model", "factors").toPandas()
    histories = lists.with_unknown_customers(
        lists.customer_histories(models, data.train, "hybrid"), data.test_customers
    )
    segment_users = dict(data.known.groupBy("segment").count().collect())
    # A model left out of training (its input is missing: content without text) is not evaluated.
    trained = set(fitted.models or models.enabled) | set(DERIVED_MODELS)
    evaluated = [m for m in models.enabled if m != "popularity" and m in trained] + list(baselines(models))
    variants = rule_variants(config, blocked_items(spark, config))
    base = "hybrid" if "hybrid" in evaluated else evaluated[0]
    sources = set().union(*(serving_sources(config, m) for m in evaluated))
    mined = None
    if hybrid_uses_rules(models):
        mined = mining.mine_rules(spark, data.train, mining_settings(config.baskets), config.baskets)
    association = mined.rules if mined else None
    tables = lists.list_tables(models, fitted, items, data.train, association, segment_users, sources)
    if mined is not None:
        mined.unpersist()
    # The models as they are; business rules are measured as variants.
    # Score intervals only where a variant drops by them: each costs a bootstrap per ItemKNN list.
    intervals = any(rules.min_score_low is not None for rules in variants.values())
    posteriors = lists.interval_settings(fitted, settings, data.train) if intervals else {}
    spec = dataclasses.replace(ListSpec.of(serving_settings(config, base, posteriors)), intervals=intervals)
    maker = ListMaker.of(tables, dataclasses.replace(spec, top_n=max(config.evaluation.k), rules=Rules()))
    plan = [(m, m, None) for m in evaluated]
    plan += [(f"{base}{VARIANT_MARK}{name}", base, rules) for name, rules in variants.items()]

    labels = [label for label, _, _ in plan]
    ks = config.evaluation.k

    def every_list(customers: pd.DataFrame) -> pd.DataFrame:
        made = _evaluated_lists(maker, customers, plan)
        return metrics.measured(made, metrics.relevant_rows(customers), ks, labels, catalogue)

    customers = lists.with_vectors(histories, fitted.user_factors, sources)
    customers = customers.join(ev.relevant_items(data.test), lists.KEYS)
    measured = lists.made_lists(customers, every_list, ev.MEASURED_SCHEMA).localCheckpoint()
    return measured, labels


def _evaluated_lists(
    maker: ListMaker, customers: pd.DataFrame, plan: list[tuple[str, str, Rules | None]]
) -> pd.DataFrame:
    """Each (label, model, rules) of ``plan``: the model's lists on the champion route (under the
    variant's rules), the routes' lists for the other customers (made once, raw: making them
    again under every rule doubled evaluate's time for little information); the hybrid's
    candidates made once for every label."""
    routes = maker.routes(customers)
    champion = customers[routes == routing.CHAMPION]
    cold = [maker.route_lists(r, customers[routes == r]) for r in np.unique(routes) if r != routing.CHAMPION]
    weights = maker.spec.hybrid.get("weights")
    uses_hybrid = any(model == "hybrid" for _, model, _ in plan)
    pool = maker.hybrid_candidates(champion, weights) if uses_hybrid and len(champion) else None
    frames = []
    for label, model, rules in plan:
        made = maker if rules is None else maker.with_rules(rules)
        hybrid = model == "hybrid"
        ours = made.published(champion, model, weights if hybrid else None, pool if hybrid else None)
        frames += [labelled(frame, label) for frame in [ours, *cold]]
    return pd.concat(frames, ignore_index=True)


def _metrics(
    spark: SparkSession,
    config: Config,
    run_id: str,
    data: SplitData,
    per_user: DataFrame,
    list_metrics: DataFrame,
    result: EvaluateResult,
) -> int:
    """Summaries overall, per segment and per history slice, and the list metrics, into
    ``result`` (and its decision) and gold.model_metrics; returns the rows written."""
    conf = config.evaluation
    slices = ev.history_slices(data.train, data.test)
    everyone = {"segment": F.lit(GLOBAL_SEGMENT), "slice": F.lit(ALL_SLICES)}
    summaries = [
        ev.summarize(per_user, ["model"]).withColumns(everyone),
        # The global segment is every customer; data without segments has only that one.
        ev.summarize(per_user, ["model", "segment"])
        .where(F.col("segment") != GLOBAL_SEGMENT)
        .withColumn("slice", F.lit(ALL_SLICES)),
        ev.summarize(per_user.join(slices, ev.KEYS), ["model", "history"])
        .withColumnRenamed("history", "slice")
        .withColumn("segment", F.lit(GLOBAL_SEGMENT)),
    ]
    # Read more than once (the decision below, gold.model_metrics' rows and their baseline
    # column): made once, where the write made each summary two or three times over.
    summaries = [summary.localCheckpoint() for summary in summaries]
    list_metrics = list_metrics.persist()
    overall = summaries[0].join(list_metrics, ["model", "k"], "left").toPandas()
    result.overall = with_rating_errors(
        overall.drop(columns=["segment", "slice"])
        .sort_values(["model", "k"])
        .fillna({"coverage": 0.0}),  # a model with no list at all covers nothing
        result.ratings,
    )
    result.decision = choose(result.overall, conf, result.test_customers, baselines(config.models))
    overall_ci, segment_ci = ev.bootstrap_intervals(
        per_user, [["model"], ["model", "segment"]], conf.bootstrap_samples, conf.seed
    )
    intervals = (
        overall_ci.withColumn("segment", F.lit(GLOBAL_SEGMENT))
        .unionByName(segment_ci.where(F.col("segment") != GLOBAL_SEGMENT))
        .withColumn("slice", F.lit(ALL_SLICES))
    )
    metrics = _long(summaries, list_metrics, conf.baseline, run_id, intervals)
    if not result.ratings.empty:
        metrics = metrics.unionByName(_rating_rows(spark, result.ratings, run_id))
    if pair := interleaving_pair(result.overall, conf, result.decision.model, baselines(config.models)):
        result.interleaving = _interleave(per_user, data.test, pair, conf)
        metrics = metrics.unionByName(_interleaving_rows(spark, result.interleaving, conf, run_id))
    name = table_name(config, "model_metrics")
    written = overwrite_table(spark, config, name, metrics, f"run_id = '{run_id}'")
    list_metrics.unpersist()
    return written


def with_rating_errors(overall: pd.DataFrame, ratings: pd.DataFrame) -> pd.DataFrame:
    """``overall`` (model × k) with each model's RMSE and MAE over every segment beside every
    K (NaN: the model predicts no rating); unchanged without ratings."""
    if ratings.empty:
        return overall
    errors = _everyone(ratings)[list(metrics.RATING_METRICS)]
    return overall.merge(errors, left_on="model", right_index=True, how="left")


def _rating_rows(spark: SparkSession, ratings: pd.DataFrame, run_id: str) -> DataFrame:
    """gold.model_metrics rows of the rating errors: per model and segment, rmse, mae and
    rated_pairs, with no K (a rating error has no list length) and the bias baseline's value."""
    long = ratings.melt(["model", "segment"], ["rmse", "mae", "pairs"], "metric", "value")
    long["metric"] = long.metric.replace({"pairs": "rated_pairs"})
    base = long[long.model == RATING_BASELINE].drop(columns="model")
    long = long.merge(base, on=["segment", "metric"], how="left", suffixes=("", "_baseline"))
    long = long.rename(columns={"value_baseline": "baseline_value"}).assign(ci_low=None, ci_high=None)
    return _metric_rows(spark, long.astype({"value": float}), run_id, None)


def interleaving_pair(
    overall: pd.DataFrame,
    conf: EvaluationConfig,
    published: str,
    baseline_models: tuple[str, ...] = BASELINES,
) -> tuple[str, str] | None:
    """(the published model, the runner-up: the best other model on the primary metric, a
    baseline only when no other model was evaluated: two popularity lists, often the same ones,
    tell nothing), or None when there is no other model. Business-rule variants take no part."""
    at_k = overall[(overall.k == conf.primary_k) & ~overall.model.str.contains(VARIANT_MARK, regex=False)]
    others = at_k[at_k.model != published].assign(baseline=lambda f: f.model.isin(baseline_models))
    lower = conf.primary_metric in LOWER_IS_BETTER
    others = others.sort_values(["baseline", conf.primary_metric, "model"], ascending=[True, lower, True])
    return (published, str(others.model.iloc[0])) if len(others) else None


def _interleave(
    per_user: DataFrame, test: DataFrame, pair: tuple[str, str], conf: EvaluationConfig
) -> pd.DataFrame:
    """Per segment and over every test customer (``GLOBAL_SEGMENT``): the customers, and how
    many preferred the first and the second of ``pair`` when their lists were team-draft
    interleaved at primary_k (``ev.interleaved``)."""
    preferred = ev.interleaved(per_user, test, pair, conf.primary_k, conf.seed)
    counts = (
        preferred.groupBy("segment")
        .agg(
            F.count(F.lit(1)).alias("customers"),
            F.sum((F.col("preference") > 0).cast("long")).alias("a_wins"),
            F.sum((F.col("preference") < 0).cast("long")).alias("b_wins"),
        )
        .toPandas()
    )
    everyone = counts[["customers", "a_wins", "b_wins"]].sum().to_frame().T.assign(segment=GLOBAL_SEGMENT)
    scopes = pd.concat([counts[counts.segment != GLOBAL_SEGMENT], everyone], ignore_index=True)
    return scopes.assign(model_a=pair[0], model_b=pair[1])


def _interleaving_rows(
    spark: SparkSession, counts: pd.DataFrame, conf: EvaluationConfig, run_id: str
) -> DataFrame:
    """gold.model_metrics rows of the interleaving: per model of the pair and scope, its share
    of the customers with a preference (``interleaving_preference``, Wilson 95% interval) and
    how many preferred it (``interleaving_wins``)."""
    rows = []
    for scope in counts.itertuples():
        for model, wins, losses in (
            (scope.model_a, scope.a_wins, scope.b_wins),
            (scope.model_b, scope.b_wins, scope.a_wins),
        ):
            share, low, high = preference_share(int(wins), int(losses))  # NaN: null in the table
            rows += [
                (model, scope.segment, "interleaving_preference", share, low, high),
                (model, scope.segment, "interleaving_wins", float(wins), None, None),
            ]
    columns = ["model", "segment", "metric", "value", "ci_low", "ci_high"]
    frame = pd.DataFrame(rows, columns=columns).assign(baseline_value=None)
    return _metric_rows(spark, frame, run_id, conf.primary_k)


def _metric_rows(spark: SparkSession, frame: pd.DataFrame, run_id: str, k: int | None) -> DataFrame:
    """``frame`` (model, segment, metric, value, ci_low, ci_high, baseline_value) as
    gold.model_metrics rows of every customer (slice all) at ``k``, stamped with the run."""
    columns = ["model", "segment", "metric", "value", "ci_low", "ci_high", "baseline_value"]
    rows = spark.createDataFrame(
        frame[columns].astype(object).where(frame[columns].notna(), None),
        "model string, segment string, metric string, value double, ci_low double, ci_high double, "
        "baseline_value double",
    )
    stamp = run_stamp(run_id, "evaluated_at")
    return rows.select(
        stamp["run_id"].alias("run_id"),
        "model",
        "segment",
        F.lit(ALL_SLICES).alias("slice"),
        "metric",
        F.lit(k).cast("int").alias("k"),
        "value",
        "ci_low",
        "ci_high",
        "baseline_value",
        stamp["evaluated_at"].alias("evaluated_at"),
    )


def _publish_decision(
    spark: SparkSession, config: Config, run_id: str, interactions: DataFrame, result: EvaluateResult
) -> None:
    """gold.published_model: the choice and why, with what it was measured on (data window,
    split, sizes) and the models' settings, so the report reads the evaluation from tables."""
    conf, decision = config.evaluation, result.decision
    window = interactions.agg(F.min("event_ts"), F.max("event_ts")).first()
    row = (run_id, decision.model, decision.reason, conf.primary_metric, conf.primary_k)
    measured = (result.split, result.cutoff, window[0], window[1], result.train_lines)
    choice = spark.createDataFrame(
        [
            (
                *row,
                decision.value,
                decision.baseline_value,
                *measured,
                result.test_customers,
                result.test_pairs,
                json.dumps(model_settings(config, result.settings.tuned), sort_keys=True),
            )
        ],
        "run_id string, model string, reason string, metric string, k int, value double, "
        "baseline_value double, split string, cutoff timestamp, data_from timestamp, data_to timestamp, "
        "train_lines long, test_customers long, test_pairs long, settings string",
    ).withColumn("decided_at", run_stamp(run_id, "decided_at")["decided_at"])
    overwrite_table(spark, config, table_name(config, "published_model"), choice, f"run_id = '{run_id}'")
    log.info("evaluate: publish %s: %s", decision.model, decision.reason)


def model_settings(config: Config, tuned: Mapping[str, Any]) -> dict[str, Any]:
    """The enabled models' hyperparameters as evaluated (and trained by `recsys train`): conf's,
    and under ``tuned`` the values tuning chose per segment (segment -> model -> values)."""
    models = config.models
    sections = {m: dataclasses.asdict(getattr(models, m)) for m in models.enabled if m in MODEL_SECTIONS}
    if "als" in sections:
        sections["als"].update(dataclasses.asdict(models.confidence))
    if tuned:
        sections["tuned"] = {segment: dict(values) for segment, values in tuned.items()}
    return sections


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
        "confident": Rules(min_score_low=conf.min_score_low) if conf.min_score_low is not None else None,
    }
    variants = {name: rules for name, rules in alone.items() if rules is not None}
    if len(variants) > 1:
        variants["rules"] = business_rules(conf, blocked)
    return variants


def _long(
    summaries: list[DataFrame], list_metrics: DataFrame, baseline: str, run_id: str, intervals: DataFrame
) -> DataFrame:
    """gold.model_metrics rows: one per model × segment × slice × metric × k, with the baseline's
    value and, for the ranking metrics of every customer and of each segment, the bootstrap's
    95% interval (``intervals``: ``ev.bootstrap_intervals`` rows with segment and slice)."""
    metric_names = [*ev.METRICS, "customers"]
    stacked = []
    for summary in summaries:
        stacked.append(_melt(summary, ["model", "segment", "slice", "k"], metric_names))
    stacked.append(
        _melt(
            list_metrics.withColumns({"segment": F.lit(GLOBAL_SEGMENT), "slice": F.lit(ALL_SLICES)}),
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
    stamp = run_stamp(run_id, "evaluated_at")
    cell = ["model", "segment", "slice", "metric", "k"]
    rows = rows.join(intervals.select(*cell, "ci_low", "ci_high"), cell, "left")
    return rows.join(base, ["segment", "slice", "metric", "k"], "left").select(
        stamp["run_id"].alias("run_id"),
        "model",
        "segment",
        "slice",
        "metric",
        F.col("k").cast("int").alias("k"),
        "value",
        "ci_low",
        "ci_high",
        "baseline_value",
        stamp["evaluated_at"].alias("evaluated_at"),
    )


def _melt(frame: DataFrame, ids: list[str], metrics: list[str]) -> DataFrame:
    pairs = F.explode(
        F.array(
            *(F.struct(F.lit(m).alias("metric"), F.col(m).cast("double").alias("value")) for m in metrics)
        )
    )
    return frame.select(*ids, pairs.alias("pair")).select(*ids, "pair.metric", "pair.value")


def step(spark: SparkSession, config: Config, run: PipelineRun) -> StepReport:
    """Evaluate, write the report, log it and register the champion (unless a baseline won)."""
    trained = trained_settings(spark, config)
    config = tuned_config(config, trained)  # the served model blends as evaluated
    result = run_evaluate(spark, config, run.run_id, trained)
    decision = result.decision
    with stage("evaluate", "report") as st:
        report = build_report(spark, config, run.run_id)
        path = write_report(report, config.work_path / "reports") if not on_databricks() else None
        log_evaluation(report.figures, report.html, decision.model, decision.reason)
        st.counts.update(figures=len(report.figures))
    version = None
    if result.settings_mismatch:
        log.warning("evaluate: nothing registered: %s", result.settings_mismatch)
    elif decision.model not in baselines(config.models):
        with stage("evaluate", f"register {decision.model}") as st:
            version = _register(spark, config, decision.model, result.settings)
            st.counts.update(version=version or "none")
    report.close()
    metrics: dict[str, float] = {
        "train_lines": result.train_lines,
        "test_customers": result.test_customers,
        "test_pairs": result.test_pairs,
        "cold_start_customers": result.cold_start_customers,
        "cold_start_item_pairs": result.cold_start_pairs,
    }
    conf = config.evaluation
    table_lines = _metric_lines(result.overall, conf.primary_k, metrics)
    cutoff = f" at {result.cutoff:%Y-%m-%d %H:%M}" if result.cutoff else _held_out(result, conf)
    lines = [
        f"evaluate: {result.split} split{cutoff}: {result.train_lines:,} train lines; "
        f"{result.test_customers:,} test customers ({result.cold_start_customers:,} cold start), "
        f"{result.test_pairs:,} new customer x item pairs to find ({result.cold_start_pairs:,} of items "
        f"new to their segment, which no model can recommend); at k={conf.primary_k}:",
        *table_lines,
        *_rating_lines(result.ratings, metrics),
        f"  published: {decision.model} ({decision.reason})",
        *_interleaving_lines(result, conf.primary_k, metrics),
        _registered_line(config, result, version),
        f"  report: {path}" if path else "  report: in the MLflow run (report/evaluation.html)",
    ]
    return StepReport(metrics, lines)


def _register(spark: SparkSession, config: Config, model: str, settings: TrainSettings) -> str | None:
    """Log ``model`` as served from silver's tables and register it as the champion."""
    tables = served_tables(spark, config, model)
    interactions = spark.table(str(table_name(config, "interactions")))  # what silver's models fit
    posteriors = lists.interval_settings(fitted_from_tables(spark, config), settings, interactions)
    return log_champion(config, tables, serving_settings(config, model, posteriors))


def _rating_lines(ratings: pd.DataFrame, metrics: dict[str, float]) -> list[str]:
    """Explicit feedback: each rating model's RMSE and MAE over every segment, added to
    ``metrics``; nothing with implicit feedback."""
    if ratings.empty:
        return []
    everyone = _everyone(ratings)
    lines = [f"  predicted ratings ({int(everyone.pairs.max()):,} test ratings both models predict):"]
    for model, row in everyone.iterrows():
        metrics.update({f"{model}.rmse": float(row.rmse), f"{model}.mae": float(row.mae)})
        lines.append(f"    {model:<18} rmse {row.rmse:.4f}  mae {row.mae:.4f}")
    return lines


def _interleaving_lines(result: EvaluateResult, k: int, metrics: dict[str, float]) -> list[str]:
    """The published model against the runner-up, interleaved, over every test customer; its
    share added to ``metrics``."""
    scopes = result.interleaving
    if scopes.empty or not (scopes.segment == GLOBAL_SEGMENT).any():
        return []
    row = scopes[scopes.segment == GLOBAL_SEGMENT].iloc[0]
    wins, losses = int(row.a_wins), int(row.b_wins)
    share, low, high = preference_share(wins, losses)
    ties = int(row.customers) - wins - losses
    head = f"  interleaved with {row.model_b} (team draft, K={k})"
    if math.isnan(share):
        return [f"{head}: no test customer preferred either ({ties:,} ties)"]
    metrics[f"interleaving.{row.model_a.replace(VARIANT_MARK, '_')}.preference"] = share
    return [
        f"{head}: {share:.1%} of the {wins + losses:,} test "
        f"customers with a preference preferred {row.model_a} (95% CI {low:.1%} to {high:.1%}); {ties:,} ties"
    ]


def _registered_line(config: Config, result: EvaluateResult, version: str | None) -> str:
    if version:
        return f"  registered: {config.mlflow.registered_model} version {version} (alias champion)"
    if result.settings_mismatch:
        return f"  registered: nothing: {result.settings_mismatch}"
    return "  registered: nothing (a baseline is published)"


def _held_out(result: EvaluateResult, conf: EvaluationConfig) -> str:
    if result.split != "random":
        return ""
    return f" ({100 * conf.holdout_share:.0f}% of each customer's items held out at random, seed {conf.seed})"


def _metric_lines(overall: pd.DataFrame, k: int, metrics: dict[str, float]) -> list[str]:
    """One line per model at ``k``; its metrics added to ``metrics`` as MLflow names."""
    lines = []
    for row in overall[overall.k == k].itertuples():
        names = ("ndcg", "precision", "recall", "map", "hit_rate", "mrr", "coverage", "novelty", "diversity")
        for name in names:
            value = float(getattr(row, name))
            if not math.isnan(value):  # diversity needs item categories
                # MLflow metric names allow no "+": variant hybrid+mmr is logged as hybrid_mmr.
                metrics[f"{row.model.replace(VARIANT_MARK, '_')}.{name}_at_{row.k}"] = value
        diversity = "n/a (no categories)" if math.isnan(float(row.diversity)) else f"{row.diversity:.3f}"
        lines.append(
            f"    {row.model:<18} ndcg {row.ndcg:.4f}  precision {row.precision:.4f}  recall {row.recall:.4f}"
            f"  hit rate {row.hit_rate:.3f}  coverage {row.coverage:.3f}  diversity {diversity}"
        )
    return lines
