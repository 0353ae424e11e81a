"""Per-segment hyperparameter search: ``groupBy(segment).applyInPandas`` runs every trial of every
tuned model for a segment in one task (the kernels' search), on a fit part and a validation part
the caller carved from the training period. This module takes and returns DataFrames only.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from recsys_spark.config import Config
from recsys_spark.config.params import hybrid_uses_rules, mining_settings, train_settings
from recsys_spark.distributed import baskets as mining
from recsys_spark.distributed import evaluation as ev
from recsys_spark.distributed import lists
from recsys_spark.distributed.errors import udf_errors
from recsys_spark.distributed.training import (
    Fitted,
    TrainResult,
    TrainSettings,
    Tuned,
    confidence_weights,
    executor_cores,
    fit_models,
    threads_per_task,
    training_plan,
)
from recsys_spark.kernels import metrics, tuning
from recsys_spark.kernels.lists import ListMaker, ListSpec, labelled
from recsys_spark.kernels.matrix import build_interactions
from recsys_spark.kernels.rerank import Rules
from recsys_spark.kernels.routing import GLOBAL_SEGMENT
from recsys_spark.kernels.topn import limit_threads

TRIALS_SCHEMA = (
    "segment string, model string, trial int, params string, ndcg double, "
    "validation_customers int, seconds double"
)
TRIALS_COLUMNS = [f.split()[0] for f in TRIALS_SCHEMA.split(", ")]


class TuningError(RuntimeError):
    """A trial failed on a segment; the message names the segment, the model and the values."""


@dataclass(frozen=True)
class TuningPlan:
    models: tuple[str, ...]  # the tuned models (enabled and tunable)
    trials: int  # per model and segment, conf's values included
    k: int  # NDCG@k on validation
    seed: int
    min_validation_customers: int  # a segment with fewer keeps conf's values
    fixed: dict[str, tuple[str, ...]]  # per model: parameters not searched


def tune_segments(
    fit_weights: DataFrame,
    validation: DataFrame,
    segments: Sequence[str],
    settings: TrainSettings,
    plan: TuningPlan,
    threads: int,
) -> DataFrame:
    """One row per segment × model × trial (``TRIALS_SCHEMA``) for ``segments``.

    ``fit_weights``: segment, customer_id, item_id, weight (the fit part's confidence weights);
    ``validation``: segment, customer_id, item_id (new pairs of the validation part).
    """
    rows = fit_weights.select("segment", "customer_id", "item_id", "weight", F.lit(False).alias("held"))
    held = validation.select(
        "segment",
        "customer_id",
        "item_id",
        F.lit(None).cast("float").alias("weight"),
        F.lit(True).alias("held"),
    )
    return (
        rows.unionByName(held)
        .where(F.col("segment").isin(list(segments)))
        .groupBy("segment")
        .applyInPandas(_tune_segment(settings, plan, threads), TRIALS_SCHEMA)
    )


def validation_carve(config: Config, interactions: DataFrame) -> ev.Split:
    """Tuning's fit part (``train``) and validation part (``test``): evaluation's train part,
    its ``models.tuning.validation_share`` held out: the latest events, or a random share when
    conf says ``validation: random`` or the data has no times; validated on at most
    ``max_validation_customers`` customers per segment."""
    conf = config.models.tuning
    split = ev.make_split(interactions, config.evaluation, ev.split_used(config))
    timed = conf.validation == "time" and config.input.columns.event_ts is not None
    carved = ev.validation_split(split.train, conf.validation_share, conf.seed, timed)
    if conf.max_validation_customers is None:
        return carved
    return dataclasses.replace(
        carved, test=sampled_customers(carved.test, conf.max_validation_customers, conf.seed)
    )


def sampled_customers(rows: DataFrame, most: int, seed: int) -> DataFrame:
    """``rows`` of at most ``most`` customers per segment: those first in a seeded hash order
    (the same customers on a re-run), all of a segment with fewer."""
    drawn = F.xxhash64(F.lit(seed), "segment", "customer_id")
    order = Window.partitionBy("segment").orderBy(drawn, "customer_id")
    customers = rows.select("segment", "customer_id").distinct()
    kept = customers.withColumn("drawn", F.row_number().over(order)).where(F.col("drawn") <= most)
    return rows.join(kept.drop("drawn"), ["segment", "customer_id"], "left_semi")


def search_settings(
    spark: SparkSession, config: Config, carved: ev.Split, counts: dict[str, Any]
) -> pd.DataFrame:
    """Every trial (``TRIALS_SCHEMA`` rows, on the driver) of the tuned factor and neighbour
    models on every segment that trains on the kernels, fitted on ``carved.train`` and scored
    on ``carved.test``. ``counts`` gets the sizes, for the stage's log line."""
    models, conf = config.models, config.models.tuning
    weights = confidence_weights(models, carved.train).persist()
    settings = train_settings(models)
    plan = training_plan(weights, settings)
    segments = plan.segment[plan.engine == "implicit"].tolist()
    tuned = tuple(m for m in conf.models if m in settings.models)
    # ALS's own log scale is searched only when conf does not log-scale every weight already.
    fixed = {"als": ("log_scale",)} if models.confidence.log_scale else {}
    plan_of = TuningPlan(
        tuned, conf.trials, config.evaluation.primary_k, conf.seed, conf.min_validation_customers, fixed
    )
    threads = threads_per_task(*executor_cores(spark), len(segments))
    with udf_errors(TuningError):
        trials = tune_segments(weights, carved.test, segments, settings, plan_of, threads).toPandas()
    weights.unpersist()
    counts.update(
        models=list(tuned),
        segments=len(segments),
        tuned_segments=trials.segment.nunique(),
        trials=len(trials),
        validation_customers=int(trials.groupby("segment").validation_customers.first().sum()),
    )
    return trials


def search_hybrid(
    spark: SparkSession, config: Config, carved: ev.Split, tuned: Tuned, counts: dict[str, Any]
) -> pd.DataFrame:
    """Trials (``TRIALS_SCHEMA`` rows, segment ``all``) of the hybrid's source weights, one set
    for every segment: the sources trained on ``carved.train`` with the ``tuned`` values, their
    candidates made once, and each weighting's lists made and measured as evaluate makes them."""
    models, conf, k = config.models, config.models.tuning, config.evaluation.primary_k
    start = time.perf_counter()
    fitted = fit_models(
        spark, models, train_settings(models, tuned), carved.train, "tuning's fit part", "tune", TrainResult()
    )
    relevant = ev.relevant_items(carved.test)
    histories = lists.customer_histories(models, carved.train, "hybrid").join(relevant, ev.KEYS)
    sources = {s for s, w in models.hybrid.weights.items() if w > 0} | {"popularity"}
    maker = _hybrid_maker(spark, config, carved.train, fitted, sources)
    searched = tuning.hybrid_points(models.hybrid.weights, conf.trials, conf.seed)
    points = [{**models.hybrid.weights, **point} for point in searched]
    names = [str(number) for number in range(len(points))]

    def every_point(part: pd.DataFrame) -> pd.DataFrame:
        # The sources' candidates made once; each weighting blends them and is measured here.
        pool = maker.hybrid_candidates(part, models.hybrid.weights)
        made = [
            labelled(maker.published(part, "hybrid", point, pool), name)
            for name, point in zip(names, points, strict=True)
        ]
        measured = metrics.user_metrics(
            pd.concat(made, ignore_index=True), metrics.relevant_rows(part), [k], names
        )
        return measured[["model", "ndcg"]]

    with_vectors = lists.with_vectors(histories, fitted.user_factors, sources)
    per_user = lists.made_lists(with_vectors, every_point, "model string, ndcg double")
    # Validation customers without a history in the fit part have no list: they count 0.
    scored = relevant.count()
    totals = dict(per_user.groupBy("model").agg(F.sum("ndcg")).collect())
    ndcg = {name: totals.get(name, 0.0) / max(1, scored) for name in names}
    fitted.unpersist()
    seconds = (time.perf_counter() - start) / max(1, len(points))
    counts.update(hybrid_trials=len(points), hybrid_validation_customers=scored)
    return pd.DataFrame(
        {
            "segment": GLOBAL_SEGMENT,
            "model": "hybrid",
            "trial": range(len(points)),
            "params": [json.dumps(p, sort_keys=True) for p in searched],
            "ndcg": [float(ndcg[name]) for name in names],
            "validation_customers": scored,
            "seconds": seconds,
        }
    )


def _hybrid_maker(
    spark: SparkSession, config: Config, train: DataFrame, fitted: Fitted, sources: set[str]
) -> ListMaker:
    """The hybrid's lists of ``sources`` fitted on ``train``, at primary K, without rules."""
    models = config.models
    items = fitted.item_factors.select("segment", "item_id", "model", "factors").toPandas()
    mined = None
    if hybrid_uses_rules(models):
        mined = mining.mine_rules(spark, train, mining_settings(config.baskets), config.baskets)
    users = dict(train.groupBy("segment").agg(F.countDistinct("customer_id")).collect())
    association = mined.rules if mined else None
    tables = lists.list_tables(models, fitted, items, train, association, users, sources)
    if mined is not None:
        mined.unpersist()
    depth = config.business_rules.candidates
    k = config.evaluation.primary_k
    return ListMaker.of(tables, ListSpec("hybrid", k, Rules(), depth, dataclasses.asdict(models.hybrid)))


def _tune_segment(
    settings: TrainSettings, plan: TuningPlan, threads: int
) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def tune(frame: pd.DataFrame) -> pd.DataFrame:
        segment = frame.segment.iat[0]
        fit_rows, held_rows = frame[~frame.held], frame[frame.held]
        data = build_interactions(fit_rows.customer_id, fit_rows.item_id, fit_rows.weight)
        users, relevant = _validation(data.user_ids, data.item_ids, held_rows)
        if len(users) < plan.min_validation_customers:
            return pd.DataFrame(columns=TRIALS_COLUMNS)
        found = []
        for model in plan.models:
            defaults = getattr(settings, model)
            points = tuning.trial_points(
                model, dataclasses.asdict(defaults), plan.trials, plan.seed, plan.fixed.get(model, ())
            )
            try:
                with limit_threads(threads):
                    found += tuning.search(
                        model, data.weights, users, relevant, points, defaults, plan.k, threads
                    )
            except Exception as exc:
                # Raised, never swallowed: the job fails and names what failed.
                raise TuningError(
                    f"segment {segment!r}, tuning {model}: {type(exc).__name__}: {exc}"
                ) from exc
        return pd.DataFrame(
            {
                "segment": segment,
                "model": [t.model for t in found],
                "trial": [t.trial for t in found],
                "params": [json.dumps(t.params, sort_keys=True) for t in found],
                "ndcg": [t.ndcg for t in found],
                "validation_customers": len(users),
                "seconds": [t.seconds for t in found],
            }
        )

    return tune


def _validation(
    user_ids: np.ndarray, item_ids: np.ndarray, held: pd.DataFrame
) -> tuple[np.ndarray, list[np.ndarray]]:
    """(row indexes of the validation customers known in the fit part, each one's held-out
    items known there as column indexes); customers with none are left out."""
    rows = pd.Index(user_ids).get_indexer(held.customer_id)
    cols = pd.Index(item_ids).get_indexer(held.item_id)
    known = (rows >= 0) & (cols >= 0)
    pairs = pd.DataFrame({"row": rows[known], "col": cols[known]})
    grouped = pairs.groupby("row", sort=True).col
    users = np.array(list(grouped.groups), dtype=np.int32)
    return users, [np.asarray(items, dtype=np.int32) for _, items in grouped]
