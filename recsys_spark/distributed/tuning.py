"""Per-segment hyperparameter search: ``groupBy(segment).applyInPandas`` runs every trial of every
tuned model for a segment in one task (the kernels' search), on a fit part and a validation part
the caller carved from the training period. This module takes and returns DataFrames only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import Config
from recsys_spark.config.params import train_settings
from recsys_spark.distributed import evaluation as ev
from recsys_spark.distributed.errors import udf_errors
from recsys_spark.distributed.training import (
    TrainSettings,
    confidence_weights,
    executor_cores,
    threads_per_task,
    training_plan,
)
from recsys_spark.kernels import tuning
from recsys_spark.kernels.matrix import build_interactions
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


def search_settings(
    spark: SparkSession, config: Config, interactions: DataFrame, counts: dict[str, Any]
) -> pd.DataFrame:
    """Every trial (``TRIALS_SCHEMA`` rows, on the driver) of the tuned models on every segment
    that trains on the kernels, fitted on evaluation's train part less its validation part:
    the test period is never seen. ``counts`` gets the sizes, for the stage's log line."""
    models, evaluation = config.models, config.evaluation
    conf = models.tuning
    timed = config.input.columns.event_ts is not None
    split = ev.make_split(interactions, evaluation, ev.split_used(config))
    carved = ev.validation_split(split.train, conf.validation_share, conf.seed, timed)
    weights = confidence_weights(models, carved.train).persist()
    settings = train_settings(models)
    plan = training_plan(weights, settings)
    segments = plan.segment[plan.engine == "implicit"].tolist()
    tuned = tuple(m for m in conf.models if m in settings.models)
    # ALS's own log scale is searched only when conf does not log-scale every weight already.
    fixed = {"als": ("log_scale",)} if models.confidence.log_scale else {}
    plan_of = TuningPlan(
        tuned, conf.trials, evaluation.primary_k, conf.seed, conf.min_validation_customers, fixed
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


def best_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """Per segment and model, the trial with the highest NDCG (the earliest among equals, so
    conf's values win a tie)."""
    ranked = trials.assign(order=-trials.trial).sort_values(["ndcg", "order"], ascending=False)
    return ranked.groupby(["segment", "model"], sort=True).head(1).drop(columns="order")


def chosen_values(best: pd.DataFrame) -> dict[str, dict[str, dict]]:
    """Segment -> model -> the values of ``best_trials``' rows, as train settings take them."""
    values: dict[str, dict[str, dict]] = {}
    for row in best.itertuples():
        values.setdefault(row.segment, {})[row.model] = json.loads(row.params)
    return values


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
            points = tuning.trial_points(model, defaults, plan.trials, plan.seed, plan.fixed.get(model, ()))
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
