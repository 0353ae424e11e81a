"""recsys experiment on a hand-built outcome: a known export (who was in which arm, what each
was shown) and known purchases after it. Every figure below is worked by hand from the
purchases listed in ``PURCHASES``; the intervals from the textbook formulas, written out here."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable

import mlflow
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import Config
from recsys_spark.io.tables import INTERACTIONS_SCHEMA, overwrite_table, table_name
from recsys_spark.steps.experiment import run_experiment
from recsys_spark.tracking.report import experiment_figure, experiment_section, latest_experiment
from recsys_spark.tracking.runs import tracking_uri

AS_OF = dt.datetime(2024, 1, 10)
Z = 1.959963984540054
# Who was shown what: (customer, segment, arm, items shown in order).
SHOWN = [
    ("m1", "UK", "model", ["A", "B"]),
    ("m2", "UK", "model", ["A", "B"]),
    ("m3", "UK", "model", ["A", "B"]),
    ("m4", "UK", "model", ["A", "B"]),
    ("m5", "DE", "model", ["A"]),
    ("h1", "UK", "holdout", ["C", "D"]),
    ("h2", "UK", "holdout", ["C", "D"]),
    ("h3", "UK", "holdout", ["C", "D"]),
    ("h4", "UK", "holdout", []),  # nothing left to recommend: counted, never a hit
]
SHOWN_SCHEMA = (
    "run_id string, recommendations_run_id string, experiment string, exported_at timestamp, "
    "as_of timestamp, segment string, customer_id string, variant string, model string, items array<string>"
)
PRICE = {"A": 10.0, "B": 20.0, "C": 5.0, "D": 7.0}
# (customer, item, day after AS_OF; negative: before the export, never counted).
PURCHASES = [
    ("m1", "A", 2),
    ("m1", "A", -5),
    ("m2", "C", 5),
    ("m2", "B", 10),  # inside 14 days, not 7
    ("m3", "A", 1),
    ("m3", "B", 1),
    ("m5", "A", 2),
    ("h1", "C", 3),
    ("h2", "A", 4),
    ("h3", "D", 15),  # after both windows
    ("m4", "A", 20),  # the newest purchase: both windows complete
]


@pytest.fixture(scope="module")
def measured(spark: SparkSession, make_config: Callable[..., Config]) -> tuple[Config, str, object]:
    config = make_config(experiment={"windows_days": [7, 14]})
    rows = [
        ("UK", c, i, f"o-{c}-{d}", AS_OF + dt.timedelta(days=d, hours=12), 1.0, PRICE[i], PRICE[i])
        for c, i, d in PURCHASES
    ]
    purchases = spark.createDataFrame(
        [(*r, None, None, None, f"line{n}", "f.csv", "r0", AS_OF) for n, r in enumerate(rows)],
        INTERACTIONS_SCHEMA,
    )
    overwrite_table(spark, config, table_name(config, "interactions"), purchases)
    mlflow.set_tracking_uri(tracking_uri(config))
    mlflow.set_experiment(config.mlflow.experiment)
    with mlflow.start_run() as export_run:
        pass
    shown = spark.createDataFrame(
        [
            (export_run.info.run_id, "recs1", "crm", AS_OF, AS_OF, s, c, v, "als", items)
            for c, s, v, items in SHOWN
        ],
        SHOWN_SCHEMA,
    )
    overwrite_table(spark, config, table_name(config, "exported_lists"), shown)
    result = run_experiment(spark, config, "exp1")
    return config, export_run.info.run_id, result


def row(spark: SparkSession, config: Config, window: int, segment: str, metric: str) -> dict:
    table = spark.table(str(table_name(config, "experiment_results")))
    (found,) = (
        table.where((F.col("window_days") == window) & (F.col("segment") == segment))
        .where(F.col("metric") == metric)
        .collect()
    )
    return found.asDict()


def share_interval(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float, float]:
    p1, p2 = x1 / n1, x2 / n2
    spread = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    pooled = (x1 + x2) / (n1 + n2)
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return p1 - p2 - Z * spread, p1 - p2 + Z * spread, math.erfc(abs(z) / math.sqrt(2))


def test_conversion_worked_by_hand(spark: SparkSession, measured: tuple) -> None:
    config, _, result = measured
    assert result.measured == ["recs1"] and result.rows == 2 * 3 * 5  # windows x segments x metrics
    # 7 days, everyone: model m1 (A), m3 (A, B), m5 (A) bought a shown item: 3 of 5; holdout h1 (C): 1 of 4.
    r = row(spark, config, 7, "all", "conversion")
    assert (r["model_customers"], r["holdout_customers"]) == (5, 4)
    assert r["model_value"] == pytest.approx(0.6) and r["holdout_value"] == pytest.approx(0.25)
    assert r["uplift"] == pytest.approx(0.35)
    # Wald: sqrt(.6 * .4 / 5 + .25 * .75 / 4) = sqrt(.094875) = .308018; .35 -/+ 1.96 x that.
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((0.35 - Z * 0.308018, 0.35 + Z * 0.308018), abs=1e-5)
    # Pooled 4/9: se0 = sqrt(4/9 x 5/9 x (1/5 + 1/4)) = 1/3, z = 1.05.
    assert r["p_value"] == pytest.approx(math.erfc(1.05 / math.sqrt(2)))
    assert (r["ci_low"], r["ci_high"], r["p_value"]) == pytest.approx(share_interval(3, 5, 1, 4))
    assert r["complete"] and r["observed_days"] == 7.0
    assert r["verdict"].startswith("no clear difference in 7-day conversion on shown items: +35.0 points")
    # 14 days: m2's B on day 10 now counts too: 4 of 5.
    r = row(spark, config, 14, "all", "conversion")
    assert r["model_value"] == pytest.approx(0.8) and r["holdout_value"] == pytest.approx(0.25)
    # UK alone: m1, m2, m3 of m1..m4 (m4's day-20 purchase is after 14 days).
    r = row(spark, config, 14, "UK", "conversion")
    assert (r["model_customers"], r["model_value"]) == (4, pytest.approx(0.75))
    r = row(spark, config, 14, "DE", "conversion")
    assert (r["model_customers"], r["holdout_customers"], r["model_value"]) == (1, 0, 1.0)
    assert r["uplift"] is None and "no holdout" in r["verdict"]


def test_other_outcomes_worked_by_hand(spark: SparkSession, measured: tuple) -> None:
    config, _, _ = measured
    # Bought anything in 7 days: m1, m2 (C), m3, m5 = 4/5; h1, h2 = 2/4.
    r = row(spark, config, 7, "all", "buyer_rate")
    assert (r["model_value"], r["holdout_value"]) == pytest.approx((0.8, 0.5))
    # Hit rate in 7 days: m1 1/2, m2 0, m3 2/2, m4 0, m5 1/1 -> 2.5/5; h1 1/2, h4 shown nothing -> 0.5/4.
    r = row(spark, config, 7, "all", "hit_rate")
    assert (r["model_value"], r["holdout_value"]) == pytest.approx((0.5, 0.125))
    # Revenue in 7 days: model 10, 5, 30, 0, 10 (mean 11, sample variance 520/4 = 130);
    # holdout 5, 10, 0, 0 (mean 3.75, variance 68.75/3). Welch: sqrt(130/5 + 22.9167/4) = 5.632865.
    r = row(spark, config, 7, "all", "revenue")
    assert (r["model_value"], r["holdout_value"], r["uplift"]) == pytest.approx((11.0, 3.75, 7.25))
    spread = math.sqrt(130 / 5 + (68.75 / 3) / 4)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((7.25 - Z * spread, 7.25 + Z * spread))
    # Revenue from shown items in 7 days: model 10, 0, 30, 0, 10 -> 10; holdout 5, 0, 0, 0 -> 1.25.
    r = row(spark, config, 7, "all", "shown_revenue")
    assert (r["model_value"], r["holdout_value"]) == pytest.approx((10.0, 1.25))


def test_logged_to_the_export_run_and_settled_once_complete(spark: SparkSession, measured: tuple) -> None:
    config, export_run, _ = measured
    logged = mlflow.MlflowClient(tracking_uri(config)).get_run(export_run).data.metrics
    assert logged["experiment.7d.conversion.uplift"] == pytest.approx(0.35)
    assert logged["experiment.14d.revenue.model_value"] == pytest.approx(15.0)  # 10 + 25 + 30 + 0 + 10
    before = spark.table(str(table_name(config, "experiment_results"))).count()
    again = run_experiment(spark, config, "exp2")
    assert (again.measured, again.settled) == ([], 1)
    assert spark.table(str(table_name(config, "experiment_results"))).count() == before


def test_the_report_shows_the_latest_export(spark: SparkSession, measured: tuple) -> None:
    config, _, _ = measured
    results = latest_experiment(spark, config)
    assert set(results.segment) == {"all"} and set(results.window_days) == {7, 14}
    page = experiment_section(results)
    assert "Export of recs1" in page and "no clear difference in 7-day conversion on shown items" in page
    figure = experiment_figure(results)
    (points,) = figure.axes[0].lines[:1]
    assert list(points.get_ydata()) == pytest.approx([35.0, 55.0])  # conversion uplift, points


def test_an_open_window_says_so(spark: SparkSession, make_config: Callable[..., Config]) -> None:
    """Purchases reach only 3 days past the export: the 7-day rows are marked incomplete."""
    config = make_config(experiment={"windows_days": [7]})
    bought = [("UK", "m1", "A", "o1", AS_OF + dt.timedelta(days=3), 1.0, 10.0, 10.0)]
    purchases = spark.createDataFrame(
        [(*r, None, None, None, "l1", "f.csv", "r0", AS_OF) for r in bought], INTERACTIONS_SCHEMA
    )
    overwrite_table(spark, config, table_name(config, "interactions"), purchases)
    shown = spark.createDataFrame(
        [
            ("x", "recs9", "crm", AS_OF, AS_OF, "UK", c, v, "als", ["A"])
            for c, v in (("m1", "model"), ("h1", "holdout"))
        ],
        SHOWN_SCHEMA,
    )
    overwrite_table(spark, config, table_name(config, "exported_lists"), shown)
    result = run_experiment(spark, config, "exp3")  # export run "x" is unknown to MLflow: a warning
    r = row(spark, config, 7, "all", "conversion")
    assert not r["complete"] and r["observed_days"] == pytest.approx(3.0)
    assert r["verdict"].startswith("so far (3.0 of 7 days of purchases seen)")
    assert result.measured == ["recs9"]
    assert run_experiment(spark, config, "exp4").settled == 0  # measured again until complete
