"""Train and score in Spark: equal to single-node computations, and the table invariants hold."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from chispa import assert_approx_df_equality
from implicit.cpu.als import AlternatingLeastSquares
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark import synthetic
from recsys_spark.config import Config, load_config
from recsys_spark.distributed.scoring import ScoringError
from recsys_spark.distributed.training import TrainingError, threads_per_task
from recsys_spark.io.tables import INTERACTIONS_SCHEMA, TableName, overwrite_table, table_name
from recsys_spark.kernels.intervals import Z_95, bpr_intervals, graph_intervals
from recsys_spark.kernels.matrix import build_interactions
from recsys_spark.pipeline import run_steps
from tests.conftest import NO_RULES, without_comments

SMALL_MODELS = {
    "enabled": ["als", "bpr", "itemknn", "popularity"],
    "publish": "als",
    "min_segment_users": 10,
    "min_segment_items": 10,
    "top_n": 5,
    "als": {"factors": 8, "iterations": 3},
    "bpr": {"factors": 8, "iterations": 10},
    "itemknn": {"neighbours": 20},
    "similar_top_k": 5,
    "audience_top_k": 5,
    "lookalike_top_k": 5,
}
WEIRD_CUSTOMER = 'Zoë, "the" 客户'
WEIRD_ITEM = 'SKU,1 "x" ☕'


def table(spark: SparkSession, config: Config, key: str) -> DataFrame:
    return spark.table(str(table_name(config, key)))


def write_interactions(spark: SparkSession, config: Config, frame: pd.DataFrame) -> None:
    """Put purchase lines straight into silver.interactions (the ingest step is tested elsewhere)."""
    full = frame.assign(
        revenue=frame.quantity * frame.unit_price,
        description=None,
        line_id=[f"line{i}" for i in range(len(frame))],
        source_file=None,
        run_id="test",
        ingested_at=pd.Timestamp("2025-01-01"),
    )
    for optional in ("category", "rating"):  # e.g. MovieLens: no categories; purchases: no ratings
        if optional not in full:
            full[optional] = None
    rows = spark.createDataFrame(full[INTERACTIONS_SCHEMA.fieldNames()], INTERACTIONS_SCHEMA)
    overwrite_table(spark, config, table_name(config, "interactions"), rows)


@pytest.fixture(scope="module")
def sample(spark: SparkSession, make_config: Callable[..., Config]) -> Config:
    # The models' own lists: the business rules (on in base.yml) are tested in test_hybrid.py.
    config = make_config(models=SMALL_MODELS, business_rules=NO_RULES)
    run_steps(config, ["load-sample", "ingest", "train", "score"], spark)
    return config


@pytest.fixture(scope="module")
def synthetic_purchases() -> pd.DataFrame:
    frame = synthetic.purchases(n_users=240, n_items=60, n_events=3000, n_categories=6, n_segments=2, seed=1)
    frame["customer_id"] = frame.customer_id.replace("U000001", WEIRD_CUSTOMER)
    frame["item_id"] = frame.item_id.replace("I00001", WEIRD_ITEM)
    return frame


def bought(spark: SparkSession, config: Config) -> DataFrame:
    return table(spark, config, "interactions").select("segment", "customer_id", "item_id").distinct()


def test_recommendations_equal_a_single_node_numpy_computation(spark, sample):
    users = table(spark, sample, "user_factors").where("model = 'als'").toPandas()
    items = table(spark, sample, "item_factors").where("model = 'als'").toPandas()
    seen = bought(spark, sample).toPandas()
    expected = []
    for segment, segment_users in users.groupby("segment"):
        segment_items = items[items.segment == segment]
        scores = np.stack(segment_users.factors) @ np.stack(segment_items.factors).T
        long = pd.DataFrame(
            {
                "segment": segment,
                "customer_id": np.repeat(segment_users.customer_id.to_numpy(), len(segment_items)),
                "item_id": np.tile(segment_items.item_id.to_numpy(), len(segment_users)),
                "score": scores.ravel().astype(np.float32),
            }
        )
        long = (
            long.merge(seen, how="left", indicator=True).query("_merge == 'left_only'").drop(columns="_merge")
        )
        long = long.sort_values(["customer_id", "score", "item_id"], ascending=[True, False, True])
        long["rank"] = long.groupby("customer_id").cumcount() + 1
        expected.append(long[long["rank"] <= SMALL_MODELS["top_n"]])
    columns = ["segment", "customer_id", "rank", "item_id", "score"]
    expected_df = spark.createDataFrame(
        pd.concat(expected)[columns],
        "segment string, customer_id string, rank int, item_id string, score float",
    )
    actual = table(spark, sample, "recommendations").where("model = 'als'").select(*columns)
    assert expected_df.count() > 100
    assert_approx_df_equality(
        without_comments(actual).orderBy("segment", "customer_id", "rank"),
        expected_df.orderBy("segment", "customer_id", "rank"),
        precision=1e-4,
        ignore_nullable=True,
    )


def test_als_recommendations_carry_their_posterior_interval(spark, sample):
    """score +- 1.96 sd, sd^2 = y_i' (Y'C_uY + lambda I)^-1 y_i with implicit's confidences
    (alpha w on bought items, 1 elsewhere; w: purchase lines), written out densely; customers
    with more purchases get narrower intervals."""
    conf = load_config("local").models
    alpha, lam = conf.confidence.alpha, conf.als.regularization
    segment = "United Kingdom"
    users = table(spark, sample, "user_factors").where(f"model = 'als' AND segment = '{segment}'").toPandas()
    items = table(spark, sample, "item_factors").where(f"model = 'als' AND segment = '{segment}'").toPandas()
    lines = table(spark, sample, "interactions").where(f"segment = '{segment}'").toPandas()
    counts = lines.groupby(["customer_id", "item_id"]).size()
    published = table(spark, sample, "recommendations")
    lists = published.where(f"model = 'als' AND segment = '{segment}'").toPandas()
    assert lists.score_low.notna().all() and (lists.score_low < lists.score).all()
    Y = np.stack(items.factors).astype(np.float64)
    row_of = pd.Index(items.item_id)
    for customer in users.customer_id.iloc[:5]:
        confidence = np.ones(len(Y))
        bought = counts.loc[customer]
        confidence[row_of.get_indexer(bought.index)] = alpha * bought.to_numpy()
        covariance = np.linalg.inv(Y.T @ (Y * confidence[:, None]) + lam * np.eye(Y.shape[1]))
        mine = lists[lists.customer_id == customer]
        rows = Y[row_of.get_indexer(mine.item_id)]
        deviation = np.sqrt(np.einsum("if,fg,ig->i", rows, covariance, rows))
        np.testing.assert_allclose(mine.score_high - mine.score, Z_95 * deviation, rtol=1e-3)
        np.testing.assert_allclose(mine.score - mine.score_low, Z_95 * deviation, rtol=1e-3)
    width = (lists.score_high - lists.score_low).groupby(lists.customer_id).mean()
    purchases = lines.groupby("customer_id").size().reindex(width.index)
    assert width.corr(purchases, method="spearman") < -0.5


def test_als_factors_equal_implicit_called_directly(spark, sample):
    lines = table(spark, sample, "interactions").where("segment = 'United Kingdom'").toPandas()
    pairs = lines.groupby(["customer_id", "item_id"]).size().reset_index(name="weight")
    data = build_interactions(pairs.customer_id, pairs.item_id, pairs.weight)
    direct = AlternatingLeastSquares(
        factors=8, regularization=0.05, alpha=40.0, iterations=3, random_state=42, num_threads=1
    )
    direct.fit(data.weights, show_progress=False)
    ours = (
        table(spark, sample, "user_factors")
        .where("model = 'als' AND segment = 'United Kingdom'")
        .orderBy("customer_id")
        .toPandas()
    )
    assert ours.customer_id.tolist() == list(data.user_ids)
    np.testing.assert_allclose(np.stack(ours.factors), direct.user_factors, rtol=1e-4, atol=1e-5)


def test_every_customer_gets_min_n_eligible_unbought_items_ranked_contiguously(spark, sample):
    recs = table(spark, sample, "recommendations")
    assert recs.join(bought(spark, sample), ["segment", "customer_id", "item_id"]).count() == 0
    per_customer = recs.groupBy("segment", "customer_id").agg(
        F.count("*").alias("n"),
        F.min("rank").alias("lo"),
        F.max("rank").alias("hi"),
        F.countDistinct("item_id"),
    )
    assert per_customer.where("lo != 1 OR hi != n OR n != `count(DISTINCT item_id)`").count() == 0
    customers = bought(spark, sample).select("segment", "customer_id").distinct()
    assert per_customer.count() == customers.count()

    catalog = table(spark, sample, "item_factors").where("model = 'popularity'")
    sizes = catalog.groupBy("segment").count().toPandas().set_index("segment")["count"]
    top_n = SMALL_MODELS["top_n"]
    checked = recs.groupBy("segment", "customer_id", "model", "reason").count().toPandas()
    seen = bought(spark, sample).groupBy("segment", "customer_id").count().toPandas()
    merged = checked.merge(seen, on=["segment", "customer_id"], suffixes=("", "_bought"))
    for row in merged.itertuples():
        # Untrained segments use overall popularity: everything but what the customer bought.
        catalog_size = sizes["all"] if row.reason == "popular_overall" else sizes[row.segment]
        assert row.count == min(top_n, catalog_size - row.count_bought), row
    assert set(merged.reason) == {"factor_score", "popular_overall"}
    assert set(merged[merged.reason == "factor_score"].segment) == {"United Kingdom"}


def test_similar_items_audience_and_lookalikes_exclude_self_and_buyers(spark, sample):
    similar = table(spark, sample, "similar_items")
    assert similar.where("item_id = similar_item_id").count() == 0
    assert {r.model for r in similar.select("model").distinct().collect()} == {"als", "bpr", "itemknn"}
    audience = table(spark, sample, "item_audience")
    assert audience.count() > 0
    assert audience.join(bought(spark, sample), ["segment", "customer_id", "item_id"]).count() == 0
    lookalikes = table(spark, sample, "lookalikes")
    assert lookalikes.count() > 0 and lookalikes.where("customer_id = similar_customer_id").count() == 0


def test_itemknn_publish_with_awkward_ids_exclusions_and_reasons(spark, make_config, synthetic_purchases):
    out_of_stock = TableName("stock_test", "out_of_stock")
    config = make_config(
        models={
            **SMALL_MODELS,
            "publish": "itemknn",
            "exclude_items": ["I00002"],
            "exclude_table": f"{out_of_stock.schema}.{out_of_stock.table}",
        }
    )
    overwrite_table(spark, config, out_of_stock, spark.createDataFrame([("I00003",)], "item_id string"))
    write_interactions(spark, config, synthetic_purchases)
    run_steps(config, ["train", "score"], spark)
    recs = table(spark, config, "recommendations")
    assert recs.where("item_id IN ('I00002', 'I00003')").count() == 0
    similar = table(spark, config, "similar_items")
    assert similar.where("similar_item_id IN ('I00002', 'I00003')").count() == 0
    assert synthetic_purchases.item_id.isin(["I00002", "I00003"]).sum() > 10  # they would be candidates
    assert recs.where(F.col("customer_id") == WEIRD_CUSTOMER).count() == SMALL_MODELS["top_n"]
    assert recs.where(F.col("item_id") == WEIRD_ITEM).count() > 0
    assert {r.reason for r in recs.select("reason").distinct().collect()} == {"because_bought"}
    reasons = recs.select("segment", "customer_id", F.col("reason_item_id").alias("item_id"))
    assert (
        reasons.join(bought(spark, config), ["segment", "customer_id", "item_id"], "left_anti").count() == 0
    )
    ids = {r.customer_id for r in table(spark, config, "user_factors").select("customer_id").collect()}
    assert WEIRD_CUSTOMER in ids


def test_big_segments_train_on_mllib_als_into_the_same_tables(spark, make_config, synthetic_purchases):
    config = make_config(models={**SMALL_MODELS, "enabled": ["als", "popularity"], "mllib_min_pairs": 0})
    write_interactions(spark, config, synthetic_purchases)
    run_steps(config, ["train", "score"], spark)
    engines = table(spark, config, "user_factors").groupBy("model", "engine").count().collect()
    assert {(r.model, r.engine) for r in engines} == {("als", "mllib")}
    recs = table(spark, config, "recommendations")
    assert {r.model for r in recs.select("model").distinct().collect()} == {"als"}
    customers = synthetic_purchases.groupby("segment").customer_id.nunique().sum()
    assert recs.select("segment", "customer_id").distinct().count() == customers
    assert recs.join(bought(spark, config), ["segment", "customer_id", "item_id"]).count() == 0


def test_a_failure_inside_training_fails_the_job_and_names_the_segment(
    spark, make_config, synthetic_purchases
):
    config = make_config(models={**SMALL_MODELS, "confidence": {"weight": "quantity"}})
    broken = synthetic_purchases.copy()
    broken.loc[broken.segment == "seg01", "quantity"] = np.inf  # corrupt upstream data
    write_interactions(spark, config, broken)
    with pytest.raises(TrainingError, match=r"segment 'seg01'.*NaN"):
        run_steps(config, ["train"], spark)


def test_popularity_publish_with_half_life_equals_pandas(spark, make_config, synthetic_purchases):
    half_life = 30.0
    config = make_config(
        models={
            **SMALL_MODELS,
            "enabled": ["popularity"],
            "publish": "popularity",
            "popularity": {"half_life_days": half_life},
        },
        # The synthetic lines carry categories: the cap and MMR would reorder popularity's list.
        business_rules=NO_RULES,
    )
    write_interactions(spark, config, synthetic_purchases)
    run_steps(config, ["train", "score"], spark)

    lines = synthetic_purchases
    as_of = lines.event_ts.max()
    pairs = lines.groupby(["segment", "customer_id", "item_id"]).event_ts.max().reset_index()
    pairs["credit"] = 0.5 ** ((as_of - pairs.event_ts).dt.total_seconds() / 86400 / half_life)
    item_scores = pairs.groupby(["segment", "item_id"]).credit.sum().reset_index()
    expected = []
    for (segment, customer), bought_items in pairs.groupby(["segment", "customer_id"]).item_id:
        options = item_scores[(item_scores.segment == segment) & ~item_scores.item_id.isin(bought_items)]
        top = options.sort_values(["credit", "item_id"], ascending=[False, True]).head(SMALL_MODELS["top_n"])
        expected.append(top.assign(customer_id=customer, rank=range(1, len(top) + 1)))
    columns = ["segment", "customer_id", "rank", "item_id", "score"]
    expected_df = spark.createDataFrame(
        pd.concat(expected).rename(columns={"credit": "score"})[columns],
        "segment string, customer_id string, rank int, item_id string, score float",
    )
    recs = table(spark, config, "recommendations")
    assert {r.reason for r in recs.select("reason").distinct().collect()} == {"popular_in_segment"}
    assert_approx_df_equality(
        without_comments(recs.select(*columns)).orderBy("segment", "customer_id", "rank"),
        expected_df.orderBy("segment", "customer_id", "rank"),
        precision=1e-3,
        ignore_nullable=True,
    )


def test_score_needs_train_and_names_the_segment_when_factors_are_broken(
    spark, make_config, synthetic_purchases
):
    config = make_config(models={**SMALL_MODELS, "enabled": ["als", "popularity"]})
    write_interactions(spark, config, synthetic_purchases)
    with pytest.raises(ValueError, match="run `recsys train` before `recsys score`"):
        run_steps(config, ["score"], spark)
    run_steps(config, ["train"], spark)
    factors = table_name(config, "item_factors")
    spark.sql(
        f"UPDATE {factors} SET factors = transform(factors, x -> CAST('NaN' AS FLOAT)) "
        "WHERE segment = 'seg01' AND model = 'als'"
    )
    with pytest.raises(ScoringError, match=r"segment 'seg01'.*NaN in the scores"):
        run_steps(config, ["score"], spark)


@pytest.mark.parametrize(
    ("total", "per_executor", "segments", "threads"),
    [(2, 2, 1, 2), (16, 8, 1, 8), (16, 8, 37, 1), (16, 4, 4, 4), (8, 8, 3, 2), (2, 2, 0, 2)],
)
def test_training_threads_share_the_cores_without_oversubscribing_an_executor(
    total, per_executor, segments, threads
):
    assert threads_per_task(total, per_executor, segments) == threads


def test_without_descriptions_the_content_model_is_left_out_not_trained_on_zeros(
    spark, make_config, synthetic_purchases
):
    """No description at all: content is left out of training (logged, and said in the train
    summary), the hybrid blends only the models that trained, and nothing is published under
    content's name (test_other_shapes: nor evaluated)."""
    config = make_config(
        models={
            **SMALL_MODELS,
            "enabled": ["als", "itemknn", "popularity", "content", "hybrid"],
            "publish": "hybrid",
            "hybrid": {"weights": {"als": 1.0, "itemknn": 1.0, "content": 1.0}, "short_history_orders": 0},
        },
    )
    write_interactions(spark, config, synthetic_purchases)  # description: null on every line
    lines = run_steps(config, ["baskets", "train", "score"], spark)
    assert "  left out, their input is missing: content (see the log)" in lines
    factor_models = {
        r.model for r in table(spark, config, "item_factors").select("model").distinct().collect()
    }
    assert factor_models == {"als", "popularity"}
    recs = table(spark, config, "recommendations")
    reasons = {r.reason for r in recs.select("reason").distinct().collect()}
    assert reasons and reasons <= {
        "factor_score",
        "because_bought",
        "bought_with_last_basket",
        "popular_overall",
    }
    assert recs.select("segment", "customer_id").distinct().count() == (
        synthetic_purchases.groupby("segment").customer_id.nunique().sum()
    )


@pytest.mark.parametrize("model", ["graph", "bpr"])
def test_graph_and_bpr_recommendations_carry_their_bootstrap_intervals(
    spark, make_config, synthetic_purchases, model
):
    """Published graph or BPR lists carry intervals, equal to the interval kernel run on what
    the tables hold: the graph's fold rows (model graph_fold) or BPR's factors with the
    segment's popularity as its negative draws, and each customer's purchases."""
    models = {
        **SMALL_MODELS,
        "enabled": ["bpr", "graph", "popularity"],
        "publish": model,
        "graph": {"rank": 16},
    }
    config = make_config(models=models, business_rules=NO_RULES)
    write_interactions(spark, config, synthetic_purchases)
    run_steps(config, ["train", "score"], spark)
    lists = table(spark, config, "recommendations").where(f"model = '{model}'").toPandas()
    assert len(lists) > 100 and lists.score_low.notna().all()
    inside = (lists.score_low <= lists.score + 1e-4) & (lists.score <= lists.score_high + 1e-4)
    assert inside.all()
    segment = lists.segment.iloc[0]
    factors = table(spark, config, "item_factors").where(f"segment = '{segment}'").toPandas()
    rows_of = {
        name: part.set_index("item_id").factors.sort_index() for name, part in factors.groupby("model")
    }
    ids = rows_of[model].index
    lines = table(spark, config, "interactions").where(f"segment = '{segment}'").toPandas()
    for customer in lists[lists.segment == segment].customer_id.unique()[:3]:
        mine = lists[lists.customer_id == customer].sort_values("rank")
        history = sp.csr_matrix(ids.isin(lines[lines.customer_id == customer].item_id).astype(float)[None, :])
        items = ids.get_indexer(mine.item_id)[None, :]
        who = np.array([customer], dtype=object)
        vectors = np.stack(rows_of[model].to_numpy())
        if model == "graph":
            low, high = graph_intervals(
                vectors, np.stack(rows_of["graph_fold"].to_numpy()), history, items, who
            )
        else:
            user = table(spark, config, "user_factors").where(
                (F.col("model") == "bpr") & (F.col("segment") == segment) & (F.col("customer_id") == customer)
            )
            shares = np.stack(rows_of["popularity"].reindex(ids).to_numpy())[:, 0].astype(float)
            x = np.array([user.first().factors])
            low, high = bpr_intervals(vectors, x, history, items, who, shares / shares.sum(), 0.01)
        np.testing.assert_allclose(mine.score_low, low[0], rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(mine.score_high, high[0], rtol=1e-3, atol=1e-5)
