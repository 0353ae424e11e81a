"""The evaluate step end to end: guardrail, metrics table, publishing, MLflow, report, serving."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import Config, load_config
from recsys_spark.io.tables import table_name
from recsys_spark.pipeline import run_steps
from recsys_spark.steps.evaluate import choose, interleaving_pair, run_evaluate
from recsys_spark.tracking.runs import tracking_uri
from tests.steps.test_models import write_interactions

MOVIELENS = Path(__file__).parents[1] / "data" / "movielens" / "ratings.csv.gz"


def _overall(rows: list[tuple[str, float, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"model": m, "k": 10, "ndcg": v, "coverage": c} for m, v, c in rows])


def test_guardrail_publishes_the_best_model_that_beats_the_baseline_with_enough_coverage() -> None:
    conf = load_config("local").evaluation
    overall = _overall([("als", 0.05, 0.3), ("itemknn", 0.07, 0.2), ("popularity", 0.02, 0.03)])
    best = choose(overall, conf, test_customers=500)
    assert best.model == "itemknn" and "also passing: als" in best.reason
    narrow = choose(_overall([("als", 0.05, 0.01), ("popularity", 0.02, 0.03)]), conf, 500)
    assert narrow.model == "popularity" and "coverage 0.010 below evaluation.min_coverage" in narrow.reason
    worse = choose(_overall([("als", 0.02, 0.5), ("popularity", 0.02, 0.03)]), conf, 500)
    assert worse.model == "popularity" and "does not beat popularity" in worse.reason


def test_the_runner_up_is_the_best_other_model_and_a_baseline_only_without_one() -> None:
    conf = load_config("local").evaluation
    overall = _overall([("als", 0.30, 0.5), ("popularity", 0.31, 0.1), ("popularity_global", 0.32, 0.1)])
    overall = pd.concat([overall, _overall([("hybrid", 0.29, 0.5), ("hybrid+mmr", 0.5, 0.5)])])
    assert interleaving_pair(overall, conf, "hybrid") == ("hybrid", "als")
    assert interleaving_pair(overall, conf, "popularity") == ("popularity", "als")
    baselines = overall[overall.model.str.startswith("popularity")]
    assert interleaving_pair(baselines, conf, "popularity") == ("popularity", "popularity_global")
    assert interleaving_pair(baselines[baselines.model == "popularity"], conf, "popularity") is None


def movielens(spark: SparkSession) -> pd.DataFrame:
    with gzip.open(MOVIELENS, "rt") as handle:
        ratings = pd.read_csv(handle)
    liked = ratings[ratings.rating >= 4]
    return pd.DataFrame(
        {
            "segment": "all",
            "customer_id": liked.userId.astype(str),
            "item_id": liked.movieId.astype(str),
            "order_id": liked.userId.astype(str) + "-" + liked.timestamp.astype(str),
            "event_ts": pd.to_datetime(liked.timestamp, unit="s"),
            "quantity": 1.0,
            "unit_price": 1.0,
        }
    )


@pytest.fixture(scope="module")
def evaluated(spark: SparkSession, make_config: Callable[..., Config]) -> Config:
    config = make_config(
        mlflow={"experiment": "evaluate_test", "registered_model": "evaluate_test_model"},
        # Few MovieLens users stay active after the cutoff: their lists reach little of the catalogue.
        evaluation={"min_coverage": 0.01},
        models={
            "enabled": ["als", "itemknn", "userknn", "graph", "popularity"],
            "min_segment_users": 10,
            "als": {"factors": 32, "iterations": 10},
            "confidence": {"alpha": 10.0},
        },
    )
    write_interactions(spark, config, movielens(spark))
    run_steps(config, ["train", "evaluate", "score"], spark)
    return config


def test_movielens_is_evaluated_as_implicit_feedback_and_the_champion_is_published(
    spark: SparkSession, evaluated: Config
) -> None:
    metrics = spark.table(str(table_name(evaluated, "model_metrics")))
    overall = metrics.where("segment = 'all' AND slice = 'all'")
    models = {r.model for r in overall.select("model").distinct().collect()}
    assert {m for m in models if "+" not in m} == {
        "als",
        "itemknn",
        "userknn",
        "graph",
        "popularity",
        "popularity_global",
    }
    # conf's business rules (category cap, MMR), each alone and together, on the first model.
    assert {m for m in models if "+" in m} == {"als+cap", "als+mmr", "als+rules"}
    offline = overall.where(~F.col("metric").startswith("interleaving"))
    grid = offline.groupBy("model").agg(F.countDistinct("metric", "k").alias("cells")).collect()
    assert {r.cells for r in grid} == {11 * 3}  # 6 ranking + customers + 4 list metrics, at k 5, 10, 20
    ndcg = {r.model: r.value for r in overall.where("metric = 'ndcg' AND k = 10").collect()}
    assert all(0 < v < 1 for v in ndcg.values())
    # Every measured value has the baseline's beside it (diversity is not measured: no categories).
    # (Interleaving compares two models with each other: no baseline value.)
    measured = metrics.where(~F.col("metric").startswith("interleaving"))
    assert measured.where("model = 'als' AND value IS NOT NULL AND baseline_value IS NULL").count() == 0
    assert metrics.where("model = 'als' AND metric = 'diversity' AND value IS NOT NULL").count() == 0
    slices = {r.slice for r in metrics.select("slice").distinct().collect()}
    assert {"all", "cold_start"} <= slices

    choice = spark.table(str(table_name(evaluated, "published_model"))).first()
    models_only = {m: v for m, v in ndcg.items() if not m.startswith("popularity") and "+" not in m}
    assert choice.model == max(models_only, key=models_only.get)  # ALS and ItemKNN beat popularity here
    assert ndcg[choice.model] > ndcg["popularity"]
    published = spark.table(str(table_name(evaluated, "recommendations")))
    assert {r.model for r in published.select("model").distinct().collect()} == {choice.model}

    client = mlflow.MlflowClient(tracking_uri(evaluated))
    experiment = client.get_experiment_by_name("evaluate_test")
    runs = client.search_runs([experiment.experiment_id], "tags.`recsys.step` = 'evaluate'")
    assert runs[0].data.tags["recsys.published_model"] == choice.model
    assert runs[0].data.metrics["test_pairs"] > runs[0].data.metrics["cold_start_item_pairs"] > 0
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id, "plots")}
    assert artifacts == {
        f"plots/{n}" for n in ("metric_vs_k.png", "coverage_vs_popularity_bias.png", "metric_by_history.png")
    }
    assert Path(evaluated.work_path, "reports", f"evaluation_{choice.run_id}.html").is_file()


def test_the_champion_is_interleaved_with_the_runner_up(spark: SparkSession, evaluated: Config) -> None:
    """Team-draft interleaving of the published model and the next best by NDCG@10, credited by
    the test purchases: each one's share of the customers with a preference, beside NDCG."""
    metrics = spark.table(str(table_name(evaluated, "model_metrics"))).where(
        "segment = 'all' AND slice = 'all' AND k = 10"
    )
    ndcg = {r.model: r.value for r in metrics.where("metric = 'ndcg' AND model NOT LIKE '%+%'").collect()}
    champion = spark.table(str(table_name(evaluated, "published_model"))).first().model
    runner_up = max((m for m in ndcg if m != champion), key=ndcg.get)
    rows = metrics.where(F.col("metric").startswith("interleaving")).collect()
    cells = {(r.model, r.metric): r for r in rows}
    assert set(cells) == {
        (m, f"interleaving_{x}") for m in (champion, runner_up) for x in ("preference", "wins")
    }
    first, second = (cells[(m, "interleaving_preference")] for m in (champion, runner_up))
    assert first.value + second.value == pytest.approx(1.0)
    for cell in (first, second):
        assert cell.ci_low <= cell.value <= cell.ci_high and cell.baseline_value is None
    wins = [cells[(m, "interleaving_wins")].value for m in (champion, runner_up)]
    customers = (
        metrics.where(f"metric = 'customers' AND model = '{champion}' AND slice = 'all'").first().value
    )
    assert first.value == pytest.approx(wins[0] / sum(wins)) and 0 < sum(wins) <= customers
    report = Path(evaluated.work_path, "reports", f"evaluation_{first.run_id}.html").read_text()
    assert "Interleaved (team draft, K=10" in report and f"{champion} {first.value:.1%}" in report


def test_the_registered_champion_serves_top_n_without_spark(evaluated: Config) -> None:
    mlflow.set_tracking_uri(tracking_uri(evaluated))
    model = mlflow.pyfunc.load_model("models:/evaluate_test_model@champion")
    request = pd.DataFrame(
        {"segment": ["all", "all"], "customer_id": ["1", "nobody"], "history": [["1", "3"], []]}
    )
    answer = model.predict(request)
    assert answer.groupby("customer_id").size().to_dict() == {"1": 10, "nobody": 10}
    assert not set(answer[answer.customer_id == "1"].item_id) & {"1", "3"}
    by_id = model.predict(pd.DataFrame({"customer_id": ["1", "nobody"]}))  # the signature allows it
    assert by_id.groupby("customer_id").size().to_dict() == {"1": 10, "nobody": 10}
    assert set(by_id[by_id.customer_id == "nobody"].reason) == {"popular_overall"}


@pytest.mark.parametrize(
    ("split", "same_time", "message"),
    [
        ("quantile", True, "all 1,500 lines share one timestamp"),
        ("last_basket", False, "no customer has a second order"),
    ],
)
def test_a_split_with_nothing_to_train_or_test_on_names_the_cause(
    spark: SparkSession, make_config: Callable[..., Config], split: str, same_time: bool, message: str
) -> None:
    """One timestamp for every line (a play-count export), or one order per customer, cannot be
    split by time or by last basket: the error says so with the data's own figures."""
    config = make_config(evaluation={"split": split})
    lines = movielens(spark).drop_duplicates("customer_id" if not same_time else "item_id").head(1500)
    if same_time:
        lines = lines.assign(event_ts=pd.Timestamp("2024-06-01"))
    else:  # one order per customer
        lines = lines.assign(order_id=lines.customer_id)
    write_interactions(spark, config, lines)
    with pytest.raises(ValueError, match=message):
        run_evaluate(spark, config, "nothing_to_split")
