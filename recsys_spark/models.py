"""The `train` and `score` steps.

train: silver.interactions -> silver.user_factors, silver.item_factors, silver.item_neighbours
score: those tables -> gold.recommendations, gold.similar_items, gold.item_audience, gold.lookalikes
Each table is replaced in one commit, stamped with the run's id.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from recsys_spark.config import Config
from recsys_spark.distributed import scoring, training
from recsys_spark.distributed.analytics import category_of, item_descriptions
from recsys_spark.distributed.baskets import single_item_rules
from recsys_spark.distributed.errors import udf_errors
from recsys_spark.distributed.reranking import final_lists
from recsys_spark.distributed.scoring import Catalog
from recsys_spark.distributed.training import GLOBAL_SEGMENT
from recsys_spark.kernels import als, bpr, content, itemknn, popularity, routing
from recsys_spark.kernels.factors import FACTOR_MODELS
from recsys_spark.kernels.fusion import FUSED_MODEL
from recsys_spark.kernels.rerank import CANDIDATE_COLUMNS, MMR_VECTOR_MODELS, ItemVectors, ListSettings, Rules
from recsys_spark.progress import stage
from recsys_spark.session import executor_cores
from recsys_spark.tables import overwrite_table, table_name, utc_now

log = logging.getLogger(__name__)

# gold.recommendations.reason: why a row is there.
REASONS = {
    "als": "factor_score",
    "bpr": "factor_score",
    "itemknn": "because_bought",  # reason_item_id: the bought item that contributed most
    "popularity": "popular_in_segment",
    "content": "similar_description",  # close to the descriptions of what the customer bought
    "rules": "bought_with_last_basket",  # hybrid: reason_item_id is the item in the last basket
}
DERIVED_MODELS = ("hybrid",)  # built at scoring from trained models: nothing of their own to train
POPULAR_OVERALL = "popular_overall"  # the customer's segment was too small to train
SCORING_THREADS = 1  # scoring tasks run side by side, one per core


@dataclass
class TrainResult:
    pairs: int = 0
    segments: int = 0
    skipped_segments: dict[str, str] = field(default_factory=dict)
    mllib_segments: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # per output table
    seconds: dict[str, float] = field(default_factory=dict)  # per stage


@dataclass
class ScoreResult:
    customers: int
    rows: dict[str, int] = field(default_factory=dict)  # per output table
    published_customers: int = 0  # got the published model's top-N
    fallback_customers: int = 0  # got overall popularity
    model: str = ""  # the published model
    why: str = ""  # why it was published
    seconds: dict[str, float] = field(default_factory=dict)  # per stage


# What `score` publishes; a caller may ask for fewer (e.g. the benchmark, recommendations only).
SCORE_OUTPUTS = ("recommendations", "similar_items", "item_audience")


def train_settings(config: Config) -> training.TrainSettings:
    conf = config.models
    return training.TrainSettings(
        models=tuple(m for m in conf.enabled if m not in DERIVED_MODELS),
        als=als.AlsParams(
            conf.als.factors,
            conf.als.regularization,
            conf.als.iterations,
            conf.confidence.alpha,
            conf.als.seed,
        ),
        bpr=bpr.BprParams(
            conf.bpr.factors,
            conf.bpr.learning_rate,
            conf.bpr.regularization,
            conf.bpr.iterations,
            conf.bpr.seed,
        ),
        itemknn=itemknn.ItemKnnParams(
            conf.itemknn.similarity, conf.itemknn.neighbours, conf.itemknn.bm25_k1, conf.itemknn.bm25_b
        ),
        popularity=popularity.PopularityParams(conf.popularity.half_life_days),
        content=content.ContentParams(conf.content.dims, conf.content.min_df, conf.als.seed),
        min_segment_users=conf.min_segment_users,
        min_segment_items=conf.min_segment_items,
        mllib_min_pairs=conf.mllib_min_pairs,
    )


def user_item_weights(config: Config, interactions: DataFrame) -> DataFrame:
    """Customer × item confidence weights per segment, as conf ``models.confidence`` says."""
    conf = config.models
    with_age = conf.popularity.half_life_days is not None
    return training.user_item_weights(
        interactions, conf.confidence.weight, conf.confidence.log_scale, with_age
    )


@dataclass
class Fitted:
    """Trained models as the three model tables' rows (user and item factors, neighbours), in memory."""

    user_factors: DataFrame  # segment, customer_id, model, engine, factors
    item_factors: DataFrame  # segment, item_id, model, engine, factors
    item_neighbours: DataFrame  # segment, item_id, neighbour_item_id, model, similarity
    cached: list[DataFrame] = field(default_factory=list)

    def unpersist(self) -> None:
        for frame in self.cached:
            frame.unpersist()


def fit_models(
    spark: SparkSession, config: Config, interactions: DataFrame, step: str, result: TrainResult
) -> Fitted:
    """Weights, segment plan and every enabled model per segment, from ``interactions``
    (silver.interactions, or an evaluation split's train part). Fills ``result``'s counts."""
    settings = train_settings(config)
    conf = config.models
    seconds = result.seconds
    with stage(step, "customer x item weights", seconds) as st:
        weights = user_item_weights(config, interactions).persist()
        result.pairs = weights.count()
        if result.pairs == 0:
            raise ValueError(
                f"no interactions to train on in {table_name(config, 'interactions')}: run `recsys ingest` "
                "first, or check silver.interactions_quarantine for why every row was rejected"
            )
        st.counts.update(pairs=result.pairs, weight=conf.confidence.weight)

    with stage(step, "plan segments", seconds) as st:
        plan = training.training_plan(weights, settings)
        skipped = plan[plan.skip_reason.notna()]
        result.segments = len(plan)
        result.skipped_segments = dict(zip(skipped.segment, skipped.skip_reason, strict=True))
        result.mllib_segments = plan.segment[plan.engine == "mllib"].tolist()
        if len(skipped):
            log.info(
                "%s: %d segments not trained (min %d users, %d items); their customers get "
                "overall popularity: %s",
                step,
                len(skipped),
                conf.min_segment_users,
                conf.min_segment_items,
                ", ".join(
                    f"{s} ({u} users, {i} items)" for s, u, i in skipped[["segment", "users", "items"]].values
                ),
            )
        trained_segments = int((plan.engine == "implicit").sum())
        threads = training.threads_per_task(*executor_cores(spark), trained_segments)
        st.counts.update(
            segments=len(plan),
            implicit=trained_segments,
            mllib=len(result.mllib_segments),
            skipped=len(skipped),
            threads_per_task=threads,
        )

    with stage(step, "fit models per segment", seconds) as st:
        texts = None
        if "content" in settings.models:
            texts = {r.item_id: r.description for r in item_descriptions(interactions).collect()}
        trained = training.train_segments(weights, plan, settings, threads, texts)
        if "als" in settings.models and result.mllib_segments:
            trained = trained.unionByName(
                training.train_mllib_als(weights, result.mllib_segments, settings.als)
            )
        fitted = trained.persist()
        with udf_errors(training.TrainingError):
            fitted.count()
        trained = fitted
        if {"als", "content"} <= set(settings.models):
            fusion = conf.fusion
            params = training.FusionParams(fusion.strategy, fusion.alpha, fusion.dims)
            trained = trained.unionByName(training.fused_embeddings(fitted, params))
        if len(plan) > 1 or plan.segment.iat[0] != GLOBAL_SEGMENT:
            trained = trained.unionByName(training.global_popularity(fitted))
        with udf_errors(training.TrainingError):
            counts = trained.groupBy("kind", "model").count().collect()
        st.counts.update(
            models=list(settings.models), rows={f"{r.kind}/{r.model}": r["count"] for r in counts}
        )
    weights.unpersist()
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
        [fitted],
    )


def run_train(spark: SparkSession, config: Config, run_id: str) -> TrainResult:
    """Train every enabled model on every segment and publish the three silver model tables."""
    result = TrainResult()
    interactions = spark.table(str(table_name(config, "interactions")))
    fitted = fit_models(spark, config, interactions, "train", result)
    with stage("train", "publish factor tables", result.seconds) as st:
        stamp = {"run_id": F.lit(run_id), "trained_at": F.lit(utc_now()).cast("timestamp")}
        outputs = {
            "user_factors": fitted.user_factors,
            "item_factors": fitted.item_factors,
            "item_neighbours": fitted.item_neighbours,
        }
        for key, frame in outputs.items():
            overwrite_table(spark, config, table_name(config, key), frame.withColumns(stamp))
            result.rows[key] = spark.table(str(table_name(config, key))).count()
        st.counts.update(result.rows)
    fitted.unpersist()
    return result


def fitted_from_tables(spark: SparkSession, config: Config) -> Fitted:
    """The models the last `recsys train` published."""
    for key in ("user_factors", "item_factors", "item_neighbours"):
        if not spark.catalog.tableExists(str(table_name(config, key))):
            raise ValueError(
                f"{table_name(config, key)} does not exist: run `recsys train` before `recsys score`"
            )
    return Fitted(
        *(
            spark.table(str(table_name(config, key)))
            for key in ("user_factors", "item_factors", "item_neighbours")
        )
    )


def serving_sources(config: Config, model: str) -> set[str]:
    """The models and sources serving ``model`` reads: itself, popularity for fallbacks, and the
    hybrid's sources when it is the model or takes short histories (cold-start routing)."""
    conf = config.models
    needed = {model, "popularity"}
    if model == "hybrid" or ("hybrid" in conf.enabled and conf.hybrid.short_history_orders > 0):
        for weights in (conf.hybrid.weights, conf.hybrid.short_history_weights):
            needed |= {source for source, weight in weights.items() if weight > 0}
    return needed


def model_tables(spark: SparkSession, config: Config, model: str) -> dict[str, pd.DataFrame]:
    """What serving ``model`` needs from the last training, as pandas: item factors (with the
    vectors MMR compares), user factors, ItemKNN neighbours, single-item rules and item
    categories, as far as ``serving_sources`` asks for them."""
    fitted = fitted_from_tables(spark, config)
    needed = serving_sources(config, model)
    wanted = F.col("model").isin(sorted(needed | set(MMR_VECTOR_MODELS)))
    stamps = ["run_id", "trained_at"]
    tables = {"item_factors": fitted.item_factors.where(wanted).drop(*stamps).toPandas()}
    users = fitted.user_factors.where(F.col("model").isin(sorted(needed & set(FACTOR_MODELS))))
    tables["user_factors"] = users.drop(*stamps).toPandas()
    if "itemknn" in needed:
        tables["item_neighbours"] = fitted.item_neighbours.drop(*stamps).toPandas()
    rules = association_rules(spark, config) if "rules" in needed else None
    if rules is not None:
        pairs = single_item_rules(rules, "antecedent_id", "item_id")
        tables["rules"] = pairs.select("segment", "antecedent_id", "item_id", "confidence").toPandas()
    interactions = spark.table(str(table_name(config, "interactions")))
    described = item_descriptions(interactions).select(
        "item_id", category_of(F.col("description")).alias("category")
    )
    tables["categories"] = described.where(F.col("category").isNotNull()).toPandas()
    return tables


def serving_settings(config: Config, model: str) -> dict[str, Any]:
    """The served model's config: its name and N, the hybrid and the business rules (the
    exclude lists as they stand in conf; ``models.exclude_table`` is read at batch scoring)."""
    conf, rules = config.models, config.business_rules
    settings: dict[str, Any] = {
        "model": model,
        "top_n": conf.top_n,
        "rules": {
            "blocked": sorted(conf.exclude_items),
            "category_include": rules.category_include,
            "category_exclude": rules.category_exclude,
            "max_per_category": rules.max_per_category,
            "mmr_lambda": rules.mmr_lambda,
            "candidates": rules.candidates,
        },
    }
    if "hybrid" in conf.enabled:
        settings["hybrid"] = dataclasses.asdict(conf.hybrid)
    return settings


def published_model(spark: SparkSession, config: Config) -> tuple[str, str]:
    """(model, why): the conf's choice, or with ``models.publish: champion`` the latest evaluation's."""
    if config.models.publish != "champion":
        return config.models.publish, "models.publish in conf"
    name = table_name(config, "published_model")
    latest = None
    if spark.catalog.tableExists(str(name)):
        latest = spark.table(str(name)).orderBy(F.desc("decided_at")).first()
    if latest is None:
        return "popularity", "no evaluation has chosen a champion yet (run `recsys evaluate`)"
    if latest.model not in [*config.models.enabled, "popularity_global"]:
        return "popularity", f"the champion {latest.model} is no longer in models.enabled"
    return latest.model, latest.reason


def run_score(
    spark: SparkSession, config: Config, run_id: str, outputs: tuple[str, ...] = SCORE_OUTPUTS
) -> ScoreResult:
    """Score every customer with the published model and publish the gold tables in ``outputs``
    (``item_audience`` also writes ``lookalikes``)."""
    conf = config.models
    seconds: dict[str, float] = {}
    fitted = fitted_from_tables(spark, config)
    publish, why = published_model(spark, config)
    log.info("score: publishing %s (%s)", publish, why)
    threads = SCORING_THREADS
    with stage("score", "load item candidates", seconds) as st:
        blocked = blocked_items(spark, config)
        items = fitted.item_factors.select("segment", "item_id", "model", "factors").toPandas()
        st.counts.update(item_rows=len(items), blocked_items=len(blocked))

    interactions = spark.table(str(table_name(config, "interactions")))
    with stage("score", "customer histories", seconds) as st:
        histories = customer_histories(config, interactions, "hybrid").persist()
        result = ScoreResult(histories.count(), seconds=seconds, model=publish, why=why)
        segment_users = dict(histories.groupBy("segment").count().collect())
        rules = business_rules(config, blocked)
        context = list_context(
            config, interactions, items, rules, association_rules(spark, config), segment_users
        )
        st.counts.update(customers=result.customers, business_rules="on" if rules.beyond_exclusion else "off")

    stamp = {"run_id": F.lit(run_id), "generated_at": F.lit(utc_now()).cast("timestamp")}
    with stage("score", f"recommendations ({publish})", seconds) as st:
        recommendations = routed_lists(config, publish, fitted, items, histories, context, conf.top_n)
        _publish(spark, config, "recommendations", recommendations.withColumns(stamp), result)
        published = spark.table(str(table_name(config, "recommendations")))
        per_source = dict(
            published.groupBy(F.col("reason") == POPULAR_OVERALL)
            .agg(F.countDistinct("segment", "customer_id"))
            .collect()
        )
        result.published_customers = per_source.get(False, 0)
        result.fallback_customers = per_source.get(True, 0)
        by_model = published.groupBy("model").agg(F.countDistinct("segment", "customer_id")).collect()
        st.counts.update(
            customers=result.customers,
            published=result.published_customers,
            popularity_fallback=result.fallback_customers,
            customers_by_model=dict(sorted(by_model)),
            rows=result.rows["recommendations"],
        )

    if "similar_items" in outputs:
        with stage("score", "similar items", seconds) as st:
            similar = _similar_items(config, items, fitted.item_neighbours, blocked, threads)
            if similar is not None:
                _publish(spark, config, "similar_items", similar.withColumns(stamp), result)
            st.counts.update(rows=result.rows.get("similar_items", 0))

    factor_models = [m for m in [publish, *conf.enabled] if m in FACTOR_MODELS]
    if "item_audience" in outputs and not factor_models:
        log.info("score: no factor model (als or bpr) enabled: item_audience and lookalikes not written")
    elif "item_audience" in outputs:
        embedding = factor_models[0]
        with stage("score", f"item audience and lookalikes ({embedding})", seconds) as st:
            audience = item_audience(
                spark, config, embedding, items, fitted.user_factors, interactions, conf.audience_top_k
            )
            _publish(spark, config, "item_audience", audience.withColumns(stamp), result)
            similar_customers = lookalikes(spark, config, embedding, fitted.user_factors)
            _publish(spark, config, "lookalikes", similar_customers.withColumns(stamp), result)
            st.counts.update(audience=result.rows["item_audience"], lookalikes=result.rows["lookalikes"])
    histories.unpersist()
    return result


def hybrid_uses_rules(config: Config) -> bool:
    """Whether the hybrid is enabled and weighs association rules (also under cold-start routing)."""
    hybrid = config.models.hybrid
    weights = (hybrid.weights.get("rules", 0.0), hybrid.short_history_weights.get("rules", 0.0))
    return "hybrid" in config.models.enabled and max(weights) > 0


def association_rules(spark: SparkSession, config: Config) -> DataFrame | None:
    """gold.association_rules when the hybrid weighs rules, else None."""
    if not hybrid_uses_rules(config):
        return None
    name = table_name(config, "association_rules")
    if not spark.catalog.tableExists(str(name)):
        raise ValueError(
            f"{name} does not exist and models.hybrid weighs rules: run `recsys baskets` before "
            "`recsys score`, or set the rules weight to 0"
        )
    return spark.table(str(name))


def _publish(spark: SparkSession, config: Config, key: str, frame: DataFrame, result: ScoreResult) -> None:
    name = table_name(config, key)
    with udf_errors(scoring.ScoringError):
        overwrite_table(spark, config, name, frame)
    result.rows[key] = spark.table(str(name)).count()


def customer_histories(config: Config, interactions: DataFrame, publish: str) -> DataFrame:
    """Per segment × customer: the items bought (``history``); with their weights
    (``history_weights``) for ItemKNN; for the hybrid also ``last_basket`` and ``orders``."""
    if publish not in ("itemknn", "hybrid"):
        bought = F.array_sort(F.collect_set("item_id")).alias("history")
        return interactions.groupBy("segment", "customer_id").agg(bought)
    entries = F.array_sort(F.collect_list(F.struct("item_id", "weight")))
    histories = (
        user_item_weights(config, interactions)
        .groupBy("segment", "customer_id")
        .agg(entries.alias("entries"))
        .select(
            "segment",
            "customer_id",
            F.col("entries.item_id").alias("history"),
            F.col("entries.weight").alias("history_weights"),
        )
    )
    return histories if publish == "itemknn" else histories.join(last_baskets(interactions), KEYS)


KEYS = ["segment", "customer_id"]


def last_baskets(interactions: DataFrame) -> DataFrame:
    """Per segment × customer: the items of their latest order (``last_basket``) and ``orders``."""
    latest = interactions.groupBy(*KEYS).agg(
        F.max_by("order_id", F.struct("event_ts", "order_id")).alias("last_order"),
        F.countDistinct("order_id").alias("orders"),
    )
    return (
        interactions.join(latest, KEYS)
        .where(F.col("order_id") == F.col("last_order"))
        .groupBy(*KEYS)
        .agg(F.array_sort(F.collect_set("item_id")).alias("last_basket"), F.first("orders").alias("orders"))
    )


def blocked_items(spark: SparkSession, config: Config) -> set[str]:
    """Items never recommended: ``models.exclude_items`` plus ``models.exclude_table``'s item ids."""
    blocked = set(config.models.exclude_items)
    if config.models.exclude_table:
        table = config.models.exclude_table
        if not spark.catalog.tableExists(table):
            raise ValueError(f"models.exclude_table {table!r} does not exist: create it or set it to null")
        frame = spark.table(table)
        if "item_id" not in frame.columns:
            raise ValueError(
                f"models.exclude_table {table!r} has no item_id column (columns: {frame.columns})"
            )
        blocked |= {r.item_id for r in frame.select(F.col("item_id").cast("string")).distinct().collect()}
    return blocked


def _catalogs(
    rows: pd.DataFrame, id_column: str, blocked: set[str], cosine: bool = False
) -> dict[str, Catalog]:
    """Per segment, the candidates in ``rows`` (segment, ``id_column``, factors)."""
    return {
        segment: Catalog.of_vectors(
            part[id_column].to_numpy(), np.stack(part.factors.to_numpy()), blocked, cosine
        )
        for segment, part in rows.groupby("segment")
    }


def _of_model(items: pd.DataFrame, model: str) -> pd.DataFrame:
    return items[items.model == model][["segment", "item_id", "factors"]]


def _self_queries(spark: SparkSession, rows: pd.DataFrame, id_column: str) -> DataFrame:
    """``rows`` (segment, ``id_column``, factors) as queries against their own segment's
    candidates, each excluding itself."""
    frame = spark.createDataFrame(rows, f"segment string, {id_column} string, factors array<float>")
    return frame.select(
        "segment",
        F.col("segment").alias("catalog"),
        F.col(id_column).alias("query_id"),
        F.col("factors").alias("vector"),
        F.array(id_column).alias("exclude"),
    )


def _knn_catalogs(neighbours: DataFrame, blocked: set[str]) -> dict[str, Catalog]:
    rows = neighbours.select("segment", "item_id", "neighbour_item_id", "similarity").toPandas()
    return {
        segment: Catalog.of_neighbours(
            part.item_id.to_numpy(), part.neighbour_item_id.to_numpy(), part.similarity.to_numpy(), blocked
        )
        for segment, part in rows.groupby("segment")
    }


def recommend(
    config: Config,
    publish: str,
    fitted: Fitted,
    items: pd.DataFrame,
    histories: DataFrame,
    blocked: set[str],
    n: int,
    segment_users: dict[str, int] | None = None,
) -> tuple[DataFrame, set[str]]:
    """Top ``n`` of model ``publish`` for the customers in ``histories`` of trained segments,
    overall popularity for the rest; and the trained segments.

    ``items``: ``fitted.item_factors`` as pandas. ``publish`` may also be ``popularity_global``
    (everyone gets overall popularity: the baseline). For ``popularity``, ``segment_users``
    (customers per segment) decides which segments are big enough for their own popularity.
    """
    conf = config.models
    rows, threads = conf.score_block_rows, SCORING_THREADS
    popular = _catalogs(_of_model(items, "popularity"), "item_id", blocked)
    if publish == "itemknn":
        catalogs = _knn_catalogs(fitted.item_neighbours.where(F.col("model") == "itemknn"), blocked)
    elif publish == "popularity":
        # Popularity exists for every segment; one below the training thresholds still gets
        # overall popularity, as it would with any other published model.
        users = segment_users or {}
        catalogs = {
            s: c
            for s, c in popular.items()
            if users.get(s, 0) >= conf.min_segment_users and len(c.ids) >= conf.min_segment_items
        }
    elif publish == "popularity_global":
        catalogs = {}
    else:
        catalogs = _catalogs(_of_model(items, publish), "item_id", blocked)
    trained = set(catalogs)
    in_trained = F.col("segment").isin(sorted(trained)) if trained else F.lit(False)
    ones = F.array(F.lit(1.0).cast("float"))
    if publish in FACTOR_MODELS:
        # Left join: a customer who arrived after training has no factors and gets popularity.
        factors = fitted.user_factors.where(F.col("model") == publish)
        vectors = factors.select("segment", "customer_id", F.col("factors").alias("vector"))
        candidates = histories.join(vectors, ["segment", "customer_id"], "left")
        has_model = in_trained & F.col("vector").isNotNull()
    else:
        candidates = histories.withColumn("vector", ones)
        has_model = in_trained
    ours = candidates.where(has_model).withColumn("catalog", F.col("segment"))
    if publish == "itemknn":
        queries = ours.withColumnRenamed("customer_id", "query_id")
        matches = scoring.knn_recommendations(queries, catalogs, n, rows, threads)
    else:
        queries = _as_queries(ours, "customer_id", F.col("history"))
        matches = scoring.top_matches_by_segment(queries, catalogs, n, rows, threads)
    reason = REASONS.get(publish, POPULAR_OVERALL)
    published = matches.withColumns({"model": F.lit(publish), "reason": F.lit(reason)})

    rest = candidates.where(~has_model).withColumns({"catalog": F.lit(GLOBAL_SEGMENT), "vector": ones})
    overall = {GLOBAL_SEGMENT: popular[GLOBAL_SEGMENT]} if GLOBAL_SEGMENT in popular else {}
    fallback = scoring.top_matches_by_segment(
        _as_queries(rest, "customer_id", F.col("history")), overall, n, rows, threads
    )
    fallback = fallback.withColumns({"model": F.lit("popularity"), "reason": F.lit(POPULAR_OVERALL)})
    frame = published.unionByName(fallback).select(
        "segment",
        F.col("query_id").alias("customer_id"),
        "rank",
        F.col("match_id").alias("item_id"),
        "score",
        "model",
        "reason",
        F.col("reason_id").alias("reason_item_id"),
    )
    return frame, trained


@dataclass(frozen=True)
class ListContext:
    """What turns model scores into published lists besides the models: the business rules,
    item categories and MMR vectors, and the association rules the hybrid reads."""

    rules: Rules
    categories: dict[str, str]
    vectors: dict[str, ItemVectors]  # per segment
    association_rules: DataFrame | None = None
    segment_users: dict[str, int] | None = None  # customers per segment (popularity's threshold)

    @property
    def blocked(self) -> set[str]:
        return set(self.rules.blocked)

    def with_rules(self, rules: Rules) -> ListContext:
        return dataclasses.replace(self, rules=rules)


def business_rules(config: Config, blocked: set[str]) -> Rules:
    """conf ``business_rules`` (and the exclude lists) as the kernel's rules."""
    conf = config.business_rules
    return Rules(
        frozenset(blocked),
        frozenset(conf.category_include),
        frozenset(conf.category_exclude),
        conf.max_per_category,
        conf.mmr_lambda,
    )


def list_context(
    config: Config,
    interactions: DataFrame,
    items: pd.DataFrame,
    rules: Rules,
    association_rules: DataFrame | None,
    segment_users: dict[str, int] | None = None,
) -> ListContext:
    """Categories from item descriptions; MMR vectors from the fused embedding where trained,
    else content, else ALS factors (``items``: silver.item_factors as pandas)."""
    described = item_descriptions(interactions).select("item_id", category_of(F.col("description")))
    categories = {item: category for item, category in described.collect() if category is not None}
    vectors: dict[str, ItemVectors] = {}
    for model in MMR_VECTOR_MODELS:
        for segment, part in _of_model(items, model).groupby("segment"):
            if segment not in vectors:
                vectors[segment] = ItemVectors.of(part.item_id.to_numpy(), np.stack(part.factors.to_numpy()))
    return ListContext(rules, categories, vectors, association_rules, segment_users)


def published_lists(
    config: Config,
    publish: str,
    fitted: Fitted,
    items: pd.DataFrame,
    histories: DataFrame,
    context: ListContext,
    n: int,
    weights: dict[str, float] | None = None,
    candidates: DataFrame | None = None,
) -> DataFrame:
    """The top ``n`` of ``publish`` per customer of ``histories``, after the business rules;
    customers the model has nothing for get overall popularity. For the hybrid: ``weights``
    when not conf's ``models.hybrid.weights``, and ``candidates`` when already made
    (``hybrid_candidates``)."""
    conf = config.models
    if publish == "hybrid":
        weights = weights or conf.hybrid.weights
        if candidates is None:
            candidates = hybrid_candidates(config, fitted, items, histories, context, weights)
        settings = ListSettings(n, weights, "hybrid", context.rules, context.categories, context.vectors)
        lists = final_lists(candidates, settings).withColumn("fallback", F.lit(False))
        # Customers no source could score get overall popularity: both lists are made for all
        # and the fallback kept only where the hybrid has nothing (one pass over the candidates).
        fallback, _ = recommend(config, "popularity_global", fitted, items, histories, context.blocked, n)
        both = lists.unionByName(fallback.withColumn("fallback", F.lit(True)))
        has_hybrid = F.min("fallback").over(Window.partitionBy(*KEYS))
        return both.withColumn("keep", F.col("fallback") == has_hybrid).where("keep").drop("fallback", "keep")
    active = context.rules.beyond_exclusion
    depth = config.business_rules.candidates if active else n
    lists, _ = recommend(
        config, publish, fitted, items, histories, context.blocked, depth, context.segment_users
    )
    if not active:
        return lists
    candidates = lists.withColumnRenamed("model", "source").select(*CANDIDATE_COLUMNS)
    return final_lists(
        candidates, ListSettings(n, None, None, context.rules, context.categories, context.vectors)
    )


def hybrid_candidates(
    config: Config,
    fitted: Fitted,
    items: pd.DataFrame,
    histories: DataFrame,
    context: ListContext,
    weights: dict[str, float],
) -> DataFrame:
    """Each weighted source's top ``models.hybrid.candidates`` per customer (CANDIDATE_COLUMNS);
    a customer a source cannot score (untrained segment, no factors) gets no rows from it."""
    m = config.models.hybrid.candidates
    frames = []
    for source in [s for s, w in weights.items() if w > 0]:
        if source == "rules":
            if context.association_rules is None:
                raise ValueError("the hybrid weighs rules but no association rules were given")
            frames.append(rules_candidates(context.association_rules, histories, context.blocked, m))
            continue
        lists, _ = recommend(config, source, fitted, items, histories, context.blocked, m)
        frames.append(
            lists.where(F.col("model") == source)
            .withColumnRenamed("model", "source")
            .select(*CANDIDATE_COLUMNS)
        )
    return reduce(DataFrame.unionByName, frames)


def rules_candidates(rules: DataFrame, histories: DataFrame, blocked: set[str], m: int) -> DataFrame:
    """Single-item rules fired by each customer's last basket: the consequents not bought yet,
    scored by their best confidence, top ``m``. A segment without rules of its own uses the
    rules of all baskets (segment ``all``)."""
    pairs = single_item_rules(rules, "antecedent_id", "item_id")
    own = {r.segment for r in pairs.select("segment").distinct().collect()}
    rule_segment = F.when(F.col("segment").isin(sorted(own)), F.col("segment")).otherwise(
        F.lit(GLOBAL_SEGMENT)
    )
    basket = histories.select(
        *KEYS, "history", rule_segment.alias("rule_segment"), F.explode("last_basket").alias("antecedent_id")
    )
    fired = basket.join(
        pairs.withColumnRenamed("segment", "rule_segment"), ["rule_segment", "antecedent_id"]
    ).where(~F.array_contains("history", F.col("item_id")) & ~F.col("item_id").isin(sorted(blocked)))
    best = fired.groupBy(*KEYS, "item_id").agg(
        F.max_by("antecedent_id", F.struct("confidence", F.col("antecedent_id"))).alias("reason_item_id"),
        F.max("confidence").alias("score"),
    )
    order = Window.partitionBy(*KEYS).orderBy(F.desc("score"), "item_id")
    return (
        best.withColumn("position", F.row_number().over(order))
        .where(F.col("position") <= m)
        .select(
            *KEYS,
            F.lit("rules").alias("source"),
            "item_id",
            F.col("score").cast("float").alias("score"),
            F.lit(REASONS["rules"]).alias("reason"),
            "reason_item_id",
        )
    )


def route(config: Config, orders: Column) -> Column:
    """The cold-start route (``kernels.routing``) of a customer with ``orders`` orders. The
    short-history route needs the hybrid enabled."""
    conf = config.models
    threshold = conf.hybrid.short_history_orders if "hybrid" in conf.enabled else 0

    @F.pandas_udf("string")  # type: ignore[call-overload]
    def routes_of(counts: pd.Series) -> pd.Series:
        return pd.Series(routing.routes(counts.to_numpy(dtype=np.float64, na_value=np.nan), threshold))

    return routes_of(orders.cast("double"))


def routed_lists(
    config: Config,
    publish: str,
    fitted: Fitted,
    items: pd.DataFrame,
    histories: DataFrame,
    context: ListContext,
    n: int,
) -> DataFrame:
    """``published_lists`` for each cold-start route: the champion ``publish``, the hybrid with
    short-history weights, or segment popularity (``histories`` needs ``orders``)."""
    conf = config.models
    routes = histories.withColumn("route", route(config, F.col("orders")))
    lists_of = [(routing.CHAMPION, publish, None), (routing.POPULARITY, "popularity", None)]
    if "hybrid" in conf.enabled and conf.hybrid.short_history_orders > 0:
        lists_of.append((routing.SHORT_HISTORY, "hybrid", conf.hybrid.short_history_weights))
    frames = []
    for name, model, weights in lists_of:
        part = routes.where(F.col("route") == name).drop("route")
        frames.append(published_lists(config, model, fitted, items, part, context, n, weights))
    return reduce(DataFrame.unionByName, frames)


def _as_queries(frame: DataFrame, id_column: str, exclude: Column) -> DataFrame:
    return frame.select(
        "segment", "catalog", F.col(id_column).alias("query_id"), "vector", exclude.alias("exclude")
    )


def _similar_items(
    config: Config, items: pd.DataFrame, neighbours: DataFrame, blocked: set[str], threads: int
) -> DataFrame | None:
    """Top-K other items per item: cosine of each factor model's item factors, and ItemKNN's neighbours."""
    conf = config.models
    spark = neighbours.sparkSession
    frames = []
    # The fused embedding also places items nobody bought yet (by their description).
    fused = [FUSED_MODEL] if (items.model == FUSED_MODEL).any() else []
    for model in [m for m in conf.enabled if m in FACTOR_MODELS] + fused:
        rows = _of_model(items, model)
        catalogs = _catalogs(rows, "item_id", blocked, cosine=True)
        queries = _self_queries(spark, rows, "item_id")
        matches = scoring.top_matches_by_segment(
            queries, catalogs, conf.similar_top_k, conf.score_block_rows, threads, cosine=True
        )
        frames.append(matches.withColumn("model", F.lit(model)))
    if "itemknn" in conf.enabled:
        order = Window.partitionBy("segment", "item_id").orderBy(F.desc("similarity"), "neighbour_item_id")
        ranked = (
            neighbours.where(
                (F.col("model") == "itemknn")
                & (F.col("item_id") != F.col("neighbour_item_id"))
                & (F.col("similarity") > 0)
                & ~F.col("neighbour_item_id").isin(sorted(blocked))
            )
            .withColumn("rank", F.row_number().over(order))
            .where(F.col("rank") <= conf.similar_top_k)
        )
        frames.append(
            ranked.select(
                "segment",
                F.col("item_id").alias("query_id"),
                F.col("rank").cast("int").alias("rank"),
                F.col("neighbour_item_id").alias("match_id"),
                F.col("similarity").cast("float").alias("score"),
                F.lit("itemknn").alias("model"),
            )
        )
    if not frames:
        return None
    union = frames[0].select("segment", "query_id", "rank", "match_id", "score", "model")
    for frame in frames[1:]:
        union = union.unionByName(frame.select(*union.columns))
    return _named_matches(union, "item_id", "similar_item_id")


def _named_matches(matches: DataFrame, query_as: str, match_as: str, model: str | None = None) -> DataFrame:
    """Top-matches rows (segment, query_id, rank, match_id, score) with their table's column
    names, and the model (``model``, or the rows' own model column)."""
    return matches.select(
        "segment",
        F.col("query_id").alias(query_as),
        "rank",
        F.col("match_id").alias(match_as),
        "score",
        F.lit(model).alias("model") if model else F.col("model"),
    )


def item_audience(
    spark: SparkSession,
    config: Config,
    model: str,
    items: pd.DataFrame,
    user_factors: DataFrame,
    interactions: DataFrame,
    top_k: int,
    item_ids: list[str] | None = None,
) -> DataFrame:
    """Per item (of ``item_ids``, or all), the ``top_k`` customers most likely to buy it among
    those who have not: segment, item_id, rank, customer_id, score, model."""
    conf = config.models
    users = _user_rows(user_factors, model)
    candidates = _of_model(items, model)
    if item_ids is not None:
        candidates = candidates[candidates.item_id.isin(item_ids)]
    buyers = interactions.groupBy("segment", F.col("item_id").alias("query_id")).agg(
        F.collect_set("customer_id").alias("buyers")
    )
    item_queries = (
        _self_queries(spark, candidates, "item_id")
        .join(buyers, ["segment", "query_id"], "left")
        .withColumn("exclude", F.coalesce("buyers", F.array().cast("array<string>")))
    )
    audience = scoring.top_matches_by_segment(
        item_queries, _catalogs(users, "customer_id", set()), top_k, conf.score_block_rows, SCORING_THREADS
    )
    return _named_matches(audience, "item_id", "customer_id", model)


def _user_rows(user_factors: DataFrame, model: str) -> pd.DataFrame:
    """``model``'s customer factors as pandas: segment, customer_id, factors."""
    return user_factors.where(F.col("model") == model).select("segment", "customer_id", "factors").toPandas()


def lookalikes(spark: SparkSession, config: Config, model: str, user_factors: DataFrame) -> DataFrame:
    """Each customer's most similar customers (cosine of user factors): segment, customer_id, rank,
    similar_customer_id, score, model."""
    conf = config.models
    users = _user_rows(user_factors, model)
    matches = scoring.top_matches_by_segment(
        _self_queries(spark, users, "customer_id"),
        _catalogs(users, "customer_id", set(), cosine=True),
        conf.lookalike_top_k,
        conf.score_block_rows,
        SCORING_THREADS,
        cosine=True,
    )
    return _named_matches(matches, "customer_id", "similar_customer_id", model)
