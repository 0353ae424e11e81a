"""Splits that respect time, and the ranking metrics' summaries, intervals and list metrics in Spark.

A split's test set holds, per segment × customer, the items bought after the cutoff that the
customer had not bought before it: re-buying a known item is not a discovery, and a model that
excludes bought items could never hit it. Customers and items absent from training stay in the
test set and are reported as cold-start slices rather than dropped.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.window import Window

from recsys_spark.config import Config, EvaluationConfig
from recsys_spark.distributed.training import dot_product
from recsys_spark.kernels import bootstrap, interleaving, metrics

KEYS = ["segment", "customer_id"]
log = logging.getLogger(__name__)
METRICS = metrics.METRICS


@dataclass(frozen=True)
class Split:
    train: DataFrame  # interactions rows before the cutoff
    test: DataFrame  # segment, customer_id, item_id: new items bought at or after it
    cutoff: dt.datetime | None  # None for per-customer splits


def time_split(
    interactions: DataFrame,
    cutoff_quantile: float | None = None,
    cutoff_date: dt.datetime | None = None,
    last_days: int | None = None,
) -> Split:
    """One global cutoff for everyone: a quantile of event times, a date, or the last N days.

    Train is every line strictly before the cutoff, test every line at or after it.
    """
    if sum(x is not None for x in (cutoff_quantile, cutoff_date, last_days)) != 1:
        raise ValueError("give exactly one of cutoff_quantile, cutoff_date, last_days")
    if cutoff_date is None:
        seconds = F.unix_timestamp("event_ts")
        if cutoff_quantile is not None:
            if not 0 < cutoff_quantile < 1:
                raise ValueError(f"cutoff_quantile must be between 0 and 1, got {cutoff_quantile}")
            value = interactions.select(F.percentile(seconds, cutoff_quantile)).first()[0]
        else:
            value = interactions.select(F.max(seconds)).first()[0] - last_days * 86400
        if value is None:
            raise ValueError("cannot split an empty interactions table")
        cutoff_date = dt.datetime.fromtimestamp(math.ceil(value), dt.UTC).replace(tzinfo=None)
    before = F.col("event_ts") < F.lit(cutoff_date)
    return Split(
        interactions.where(before),
        _new_items(interactions.where(before), interactions.where(~before)),
        cutoff_date,
    )


def leave_last_basket_out(interactions: DataFrame) -> Split:
    """Per customer and segment with at least two orders, the latest order (ties: the larger
    order id) is the test set; a one-order customer stays whole in train (nothing to learn from)."""
    orders = interactions.groupBy(*KEYS, "order_id").agg(F.max("event_ts").alias("event_ts"))
    latest = Window.partitionBy(*KEYS).orderBy(F.desc("event_ts"), F.desc("order_id"))
    whole = Window.partitionBy(*KEYS)
    test_orders = (
        orders.withColumn("position", F.row_number().over(latest))
        .withColumn("orders", F.count(F.lit(1)).over(whole))
        .where("position = 1 AND orders >= 2")
        .select(*KEYS, "order_id", F.lit(True).alias("is_test"))
    )
    marked = interactions.join(test_orders, [*KEYS, "order_id"], "left")
    train = marked.where(F.col("is_test").isNull()).drop("is_test")
    return Split(train, _new_items(train, marked.where(F.col("is_test")).drop("is_test")), None)


def random_split(interactions: DataFrame, holdout_share: float, seed: int) -> Split:
    """For data without purchase times: a seeded random share of each customer's items (every
    line of a held-out customer x item pair) is the test set, the rest is train. The same seed
    holds out the same pairs on every run, whatever the partitioning."""
    bucket = F.abs(F.xxhash64(F.lit(seed), "segment", "customer_id", "item_id")) % 1_000_000
    held = bucket < F.lit(int(round(holdout_share * 1_000_000)))
    train = interactions.where(~held)
    return Split(train, _new_items(train, interactions.where(held)), None)


def split_used(config: Config) -> str:
    """The split evaluate makes: conf's, or random when the input has no time column."""
    if config.input.columns.event_ts is None and config.evaluation.split != "random":
        log.warning(
            "the input has no time column (input.columns.event_ts is null), so the %s split cannot be "
            "made: evaluation (and tuning) hold out a seeded random %.0f%% of each customer's items instead",
            config.evaluation.split,
            100 * config.evaluation.holdout_share,
        )
        return "random"
    return config.evaluation.split


def make_split(interactions: DataFrame, conf: EvaluationConfig, split: str) -> Split:
    """The ``split`` (``split_used``'s answer) of ``interactions`` as ``conf`` sets it."""
    if split == "random":
        return random_split(interactions, conf.holdout_share, conf.seed)
    if split == "last_basket":
        return leave_last_basket_out(interactions)
    if split == "date":
        if conf.cutoff_date is None:
            raise ValueError("evaluation.split is date but evaluation.cutoff_date is not set (YYYY-MM-DD)")
        return time_split(interactions, cutoff_date=dt.datetime.fromisoformat(conf.cutoff_date))
    if split == "last_days":
        if conf.last_days is None:
            raise ValueError("evaluation.split is last_days but evaluation.last_days is not set")
        return time_split(interactions, last_days=conf.last_days)
    return time_split(interactions, cutoff_quantile=conf.cutoff_quantile)


def validation_split(train: DataFrame, share: float, seed: int, timed: bool) -> Split:
    """The validation part tuning scores on, carved from a split's train part: its latest
    ``share`` of events (``timed``), else a seeded random share of pairs, drawn with another seed
    than the test's so that the two never coincide."""
    if timed:
        return time_split(train, cutoff_quantile=1.0 - share)
    return random_split(train, share, seed + 1)


def _new_items(train: DataFrame, test_lines: DataFrame) -> DataFrame:
    pairs = [*KEYS, "item_id"]
    return test_lines.select(*pairs).distinct().join(train.select(*pairs).distinct(), pairs, "left_anti")


def rating_sums(
    ratings: DataFrame, user_factors: DataFrame, item_factors: DataFrame, models: Sequence[str]
) -> pd.DataFrame:
    """Per model × segment: the test ratings (``ratings``: segment, customer_id, item_id,
    rating) every one of ``models`` predicts, as the dot product of the customer's and the
    item's factors, and the sums of their squared and absolute errors (``metrics.rating_errors``
    turns them into RMSE and MAE). A pair a model cannot predict (its customer or item unseen in
    training) is left out for every model, so all are judged on the same ratings."""
    pair = [*KEYS, "item_id"]
    users = user_factors.where(F.col("model").isin(list(models))).select(
        *KEYS, "model", F.col("factors").alias("u")
    )
    items = item_factors.select("segment", "item_id", "model", F.col("factors").alias("i"))
    predicted = (
        ratings.join(users, KEYS)
        .join(items, ["segment", "item_id", "model"])
        .select(*pair, "model", (dot_product("u", "i") - F.col("rating")).alias("error"))
    )
    predictors = F.count(F.lit(1)).over(Window.partitionBy(*pair))
    shared = predicted.withColumn("predictors", predictors).where(F.col("predictors") == len(models))
    sums = shared.groupBy("model", "segment").agg(
        F.count(F.lit(1)).alias("pairs"),
        F.sum(F.col("error") ** 2).alias("squared"),
        F.sum(F.abs("error")).alias("absolute"),
    )
    return sums.toPandas()


def relevant_items(test: DataFrame) -> DataFrame:
    """Per test customer (segment, customer_id): ``relevant``, their test items, for the tasks
    that measure lists where they make them (``kernels.metrics``)."""
    return test.groupBy(*KEYS).agg(F.array_sort(F.collect_set("item_id")).alias("relevant"))


def interleaved(
    per_user: DataFrame, test: DataFrame, pair: tuple[str, str], length: int, seed: int
) -> DataFrame:
    """Per test customer (segment, customer_id, preference): which of ``pair``'s lists wins
    when the two are team-draft interleaved to ``length`` items and credited by the customer's
    test purchases (+1 the first, -1 the second, 0 a tie). ``per_user``: measured rows, whose
    longest-K row carries each list's ``items``."""
    first, second = pair
    listed = per_user.where(F.col("items").isNotNull() & F.col("model").isin(first, second))
    both = listed.groupBy(*KEYS).agg(
        *(
            F.first(F.when(F.col("model") == model, F.col("items")), ignorenulls=True).alias(side)
            for model, side in ((first, "first"), (second, "second"))
        )
    )
    customers = relevant_items(test).join(both, KEYS, "left")

    def prefer(blocks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for block in blocks:
            yield interleaving.preferences(block, length, seed)

    return customers.mapInPandas(prefer, "segment string, customer_id string, preference int")


MEASURED_SCHEMA = (
    "model string, segment string, customer_id string, k int, n_relevant long, precision double, "
    "recall double, ndcg double, map double, hit_rate double, mrr double, listed int, "
    "information double, head int, diversity double, items array<string>"
)


def summarize(per_user: DataFrame, by: Sequence[str] = ("model", "segment")) -> DataFrame:
    """Mean of every metric over the test customers, per ``by`` × K, with the customer count."""
    return per_user.groupBy(*by, "k").agg(
        F.count(F.lit(1)).alias("customers"), *(F.avg(m).alias(m) for m in METRICS)
    )


# Poisson(1) cumulative probabilities for k = 0..7: a customer's weight in one bootstrap sample.
POISSON_CDF = (0.367879, 0.735759, 0.919699, 0.981012, 0.996340, 0.999406, 0.999917, 0.999990)


def bootstrap_intervals(
    per_user: DataFrame, groupings: Sequence[Sequence[str]], samples: int, seed: int, level: float = 0.95
) -> list[DataFrame]:
    """Per grouping (e.g. ``["model"]``, ``["model", "segment"]``), one frame: per its columns ×
    K × metric, a ``level`` confidence interval of the mean over test customers: ci_low,
    ci_high (percentiles of ``samples`` resampled means).

    The Poisson bootstrap: in each sample every customer counts Poisson(1) times, drawn from a
    hash of (seed, sample, segment, customer), so every model sees the same resampled customers
    (intervals are paired) and a re-run draws the same. The draws are made in Spark, one array
    per customer, and collected once for every grouping with the metrics; the means are matrix
    products on the driver (``kernels.bootstrap``): exploding every customer into every sample
    made hundreds of millions of rows at a few million lines.
    """
    draws = per_user.select(*KEYS).distinct().select(*KEYS, poisson_weights(samples, seed).alias("weights"))
    drawn = draws.toPandas()
    weights = np.stack(drawn.weights.to_numpy()) if len(drawn) else np.zeros((0, samples))
    position = pd.Index(pd.MultiIndex.from_frame(drawn[KEYS]))
    columns = dict.fromkeys([*(c for by in groupings for c in by), "k", *KEYS, *METRICS])
    values = per_user.select(*columns).toPandas()
    values["drawn"] = position.get_indexer(pd.MultiIndex.from_frame(values[KEYS]))
    return [_intervals_by(per_user, values, weights, list(by), level) for by in groupings]


def _intervals_by(
    per_user: DataFrame, values: pd.DataFrame, weights: np.ndarray, by: list[str], level: float
) -> DataFrame:
    """``bootstrap_intervals``' frame of one grouping ``by``, from the collected ``values``
    (``drawn``: each row's customer in ``weights``)."""
    rows = []
    for group, part in values.groupby([*by, "k"], sort=True):
        low, high = bootstrap.interval(weights[part.drawn.to_numpy()], part[list(METRICS)].to_numpy(), level)
        bounds = zip(METRICS, _or_none(low), _or_none(high), strict=True)
        cell = [v.item() if isinstance(v, np.generic) else v for v in group]  # numpy -> Python for Spark
        rows += [(*cell, metric, lo, hi) for metric, lo, hi in bounds]
    interval_columns = [T.StructField(c, T.DoubleType()) for c in ("ci_low", "ci_high")]
    schema = T.StructType(
        [per_user.schema[c] for c in [*by, "k"]]
        + [T.StructField("metric", T.StringType()), *interval_columns]
    )
    return per_user.sparkSession.createDataFrame(rows, schema)


def _or_none(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in values]


def poisson_weights(samples: int, seed: int) -> Column:
    """Per customer (segment, customer_id in scope), the ``samples`` Poisson(1) draws of the bootstrap."""

    def draw(sample: Column) -> Column:
        uniform = (F.abs(F.xxhash64(F.lit(seed), sample, *KEYS)) % 1_000_000) / 1_000_000
        weight = F.lit(len(POISSON_CDF))
        for k, cdf in reversed(list(enumerate(POISSON_CDF))):
            weight = F.when(uniform < cdf, F.lit(k)).otherwise(weight)
        return weight

    return F.transform(F.sequence(F.lit(0), F.lit(samples - 1)), draw)


HISTORY_SLICES = ("cold_start", "1", "2-4", "5-19", "20+")
ALL_SLICES = "all"  # gold.model_metrics.slice of every customer, whatever their history


def history_slices(train: DataFrame, test: DataFrame) -> DataFrame:
    """Per test customer × segment, how many orders they had in train, as a slice name:
    ``cold_start`` (none: new customer), ``1``, ``2-4``, ``5-19``, ``20+``."""
    orders = train.groupBy(*KEYS).agg(F.countDistinct("order_id").alias("orders"))
    n = F.coalesce(F.col("orders"), F.lit(0))
    name = (
        F.when(n == 0, "cold_start")
        .when(n == 1, "1")
        .when(n <= 4, "2-4")
        .when(n <= 19, "5-19")
        .otherwise("20+")
    )
    return test.select(*KEYS).distinct().join(orders, KEYS, "left").select(*KEYS, name.alias("history"))


def catalogue(train: DataFrame, categories: DataFrame | None) -> tuple[metrics.Catalogue, int]:
    """(what the list metrics know of each item, from ``train``; the items in it, the coverage's
    denominator). ``categories`` (item_id, category) or None: diversity is not measured."""
    customers = train.select(*KEYS).distinct().count()
    buyers = train.groupBy("item_id").agg(F.countDistinct(*KEYS).alias("buyers")).toPandas()
    head = max(1, math.ceil(len(buyers) * 0.01))
    top = buyers.sort_values(["buyers", "item_id"], ascending=[False, True]).head(head)
    information = -np.log2(buyers.buyers.to_numpy(np.float64) / customers)
    found = dict(categories.collect()) if categories is not None else None
    known = metrics.Catalogue(
        dict(zip(buyers.item_id, information, strict=True)),
        -math.log2(1 / customers) if customers else 0.0,
        frozenset(top.item_id),
        found,
    )
    return known, len(buyers)


def list_metrics(measured: DataFrame, ks: Sequence[int], catalogue_items: int) -> DataFrame:
    """Per model × K (of the models with a list), what the lists are like beyond accuracy, from
    ``measured`` rows (``kernels.metrics.measured``):

    - coverage: distinct recommended items / distinct items in train;
    - novelty: mean self-information -log2(buyers / customers) of recommended items (train counts);
    - popularity_bias: share of recommendations among the top 1% items by train buyers;
    - diversity: per list, distinct categories / list length, averaged (null without categories).
    """
    k_values = F.explode(F.array(*(F.lit(k) for k in ks))).alias("k")
    longest = measured.where(F.col("k") == max(ks)).select("model", k_values, "items")
    shown = longest.select("model", "k", F.explode(F.slice("items", 1, F.col("k"))).alias("item_id"))
    coverage = shown.groupBy("model", "k").agg(
        (F.countDistinct("item_id") / F.lit(catalogue_items)).alias("coverage")
    )
    listed = F.sum("listed")
    sums = (
        measured.groupBy("model", "k")
        .agg(
            listed.alias("listed"),
            F.try_divide(F.sum("information"), listed).alias("novelty"),
            F.try_divide(F.sum("head"), listed).alias("popularity_bias"),
            F.avg("diversity").alias("diversity"),
        )
        .where(F.col("listed") > 0)
        .drop("listed")
    )
    return coverage.join(sums, ["model", "k"])
