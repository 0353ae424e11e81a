"""Per-segment training: ``groupBy(segment).applyInPandas`` builds each segment's matrix and fits
the enabled kernels there; a segment above ``mllib_min_pairs`` trains ALS on Spark MLlib instead.

Every model's output is one frame of ``TRAINED_SCHEMA`` rows, told apart by ``kind``:
``user`` and ``item`` rows carry factors (popularity is a rank-1 factor model: the item's score),
``neighbour`` rows carry ItemKNN's similarity entries. This module takes and returns DataFrames;
it reads and writes no tables itself.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from recsys_spark.config import ModelsConfig
from recsys_spark.distributed.analytics import item_descriptions
from recsys_spark.distributed.errors import udf_errors
from recsys_spark.kernels import als, bias, bpr, content, fusion, graph_filter, itemknn, popularity
from recsys_spark.kernels.factors import FactorModel
from recsys_spark.kernels.matrix import Interactions, build_interactions
from recsys_spark.kernels.routing import GLOBAL_SEGMENT
from recsys_spark.kernels.topn import limit_threads
from recsys_spark.progress import stage

TRAINED_SCHEMA = (
    "kind string, segment string, model string, engine string, id string, other_id string, "
    "factors array<float>, weight float"
)
TRAINED_COLUMNS = [f.split()[0] for f in TRAINED_SCHEMA.split(", ")]
WEIGHTS_COLUMNS = ["segment", "customer_id", "item_id", "weight", "age_days"]
log = logging.getLogger(__name__)


Tuned = Mapping[str, Mapping[str, Mapping[str, Any]]]  # segment -> model -> setting -> value


class TrainingError(RuntimeError):
    """A model failed on a segment; the message names the segment and the model."""


@dataclass(frozen=True)
class TrainSettings:
    models: tuple[str, ...]
    als: als.AlsParams
    bpr: bpr.BprParams
    itemknn: itemknn.ItemKnnParams
    graph: graph_filter.GraphParams
    bias: bias.BiasParams
    popularity: popularity.PopularityParams
    content: content.ContentParams
    fusion: FusionParams
    min_segment_users: int
    min_segment_items: int
    mllib_min_pairs: int
    hybrid_weights: Mapping[str, float] = field(default_factory=dict)  # conf's; {}: no hybrid
    # Segment -> model -> values chosen by tuning, over the values above; the hybrid's weights,
    # one set for every segment, under the global segment.
    tuned: Tuned = field(default_factory=dict)

    def for_segment(self, segment: str) -> TrainSettings:
        """These settings with ``segment``'s tuned values in place of conf's."""
        chosen = self.tuned.get(segment, {})
        replaced = {
            model: dataclasses.replace(getattr(self, model), **values)
            for model, values in chosen.items()
            if model in SETTINGS_MODELS
        }
        return dataclasses.replace(self, **replaced)

    @property
    def blend_weights(self) -> dict[str, float]:
        """The hybrid's weights: conf's, with tuning's choice over them."""
        return {**self.hybrid_weights, **self.tuned.get(GLOBAL_SEGMENT, {}).get("hybrid", {})}


# The models whose settings silver.model_settings records (popularity's and content's included).
SETTINGS_MODELS = ("als", "bpr", "itemknn", "graph", "bias", "popularity", "content")


def settings_rows(settings: TrainSettings, segments: list[str]) -> pd.DataFrame:
    """segment, model, settings (JSON), tuned (JSON or None): what each of ``segments``' models
    is trained with; the record train leaves and evaluate checks before registering."""
    rows = []
    for segment in sorted(segments):
        here = settings.for_segment(segment)
        for model in (m for m in settings.models if m in SETTINGS_MODELS):
            values = dataclasses.asdict(getattr(here, model))
            rows.append((segment, model, _json(values), _json(settings.tuned.get(segment, {}).get(model))))
    if settings.hybrid_weights:
        tuned = settings.tuned.get(GLOBAL_SEGMENT, {}).get("hybrid")
        rows.append((GLOBAL_SEGMENT, "hybrid", _json(settings.blend_weights), _json(tuned)))
    return pd.DataFrame(rows, columns=["segment", "model", "settings", "tuned"])


def _json(values: Mapping[str, Any] | None) -> str | None:
    return json.dumps(dict(values), sort_keys=True) if values else None


def user_item_weights(
    interactions: DataFrame, weight: str, log_scale: bool, with_age: bool = False
) -> DataFrame:
    """One row per segment × customer × item: the confidence weight (purchase lines, quantity or
    revenue, optionally log(1 + x)) and, ``with_age``, the days from the customer's latest purchase
    of the item to the latest event in the data (recency against the data, not the clock);
    without it ``age_days`` is null and the extra pass over the data is saved."""
    measure = {"count": F.count(F.lit(1)), "quantity": F.sum("quantity"), "revenue": F.sum("revenue")}[weight]
    pairs = interactions.groupBy("segment", "customer_id", "item_id").agg(
        measure.cast("double").alias("weight"), F.max("event_ts").alias("last_ts")
    )
    value = F.log1p("weight") if log_scale else F.col("weight")
    age = F.lit(None)
    if with_age:
        pairs = pairs.crossJoin(interactions.agg(F.max("event_ts").alias("as_of")))
        age = (F.unix_timestamp("as_of") - F.unix_timestamp("last_ts")) / 86400.0
    return pairs.select(
        "segment",
        "customer_id",
        "item_id",
        value.cast("float").alias("weight"),
        age.cast("float").alias("age_days"),
    )


def rating_weights(interactions: DataFrame) -> DataFrame:
    """``user_item_weights``' rows for explicit feedback: each pair's latest rating (the mean
    of its ratings when the input has no times)."""
    ratings = interactions.groupBy("segment", "customer_id", "item_id").agg(
        F.coalesce(F.max_by("rating", "event_ts"), F.avg("rating")).cast("float").alias("weight")
    )
    return ratings.select(*WEIGHTS_COLUMNS[:4], F.lit(None).cast("float").alias("age_days"))


def confidence_weights(models: ModelsConfig, interactions: DataFrame) -> DataFrame:
    """``user_item_weights`` as conf ``models.confidence`` says (ages only when popularity
    decays); with ``models.feedback`` explicit, the ratings."""
    if models.feedback == "explicit":
        return rating_weights(interactions)
    with_age = models.popularity.half_life_days is not None
    return user_item_weights(interactions, models.confidence.weight, models.confidence.log_scale, with_age)


def training_plan(weights: DataFrame, settings: TrainSettings) -> pd.DataFrame:
    """Per segment: users, items, pairs, and how it trains (``engine``) or why it does not."""
    plan = (
        weights.groupBy("segment")
        .agg(
            F.countDistinct("customer_id").alias("users"),
            F.countDistinct("item_id").alias("items"),
            F.count(F.lit(1)).alias("pairs"),
        )
        .orderBy("segment")
        .toPandas()
    )
    too_few_users = plan.users < settings.min_segment_users
    too_few_items = plan["items"] < settings.min_segment_items
    plan["skip_reason"] = None
    plan.loc[too_few_items, "skip_reason"] = (
        f"fewer than models.min_segment_items={settings.min_segment_items} items"
    )
    plan.loc[too_few_users, "skip_reason"] = (
        f"fewer than models.min_segment_users={settings.min_segment_users} users"
    )
    plan["engine"] = np.where(plan.pairs > settings.mllib_min_pairs, "mllib", "implicit")
    plan.loc[plan.skip_reason.notna(), "engine"] = None
    return plan


def train_segments(
    weights: DataFrame,
    plan: pd.DataFrame,
    settings: TrainSettings,
    threads: int,
    item_texts: dict[str, str | None] | None = None,
) -> DataFrame:
    """Fit the enabled models of every segment in one pandas UDF call per segment.

    Skipped segments get popularity only; on MLlib segments ALS is left to ``train_mllib_als``.
    ``item_texts`` (item id -> description, every item of the catalogue) feeds the content
    model, which scores every catalogue item in every segment, bought there or not.
    """
    models_of = {}
    for row in plan.itertuples():
        wanted = [] if row.skip_reason else [m for m in settings.models if m != "popularity"]
        if row.engine == "mllib":
            wanted = [m for m in wanted if m != "als"]
        models_of[row.segment] = ["popularity", *wanted]
    return (
        weights.select(*WEIGHTS_COLUMNS)
        .groupBy("segment")
        .applyInPandas(_train_segment(models_of, settings, threads, item_texts or {}), TRAINED_SCHEMA)
    )


@dataclass(frozen=True)
class FusionParams:
    strategy: fusion.Strategy
    alpha: float
    dims: int


def fused_embeddings(trained: DataFrame, params: FusionParams) -> DataFrame:
    """Item rows of model ``fusion.FUSED_MODEL`` in every segment with ALS and content vectors:
    ``kernels.fusion.fuse`` of the two. Items with a description but no purchases (no ALS
    factors) are placed by their content alone."""
    parts = trained.where((F.col("kind") == "item") & F.col("model").isin("als", "content"))
    return parts.groupBy("segment").applyInPandas(_fuse_segment(params), TRAINED_SCHEMA)


def _fuse_segment(params: FusionParams) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def fuse(frame: pd.DataFrame) -> pd.DataFrame:
        segment = frame.segment.iat[0]
        collaborative, text = frame[frame.model == "als"], frame[frame.model == "content"]
        if collaborative.empty or text.empty:
            return pd.DataFrame(columns=TRAINED_COLUMNS)
        try:
            ids = np.union1d(collaborative.id.to_numpy(str), text.id.to_numpy(str)).astype(object)
            vectors = fusion.fuse(
                _aligned(ids, collaborative), _aligned(ids, text), params.strategy, params.alpha, params.dims
            )
        except Exception as exc:
            raise TrainingError(
                f"segment {segment!r}, model {fusion.FUSED_MODEL}: {type(exc).__name__}: {exc}"
            ) from exc
        rows = _rows("item", fusion.FUSED_MODEL, ids, vectors)
        rows["segment"] = segment
        return rows[TRAINED_COLUMNS]

    return fuse


def _aligned(ids: np.ndarray, rows: pd.DataFrame) -> np.ndarray:
    """``rows``' factors in the order of ``ids``; zeros for ids it lacks."""
    vectors = np.stack(rows.factors.to_numpy()).astype(np.float32)
    out = np.zeros((len(ids), vectors.shape[1]), np.float32)
    index = pd.Index(rows.id.to_numpy(str)).get_indexer(ids)
    out[index >= 0] = vectors[index[index >= 0]]
    return out


def global_popularity(trained: DataFrame) -> DataFrame:
    """Popularity over every segment (segment ``all``): the sum of the segments' item scores,
    i.e. a customer counts once in each segment they bought in."""
    return (
        trained.where((F.col("model") == "popularity") & (F.col("segment") != GLOBAL_SEGMENT))
        .groupBy("id")
        .agg(F.sum(F.col("factors")[0]).cast("float").alias("score"))
        .select(
            F.lit("item").alias("kind"),
            F.lit(GLOBAL_SEGMENT).alias("segment"),
            F.lit("popularity").alias("model"),
            F.lit("implicit").alias("engine"),
            "id",
            F.lit(None).cast("string").alias("other_id"),
            F.array("score").alias("factors"),
            F.lit(None).cast("float").alias("weight"),
        )
    )


def train_mllib_als(
    weights: DataFrame, segments: list[str], params: als.AlsParams, baseline: DataFrame | None = None
) -> DataFrame | None:
    """ALS on Spark MLlib for segments too big for one executor; same rows as the kernel's.

    MLlib needs integer ids: each segment's distinct ids are numbered in sorted order. MLlib's
    implicit ALS scales regularization by each user's and item's count, so its factors differ
    from the kernel's for the same parameters. With explicit feedback the weights are ratings:
    MLlib (implicitPrefs off) factorizes what ``baseline`` (the bias model's trained rows) leaves
    of them, and each vector carries its baseline vector after its factors, so that the dot
    product predicts mu + b_u + b_i + x_u . y_i (Koren, Bell, Volinsky 2009: biased MF).
    """
    from pyspark.ml.recommendation import ALS

    frames = []
    implicit = params.feedback == "implicit"
    for segment in segments:
        rows = weights.where(F.col("segment") == segment)
        if baseline is not None:
            rows = _residuals(rows, baseline.where(F.col("segment") == segment))
        users = _numbered(rows, "customer_id")
        items = _numbered(rows, "item_id")
        ratings = rows.join(users, "customer_id").join(items, "item_id")
        if params.log_scale and implicit:
            ratings = ratings.withColumn("weight", F.log1p("weight"))
        model = ALS(
            rank=params.factors,
            maxIter=params.iterations,
            regParam=params.regularization,
            alpha=params.alpha,
            implicitPrefs=implicit,
            seed=params.seed,
            userCol="customer_id_index",
            itemCol="item_id_index",
            ratingCol="weight",
        ).fit(ratings)
        for kind, factors, ids, column in (
            ("user", model.userFactors, users, "customer_id"),
            ("item", model.itemFactors, items, "item_id"),
        ):
            named = factors.join(ids, factors.id == ids[f"{column}_index"]).select(
                F.col(column).alias("id"), F.col("features").cast("array<float>").alias("factors")
            )
            if baseline is not None:
                kinds = (F.col("segment") == segment) & (F.col("kind") == kind)
                named = _after_baseline(named, baseline.where(kinds))
            frames.append(_trained_rows(named, kind, segment))
    if not frames:
        return None
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


def _trained_rows(named: DataFrame, kind: str, segment: str) -> DataFrame:
    """MLlib's ALS factors (id, factors) of ``kind`` as TRAINED_SCHEMA rows."""
    return named.select(
        F.lit(kind).alias("kind"),
        F.lit(segment).alias("segment"),
        F.lit("als").alias("model"),
        F.lit("mllib").alias("engine"),
        "id",
        F.lit(None).cast("string").alias("other_id"),
        "factors",
        F.lit(None).cast("float").alias("weight"),
    )


def dot_product(left: str, right: str) -> Column:
    """The dot product of two array columns of the same length (a factor model's score)."""
    return F.aggregate(F.zip_with(left, right, lambda a, b: a * b), F.lit(0.0), lambda acc, x: acc + x)


def _residuals(ratings: DataFrame, baseline: DataFrame) -> DataFrame:
    """``ratings`` (weights rows) less the baseline's prediction: the dot product of the
    customer's and the item's baseline vectors."""
    users = baseline.where(F.col("kind") == "user").select(
        F.col("id").alias("customer_id"), F.col("factors").alias("u")
    )
    items = baseline.where(F.col("kind") == "item").select(
        F.col("id").alias("item_id"), F.col("factors").alias("i")
    )
    predicted = dot_product("u", "i")
    with_both = ratings.join(users, "customer_id").join(items, "item_id")
    return with_both.select(*WEIGHTS_COLUMNS[:3], (F.col("weight") - predicted).cast("float").alias("weight"))


def _after_baseline(factors: DataFrame, baseline: DataFrame) -> DataFrame:
    """``factors`` (id, factors) with each id's baseline vector appended."""
    vectors = baseline.select("id", F.col("factors").alias("baseline"))
    return factors.join(vectors, "id").select("id", F.concat("factors", "baseline").alias("factors"))


def threads_per_task(total_cores: int, executor_cores: int, concurrent_tasks: int) -> int:
    """Cores a training task may use: its executor's for one big segment, one each when as many
    segments train as there are cores."""
    share = total_cores // max(1, min(concurrent_tasks, total_cores))
    return max(1, min(share, executor_cores))


def _numbered(rows: DataFrame, column: str) -> DataFrame:
    order = Window.orderBy(column)
    return rows.select(column).distinct().withColumn(f"{column}_index", F.row_number().over(order) - 1)


def _train_segment(
    models_of: dict[str, list[str]], settings: TrainSettings, threads: int, item_texts: dict[str, str | None]
) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def train(frame: pd.DataFrame) -> pd.DataFrame:
        segment = frame.segment.iat[0]
        step = "building the matrix"
        outputs = []
        settings_here = settings.for_segment(segment)
        try:
            data = build_interactions(frame.customer_id, frame.item_id, frame.weight)
            with limit_threads(threads):
                for model in models_of.get(segment, ["popularity"]):
                    step = f"model {model} ({data.shape[0]} users × {data.shape[1]} items)"
                    if model == "content":
                        outputs.append(_fit_content(data, settings_here.content, item_texts))
                    else:
                        outputs.append(_fit(model, data, frame, settings_here, threads))
        except Exception as exc:
            # Raised, never swallowed: the job fails and names the segment and what failed.
            raise TrainingError(f"segment {segment!r}, {step}: {type(exc).__name__}: {exc}") from exc
        with warnings.catch_warnings():
            # Models fill different columns (factors or neighbour weights); the rest are empty.
            warnings.simplefilter("ignore", FutureWarning)
            result = pd.concat(outputs, ignore_index=True)
        result.insert(1, "segment", segment)
        return result[TRAINED_COLUMNS]

    return train


def _fit_content(
    data: Interactions, params: content.ContentParams, item_texts: dict[str, str | None]
) -> pd.DataFrame:
    """The content model over the whole catalogue: the segment's purchases are mapped onto the
    catalogue's items, so items never bought in the segment get vectors (and scores) too."""
    catalogue = np.array(sorted(set(item_texts) | set(data.item_ids)), dtype=object)
    columns = pd.Index(catalogue).get_indexer(data.item_ids)
    to_catalogue = sp.csr_matrix(
        (np.ones(len(columns), dtype=np.float32), (np.arange(len(columns)), columns)),
        shape=(len(columns), len(catalogue)),
    )
    fitted = content.fit(
        sp.csr_matrix(data.weights @ to_catalogue), [item_texts.get(i) for i in catalogue], params
    )
    return pd.concat(
        [
            _rows("user", "content", data.user_ids, fitted.user_factors),
            _rows("item", "content", catalogue, fitted.item_factors),
        ],
        ignore_index=True,
    )


def _fit(
    model: str, data: Interactions, frame: pd.DataFrame, settings: TrainSettings, threads: int
) -> pd.DataFrame:
    if model == "popularity":
        ages = data.matrix(frame.age_days) if settings.popularity.half_life_days is not None else None
        scores = popularity.fit(data.weights, settings.popularity, ages).item_scores
        return _rows("item", model, data.item_ids, scores[:, None])
    if model == "itemknn":
        similarity = itemknn.fit(data.weights, settings.itemknn, threads).similarity.tocoo()
        return pd.DataFrame(
            {
                "kind": "neighbour",
                "model": model,
                "engine": "implicit",
                "id": data.item_ids[similarity.row],
                "other_id": data.item_ids[similarity.col],
                "factors": None,
                "weight": similarity.data.astype(np.float32),
            }
        )
    fits: dict[str, Callable[[], FactorModel]] = {
        "als": lambda: als.fit(data.weights, settings.als, threads, _baseline(data, settings)),
        "bpr": lambda: bpr.fit(data.weights, settings.bpr, threads),
        "graph": lambda: graph_filter.fit(data.weights, settings.graph),
        "bias": lambda: bias.fit(data.weights, settings.bias),
    }
    if model not in fits:
        raise ValueError(f"no kernel trains model {model!r}")
    fitted = fits[model]()
    if not (np.isfinite(fitted.user_factors).all() and np.isfinite(fitted.item_factors).all()):
        raise ValueError("the factors contain NaN or infinity; lower the learning rate or check the weights")
    rows = [
        _rows("user", model, data.user_ids, fitted.user_factors),
        _rows("item", model, data.item_ids, fitted.item_factors),
    ]
    if fitted.fold is not None:  # the graph filter's customer side, for its score intervals
        rows.append(_rows("item", graph_filter.FOLD_MODEL, data.item_ids, fitted.fold))
    return pd.concat(rows, ignore_index=True)


def _baseline(data: Interactions, settings: TrainSettings) -> FactorModel | None:
    """What explicit ALS factorizes the residuals of: the bias baseline (None: implicit feedback)."""
    return bias.fit(data.weights, settings.bias) if settings.als.feedback == "explicit" else None


def _rows(kind: str, model: str, ids: np.ndarray, vectors: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "kind": kind,
            "model": model,
            "engine": "implicit",
            "id": ids,
            "other_id": None,
            "factors": list(np.asarray(vectors, dtype=np.float32)),
            "weight": math.nan,
        }
    )


@dataclass
class Fitted:
    """Trained models as the three model tables' rows (user and item factors, neighbours), in memory."""

    user_factors: DataFrame  # segment, customer_id, model, engine, factors
    item_factors: DataFrame  # segment, item_id, model, engine, factors
    item_neighbours: DataFrame  # segment, item_id, neighbour_item_id, model, similarity
    cached: list[DataFrame] = field(default_factory=list)
    models: tuple[str, ...] | None = None  # trained by fit_models (None: read from the tables)

    def unpersist(self) -> None:
        for frame in self.cached:
            frame.unpersist()

    @staticmethod
    def of_trained(trained: DataFrame, cached: list[DataFrame], models: tuple[str, ...]) -> Fitted:
        """The three tables' rows out of ``TRAINED_SCHEMA`` rows."""
        kind = F.col("kind")
        return Fitted(
            trained.where(kind == "user").select(
                "segment", F.col("id").alias("customer_id"), "model", "engine", "factors"
            ),
            trained.where(kind == "item").select(
                "segment", F.col("id").alias("item_id"), "model", "engine", "factors"
            ),
            trained.where(kind == "neighbour").select(
                "segment",
                F.col("id").alias("item_id"),
                F.col("other_id").alias("neighbour_item_id"),
                "model",
                F.col("weight").alias("similarity"),
            ),
            cached,
            models,
        )


@dataclass
class TrainResult:
    models: list[str] = field(default_factory=list)  # the models trained (left out: no input)
    pairs: int = 0
    segments: int = 0
    skipped_segments: dict[str, str] = field(default_factory=dict)
    trained_segments: list[str] = field(default_factory=list)
    tuned_segments: list[str] = field(default_factory=list)  # segments with values chosen by tuning
    tuned_blend: dict[str, float] | None = None  # the hybrid's weights chosen by tuning
    mllib_segments: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # per output table
    seconds: dict[str, float] = field(default_factory=dict)  # per stage


class NothingToTrainError(ValueError):
    """The interactions to train on are empty."""


def fit_models(
    spark: SparkSession,
    models: ModelsConfig,
    settings: TrainSettings,
    interactions: DataFrame,
    source: str,
    step: str,
    result: TrainResult,
) -> Fitted:
    """Weights, segment plan and every enabled model per segment, from ``interactions``
    (``source``: silver.interactions, or an evaluation split's train part). Fills ``result``'s
    counts."""
    seconds = result.seconds
    with stage(step, "customer x item weights and segment plan", seconds) as st:
        weights = confidence_weights(models, interactions).persist()
        plan = training_plan(weights, settings)  # its job also fills the cache: no count of its own
        result.pairs = int(plan.pairs.sum())
        if result.pairs == 0:
            raise NothingToTrainError(
                f"no interactions to train on in {source}: run `recsys ingest` first, or check "
                "silver.interactions_quarantine for why every row was rejected"
            )
        weight = "rating" if models.feedback == "explicit" else models.confidence.weight
        st.counts.update(pairs=result.pairs, weight=weight)
        threads = _plan_counts(spark, plan, settings, step, result, st.counts)
    with stage(step, "fit models per segment", seconds) as st:
        settings, texts = _with_texts(settings, interactions, step)
        result.models = list(settings.models)
        fitted, trained = _fit_all(weights, plan, settings, threads, texts, result.mllib_segments)
        with udf_errors(TrainingError):
            counts = trained.groupBy("kind", "model").count().collect()
        st.counts.update(
            models=list(settings.models), rows={f"{r.kind}/{r.model}": r["count"] for r in counts}
        )
    weights.unpersist()
    return Fitted.of_trained(trained, [fitted], tuple(settings.models))


def _with_texts(
    settings: TrainSettings, interactions: DataFrame, step: str
) -> tuple[TrainSettings, dict[str, str | None] | None]:
    """The item descriptions the content model reads (item id -> text), or, when it is enabled
    but no word is shared by ``min_df`` descriptions, the settings without it (logged): a
    content model of all-zero vectors would rank at random."""
    if "content" not in settings.models:
        return settings, None
    texts = {r.item_id: r.description for r in item_descriptions(interactions).collect()}
    if content.has_vocabulary(list(texts.values()), settings.content.min_df):
        return settings, texts
    log.info(
        "%s: content model left out: no word is in the descriptions of %d or more items "
        "(input.columns.description, models.content.min_df)",
        step,
        settings.content.min_df,
    )
    return dataclasses.replace(settings, models=tuple(m for m in settings.models if m != "content")), None


def _plan_counts(
    spark: SparkSession,
    plan: pd.DataFrame,
    settings: TrainSettings,
    step: str,
    result: TrainResult,
    counts: dict,
) -> int:
    """Fill ``result`` and ``counts`` from the segment plan, log the skipped segments; return
    the threads each training task may use."""
    skipped = plan[plan.skip_reason.notna()]
    result.segments = len(plan)
    result.skipped_segments = dict(zip(skipped.segment, skipped.skip_reason, strict=True))
    result.mllib_segments = plan.segment[plan.engine == "mllib"].tolist()
    result.trained_segments = plan.segment[plan.engine.notna()].tolist()
    if len(skipped):
        log.info(
            "%s: %d segments not trained (min %d users, %d items); their customers get "
            "overall popularity: %s",
            step,
            len(skipped),
            settings.min_segment_users,
            settings.min_segment_items,
            ", ".join(
                f"{s} ({u} users, {i} items)" for s, u, i in skipped[["segment", "users", "items"]].values
            ),
        )
    trained_segments = int((plan.engine == "implicit").sum())
    threads = threads_per_task(*executor_cores(spark), trained_segments)
    counts.update(
        segments=len(plan),
        implicit=trained_segments,
        mllib=len(result.mllib_segments),
        skipped=len(skipped),
        threads_per_task=threads,
    )
    return threads


def _fit_all(
    weights: DataFrame,
    plan: pd.DataFrame,
    settings: TrainSettings,
    threads: int,
    texts: dict[str, str | None] | None,
    mllib_segments: list[str],
) -> tuple[DataFrame, DataFrame]:
    """(the fitted rows, persisted; those plus the fused embedding and global popularity)."""
    trained = train_segments(weights, plan, settings, threads, texts)
    segment_rows = None
    if "als" in settings.models and mllib_segments:
        baseline = None
        if settings.als.feedback == "explicit":  # MLlib factorizes what the bias model leaves
            segment_rows = trained.persist()
            with udf_errors(TrainingError):
                segment_rows.count()
            baseline = segment_rows.where(F.col("model") == "bias")
        trained = trained.unionByName(train_mllib_als(weights, mllib_segments, settings.als, baseline))
    fitted = trained.persist()
    with udf_errors(TrainingError):
        fitted.count()
    if segment_rows is not None:
        segment_rows.unpersist()
    trained = fitted
    if {"als", "content"} <= set(settings.models):
        trained = trained.unionByName(fused_embeddings(fitted, settings.fusion))
    if len(plan) > 1 or plan.segment.iat[0] != GLOBAL_SEGMENT:
        trained = trained.unionByName(global_popularity(fitted))
    return fitted, trained


def executor_cores(spark: SparkSession) -> tuple[int, int]:
    """(cores across the cluster, cores of one executor): what a task may share its threads with.

    Locally both are the local[*] core count. Under Spark Connect, where there is no
    SparkContext, the configured values are used.
    """
    try:
        total = spark.sparkContext.defaultParallelism
    except Exception:  # Spark Connect: no SparkContext on the client
        total = int(spark.conf.get("spark.default.parallelism", "1") or 1)
    per_executor = int(spark.conf.get("spark.executor.cores", str(total)) or total)
    return total, max(1, min(per_executor, total))
