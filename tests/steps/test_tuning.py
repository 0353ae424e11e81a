"""Tuning in the train step: trials recorded and logged, the chosen values trained and recorded,
a re-run choosing the same, and evaluate refusing to register factors trained otherwise."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import mlflow
import pandas as pd
import pytest
from pyspark.sql import SparkSession

from recsys_spark import synthetic
from recsys_spark.config import Config
from recsys_spark.pipeline import run_steps
from recsys_spark.tracking.runs import tracking_uri
from tests.conftest import NO_RULES
from tests.steps.test_models import table, write_interactions

TUNED = {
    "enabled": ["als", "itemknn", "popularity", "hybrid"],
    "publish": "champion",
    "min_segment_users": 10,
    "min_segment_items": 10,
    "als": {"factors": 8, "iterations": 3},
    "hybrid": {
        "weights": {"als": 1.0, "itemknn": 1.0, "content": 0.0, "rules": 0.0},
        "short_history_weights": {"als": 0.5, "itemknn": 1.0, "content": 0.0, "rules": 0.0},
    },
    "tuning": {"trials": 3, "models": ["als", "itemknn", "hybrid"], "min_validation_customers": 10},
}


@pytest.fixture(scope="module")
def tuned(spark: SparkSession, make_config: Callable[..., Config]) -> tuple[Config, list[str]]:
    config = make_config(
        models=TUNED,
        mlflow={"experiment": "tuning_test", "registered_model": "tuning_test_model"},
        evaluation={"min_coverage": 0.0},
        business_rules=NO_RULES,
    )
    frame = synthetic.purchases(n_users=400, n_items=60, n_events=8000, n_categories=6, n_segments=2, seed=5)
    write_interactions(spark, config, frame)
    lines = run_steps(config, ["train", "evaluate"], spark)
    return config, lines


def trials_of(spark: SparkSession, config: Config) -> pd.DataFrame:
    return table(spark, config, "tuning_trials").toPandas()


def test_every_trial_is_recorded_and_the_best_is_chosen_per_segment_and_model(spark, tuned):
    config, lines = tuned
    trials = trials_of(spark, config)
    assert set(trials.segment) == {"seg00", "seg01", "all"}
    assert trials.groupby(["segment", "model"]).size().to_dict() == {
        **{(s, m): 3 for s in ("seg00", "seg01") for m in ("als", "itemknn")},
        ("all", "hybrid"): 3,  # the hybrid's weights: one set for every segment
    }
    hybrid = trials[trials.model == "hybrid"].params.map(json.loads).tolist()
    assert hybrid[0] == {"als": 1.0, "itemknn": 1.0}
    assert all(set(p) == {"als", "itemknn"} and any(p.values()) for p in hybrid)
    first = trials[(trials.trial == 0) & (trials.model == "als")].params.map(json.loads)
    assert all(p == {"factors": 8, "regularization": 0.05, "alpha": 40.0, "log_scale": False} for p in first)
    chosen = trials[trials.chosen]
    assert len(chosen) == 5
    for row in chosen.itertuples():
        same = trials[(trials.segment == row.segment) & (trials.model == row.model)]
        assert row.ndcg == same.ndcg.max()
        assert row.trial == same[same.ndcg == same.ndcg.max()].trial.min()  # ties: conf's values first
    assert (trials.validation_customers >= 10).all()
    assert any(line.strip().startswith("tuned: 2 of 2 segments") for line in lines)


def test_train_uses_and_records_the_chosen_values(spark, tuned):
    config, _ = tuned
    trials = trials_of(spark, config)
    settings = table(spark, config, "model_settings").toPandas()
    for row in trials[trials.chosen].itertuples():
        recorded = settings[(settings.segment == row.segment) & (settings.model == row.model)].iloc[0]
        assert json.loads(recorded.tuned) == json.loads(row.params)
        assert json.loads(recorded.settings).items() >= json.loads(row.params).items()
        if row.model == "als":
            factors = (
                table(spark, config, "item_factors")
                .where(f"segment = '{row.segment}' AND model = 'als'")
                .first()
                .factors
            )
            assert len(factors) == json.loads(row.params)["factors"]
    popularity = settings[settings.model == "popularity"]
    assert popularity.tuned.isna().all()  # not tuned: conf's values, recorded all the same
    blend = settings[settings.model == "hybrid"].iloc[0]
    weights = json.loads(trials[trials.chosen & (trials.model == "hybrid")].params.iat[0])
    conf = TUNED["hybrid"]["weights"]
    assert (blend.segment, json.loads(blend.settings)) == ("all", {**conf, **weights})


def test_each_trial_is_a_nested_mlflow_run_and_a_rerun_chooses_the_same(spark, tuned):
    config, _ = tuned
    client = mlflow.MlflowClient(tracking_uri(config))
    experiment = client.get_experiment_by_name("tuning_test")
    runs = client.search_runs([experiment.experiment_id], "tags.`recsys.step` = 'train.tune'")
    assert len(runs) == 15
    assert all("mlflow.parentRunId" in r.data.tags for r in runs)
    assert sum(r.data.tags["recsys.chosen"] == "true" for r in runs) == 5
    before = trials_of(spark, config)
    run_steps(config, ["train"], spark)
    after = table(spark, config, "tuning_trials").where(f"run_id != '{before.run_id.iat[0]}'").toPandas()
    columns = ["segment", "model", "trial", "params", "ndcg", "chosen"]
    key = ["segment", "model", "trial"]
    pd.testing.assert_frame_equal(
        before[columns].sort_values(key).reset_index(drop=True),
        after[columns].sort_values(key).reset_index(drop=True),
    )


def test_evaluate_registers_only_factors_trained_with_the_settings_it_evaluated(spark, tuned, make_config):
    config, lines = tuned
    assert any("registered: tuning_test_model version" in line for line in lines)
    published = table(spark, config, "published_model").orderBy("decided_at").toPandas().iloc[-1]
    assert set(json.loads(published.settings)["tuned"]) == {"seg00", "seg01", "all"}
    report = (config.work_path / "reports" / f"evaluation_{published.run_id}.html").read_text()
    assert "Chosen by tuning" in report and "seg00, als: " in report
    trials = trials_of(spark, config)
    weights = json.loads(trials[trials.chosen & (trials.model == "hybrid")].params.iat[0])
    mlflow.set_tracking_uri(tracking_uri(config))
    served = mlflow.pyfunc.load_model("models:/tuning_test_model@champion")
    # The served blend is the tuned one.
    assert served.model_config["hybrid"]["weights"] == {**TUNED["hybrid"]["weights"], **weights}
    changed = make_config(
        models={**TUNED, "als": {"factors": 8, "iterations": 4}},
        mlflow={"experiment": "tuning_test", "registered_model": "tuning_test_model"},
        evaluation={"min_coverage": 0.0},
        business_rules=NO_RULES,
        schemas=dataclasses.asdict(config.schemas),
    )
    lines = run_steps(changed, ["evaluate"], spark)
    registered = next(line for line in lines if line.strip().startswith("registered:"))
    assert "trained with other settings than evaluated (iterations 3 -> 4" in registered
    versions = mlflow.MlflowClient(tracking_uri(config)).search_model_versions("name = 'tuning_test_model'")
    assert len(versions) == 1


def test_evaluation_gives_new_and_short_history_customers_their_routes_lists(spark, tuned):
    """Routed as production routes them, customers new since the cutoff (segment popularity) and
    one-order customers (the hybrid with short-history weights) score the same whatever model
    is measured as the champion; before, a new customer got no list and scored 0 everywhere."""
    config, _ = tuned
    metrics = table(spark, config, "model_metrics").where(
        "segment = 'all' AND k = 10 AND metric IN ('hit_rate', 'customers') AND model NOT LIKE '%+%'"
    )
    rows = metrics.toPandas().pivot_table(index=["slice", "model"], columns="metric", values="value")
    for slice_name in ("cold_start", "1"):
        part = rows.loc[slice_name]
        assert part.customers.min() > 0
        assert part.hit_rate.nunique() == 1, part
    assert rows.loc["cold_start"].hit_rate.iat[0] > 0  # popularity finds some of their purchases
    champion = rows.loc["20+"] if "20+" in rows.index.get_level_values(0) else rows.loc["5-19"]
    assert champion.hit_rate.nunique() > 1  # on the champion route the models differ
