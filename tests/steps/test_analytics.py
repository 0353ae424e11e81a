"""Analytics tables, analyst views and queries, notebooks and the CRM export, after a real run of
every step on the bundled Online Retail sample."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import runpy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import networkx as nx
import pandas as pd
import pytest
import yaml
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import Config
from recsys_spark.io.tables import table_name
from recsys_spark.io.views import VIEWS, view_name
from recsys_spark.kernels.graph import item_pagerank
from recsys_spark.kernels.uplift import HOLDOUT_ARM as HOLDOUT
from recsys_spark.kernels.uplift import MODEL_ARM as MODEL
from recsys_spark.steps.export import ExportError, run_export
from tests.conftest import SAMPLE_RUN

ROOT = Path(__file__).resolve().parents[2]
SALT = "test-salt-0123456789-abcdef"
SETTINGS: dict[str, Any] = {
    **SAMPLE_RUN,
    "mlflow": {"experiment": "analytics_test"},
    "export": {"holdout_share": 0.25},
}

EXPORT_RUN = "export_test_run"  # the run an export is recorded under in gold.exported_lists


@pytest.fixture(scope="module")
def config(make_config: Callable[..., Config], dev_pipeline: Config) -> Config:
    """These tests' settings over the tables of every step of `recsys run` on the sample: the
    bundle's dev pipeline, run once per session (conftest's dev_pipeline)."""
    return _same_tables(make_config, dev_pipeline)


def table(spark: SparkSession, config: Config, key: str) -> DataFrame:
    return spark.table(str(table_name(config, key)))


def test_item_and_customer_dimensions_match_pandas(spark: SparkSession, config: Config) -> None:
    lines = table(spark, config, "interactions").toPandas()
    customers = table(spark, config, "customers").toPandas().set_index("customer_id")
    assert len(customers) == lines.customer_id.nunique()
    as_of = lines.event_ts.max()
    for customer_id, own in lines.groupby("customer_id"):
        row = customers.loc[customer_id]
        assert row.orders == own.order_id.nunique() and row.lines == len(own)
        assert row.revenue == pytest.approx(own.revenue.sum(), abs=0.01)
        latest = own.sort_values(["event_ts", "segment"], ascending=[False, True]).iloc[0]
        assert row.segment == latest.segment
        assert row.days_since_last_order == (as_of.normalize() - own.event_ts.max().normalize()).days
    assert set(customers.lifecycle) <= {"new", "active", "lapsing", "lapsed"}
    assert sorted(customers.value_decile.unique()) == list(range(1, 11))
    top = customers.sort_values("revenue").iloc[-1]
    assert top.value_decile == 10

    items = table(spark, config, "items").toPandas().set_index("item_id")
    assert len(items) == lines.item_id.nunique()
    heart = items.loc["85123A"]
    assert heart.description == "WHITE HANGING HEART T-LIGHT HOLDER" and heart.category == "HOLDER"
    assert heart.buyers == lines[lines.item_id == "85123A"].customer_id.nunique()


def test_category_saturation_shares_add_up(spark: SparkSession, config: Config) -> None:
    saturation = table(spark, config, "category_saturation").toPandas()
    assert saturation.groupby("customer_id").share.sum().round(4).eq(1.0).all()
    assert saturation.decile.between(1, 10).all()
    # Within a category the decile never decreases as the share grows.
    for _, part in saturation.groupby("category"):
        ordered = part.sort_values(["share", "customer_id"])
        assert ordered.decile.is_monotonic_increasing


def test_cross_sell_targets_non_buyers_of_the_top_sellers(spark: SparkSession, config: Config) -> None:
    cross = table(spark, config, "cross_sell_potential")
    lines = table(spark, config, "interactions")
    assert cross.count() > 0
    bought = cross.join(lines, ["segment", "customer_id", "item_id"], "left_semi")
    assert bought.count() == 0
    top = (
        lines.groupBy("item_id")
        .agg(F.countDistinct("customer_id").alias("n"))
        .orderBy(F.desc("n"), "item_id")
        .limit(config.analytics.cross_sell_top_sellers)
    )
    targets = {r.item_id for r in cross.select("item_id").distinct().collect()}
    assert targets <= {r.item_id for r in top.collect()}
    per_item = cross.groupBy("segment", "item_id").agg(F.max("rank").alias("n"), F.count("*").alias("rows"))
    assert per_item.where("n != rows or n > 200").count() == 0


def test_pagerank_kernel_on_a_small_graph() -> None:
    # A 3-cycle is symmetric: every node 1/3. A spoke pointing to a hub makes the hub rank first.
    cycle = pd.DataFrame({"source": ["a", "b", "c"], "target": ["b", "c", "a"], "lift": [2.0, 2.0, 2.0]})
    nodes = item_pagerank(cycle)
    assert nodes.pagerank.tolist() == pytest.approx([1 / 3] * 3)
    assert nodes.item_id.tolist() == ["a", "b", "c"] and nodes["rank"].tolist() == [1, 2, 3]
    star = pd.DataFrame({"source": ["a", "b", "c"], "target": ["h", "h", "h"], "lift": [1.5, 3.0, 2.0]})
    ranked = item_pagerank(star).set_index("item_id")
    assert ranked.loc["h", "rank"] == 1 and ranked.loc["h", "in_degree"] == 3
    expected = nx.pagerank(nx.DiGraph([("a", "h", {"weight": 1.5}), ("b", "h", {"weight": 3.0})]))
    assert expected  # networkx itself is what the kernel calls; the kernel adds degrees and ranks
    with pytest.raises(ValueError, match="finite, positive lift"):
        item_pagerank(star.assign(lift=[1.0, -1.0, 1.0]))


def test_rules_graph_is_the_single_item_rules(spark: SparkSession, config: Config) -> None:
    rules = table(spark, config, "association_rules").where("segment = 'all' AND size(antecedent) = 1")
    edges = table(spark, config, "rules_graph_edges")
    nodes = table(spark, config, "rules_graph_nodes")
    assert edges.count() == rules.count() > 0
    endpoints = edges.select(F.explode(F.array("source_item_id", "target_item_id")).alias("item_id"))
    assert nodes.count() == endpoints.distinct().count()
    assert nodes.agg(F.sum("pagerank")).first()[0] == pytest.approx(1.0)


def test_views_show_the_latest_run_with_descriptions(spark: SparkSession, config: Config) -> None:
    for view in VIEWS:
        assert spark.catalog.tableExists(str(view_name(config, view))), view
    latest = spark.table(str(view_name(config, "v_recommendations_latest")))
    published = table(spark, config, "recommendations")
    assert latest.count() == published.count()
    assert latest.select("run_id").distinct().count() == 1
    assert latest.where(F.col("description").isNull()).count() == 0
    audience = spark.table(str(view_name(config, "v_item_audience")))
    assert audience.count() == table(spark, config, "item_audience").count()
    assert audience.where(F.col("lifecycle").isNull()).count() == 0
    rules = spark.table(str(view_name(config, "v_top_rules")))
    best = rules.where("segment = 'all' AND rank = 1").first()
    all_rules = table(spark, config, "association_rules").where("segment = 'all'")
    assert best.lift == all_rules.agg(F.max("lift")).first()[0]
    assert all(best.antecedent_descriptions)
    metrics = spark.table(str(view_name(config, "v_model_metrics_latest")))
    published_models = {r.model for r in metrics.where("published").select("model").distinct().collect()}
    assert len(published_models) == 1


def sql_examples() -> list[str]:
    text = (ROOT / "docs" / "analysts.md").read_text()
    return re.findall(r"```sql\n(.*?)```", text, flags=re.S)


def test_the_docs_have_at_least_five_queries() -> None:
    assert len(sql_examples()) >= 5


@pytest.mark.parametrize("query", sql_examples(), ids=lambda q: q.split("\n")[0][:40])
def test_every_documented_query_returns_rows(spark: SparkSession, config: Config, query: str) -> None:
    # The docs use the default schema names; the test's tables live under prefixed schemas.
    schemas = vars(config.schemas)
    runnable = re.sub(r"\b(bronze|silver|gold)\.", lambda m: f"{schemas[m.group(1)]}.", query)
    assert spark.sql(runnable).count() > 0, query


@pytest.mark.parametrize(
    "notebook, params, outputs",
    [
        ("customer_explorer.py", ["customer_id=17850"], ["profile", "history", "saturation"]),
        ("customer_explorer.py", [], ["profile", "history", "recommendations"]),
        ("item_rules_explorer.py", ["item_id=85123A"], ["item", "addons", "rules_from", "audience"]),
        ("item_rules_explorer.py", [], ["item", "rules_from", "rules_to"]),
    ],
)
def test_notebooks_run_as_scripts(
    config: Config,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    notebook: str,
    params: list[str],
    outputs: list[str],
) -> None:
    path = ROOT / "notebooks" / notebook
    assert path.read_text().startswith("# Databricks notebook source\n")
    overlay = tmp_path / "test.yml"
    overlay.write_text(yaml.safe_dump({"work_dir": config.work_dir, "schemas": vars(config.schemas)}))
    argv = [str(path), "--conf", str(overlay), *(arg for p in params for arg in ("--param", p))]
    monkeypatch.setattr(sys, "argv", argv)
    namespace = runpy.run_path(str(path), run_name="__main__")
    for name in outputs:
        assert namespace[name].count() > 0, f"{notebook}: {name} is empty"


def read_export(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    csv = pd.read_csv(folder / "recommendations.csv", dtype=str, keep_default_na=False)
    parquet = pd.read_parquet(folder / "recommendations.parquet")
    return csv, parquet, json.loads((folder / "manifest.json").read_text())


def test_export_has_one_row_per_customer_with_its_list(spark: SparkSession, config: Config) -> None:
    result = run_export(spark, config, EXPORT_RUN)
    csv, parquet, manifest = read_export(result.folder)
    published = table(spark, config, "recommendations")
    assert len(csv) == len(parquet) == manifest["rows"] == published.select("customer_id").distinct().count()
    assert csv.customer_id.is_unique and csv.customer_id.is_monotonic_increasing
    assert manifest["run_id"] == result.run_id == published.first().run_id
    assert set(csv.variant) == {HOLDOUT, MODEL}
    assert manifest["variants"] == csv.variant.value_counts().to_dict()
    # The model arm gets exactly the published list, in rank order, with descriptions.
    lists = published.toPandas().sort_values("rank").groupby(["segment", "customer_id"]).item_id.apply(list)
    descriptions = table(spark, config, "items").toPandas().set_index("item_id").description
    n = config.models.top_n
    for row in csv[csv.variant == MODEL].itertuples():
        items = [getattr(row, f"item_{i}") for i in range(1, n + 1)]
        expected = lists[(row.segment, row.customer_id)]
        assert items[: len(expected)] == expected and not any(items[len(expected) :])
        assert row.description_1 == descriptions[row.item_1]
    # The holdout arm gets popularity, never an item the customer already bought.
    lines = table(spark, config, "interactions").toPandas()
    holdout = csv[csv.variant == HOLDOUT]
    assert set(holdout.model) == {"popularity"}
    for row in holdout.itertuples():
        bought = set(lines[(lines.customer_id == row.customer_id) & (lines.segment == row.segment)].item_id)
        assert not bought & {getattr(row, f"item_{i}") for i in range(1, n + 1)}
    # CSV and Parquet hold the same rows.
    assert parquet.customer_id.tolist() == csv.customer_id.tolist()
    assert parquet.item_1.tolist() == csv.item_1.tolist()
    # gold.exported_lists keeps what each customer was shown, for `recsys experiment`.
    shown = table(spark, config, "exported_lists").where(F.col("recommendations_run_id") == result.run_id)
    shown = shown.toPandas().set_index("customer_id")
    assert set(shown.run_id) == {EXPORT_RUN} and len(shown) == len(csv)
    newest = table(spark, config, "interactions").agg(F.max("event_ts")).first()[0]
    assert set(shown.as_of) == {pd.Timestamp(newest)}
    for row in csv.itertuples():
        items = [i for i in (getattr(row, f"item_{k}") for k in range(1, n + 1)) if i]
        assert (shown.variant[row.customer_id], list(shown["items"][row.customer_id])) == (row.variant, items)


def test_variants_are_stable_and_near_the_configured_share(spark: SparkSession, config: Config) -> None:
    from recsys_spark.steps.export import variant_of

    ids = spark.range(20000).select(F.col("id").cast("string").alias("customer_id"))
    arms = ids.withColumn("variant", variant_of(F.col("customer_id"), "exp_a", 0.1))
    share = arms.where(F.col("variant") == HOLDOUT).count() / 20000
    assert share == pytest.approx(0.1, abs=0.01)
    again = ids.withColumn("variant", variant_of(F.col("customer_id"), "exp_a", 0.1))
    assert_df_equality(arms, again, ignore_row_order=True, ignore_metadata=True)
    other = ids.withColumn("variant", variant_of(F.col("customer_id"), "exp_b", 0.1))
    assert arms.join(other, ["customer_id", "variant"]).count() < 20000


def test_reexport_of_the_same_run_is_byte_identical(spark: SparkSession, config: Config) -> None:
    first = run_export(spark, config, EXPORT_RUN)
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in first.folder.iterdir()}
    second = run_export(spark, config, EXPORT_RUN)
    assert second.folder == first.folder
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in second.folder.iterdir()} == digests
    assert sorted(digests) == [
        "manifest.json",
        "recommendations.csv",
        "recommendations.parquet",
        "rules_graph_edges.csv",
        "rules_graph_nodes.csv",
    ]
    nodes = pd.read_csv(first.folder / "rules_graph_nodes.csv", dtype={"Id": str})
    edges = pd.read_csv(first.folder / "rules_graph_edges.csv", dtype={"Source": str, "Target": str})
    assert nodes["rank"].tolist() == list(range(1, len(nodes) + 1)) and nodes.Label.notna().all()
    assert set(edges.Source) | set(edges.Target) == set(nodes.Id) and (edges.Weight > 0).all()


def test_hashed_export_uses_the_salt_and_never_shows_it(
    spark: SparkSession,
    make_config: Callable[..., Config],
    config: Config,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    hashed = _same_tables(make_config, config, hash_customer_ids=True, path=str(tmp_path))
    monkeypatch.delenv(hashed.export.salt_env, raising=False)
    with pytest.raises(ExportError, match=hashed.export.salt_env):
        run_export(spark, hashed, EXPORT_RUN)
    monkeypatch.setenv(hashed.export.salt_env, "short")
    with pytest.raises(ExportError, match="at least 16 characters") as short:
        run_export(spark, hashed, EXPORT_RUN)
    assert "short" not in str(short.value).replace("at least", "")

    monkeypatch.setenv(hashed.export.salt_env, SALT)
    with caplog.at_level(logging.DEBUG):
        result = run_export(spark, hashed, EXPORT_RUN)
    csv, _, manifest = read_export(result.folder)
    raw, _, _ = read_export(run_export(spark, config, EXPORT_RUN).folder)
    assert "customer_id" not in csv.columns
    assert csv.customer_hash.tolist() == sorted(
        hashlib.sha256((SALT + c).encode()).hexdigest() for c in raw.customer_id
    )
    # The arms follow the raw id, so hashing does not move anyone between them.
    pairs = zip(raw.customer_id, raw.variant, strict=True)
    by_hash = {hashlib.sha256((SALT + c).encode()).hexdigest(): v for c, v in pairs}
    assert csv.set_index("customer_hash").variant.to_dict() == by_hash
    captured = capfd.readouterr()
    params = json.dumps(hashed.to_flat_dict(), default=str)  # what MLflow logs as params
    everything = [caplog.text, captured.out, captured.err, json.dumps(manifest), params]
    everything += [p.read_text(errors="replace") for p in result.folder.iterdir() if p.suffix != ".parquet"]
    assert not any(SALT in text for text in everything)
    assert SALT.encode() not in (result.folder / "recommendations.parquet").read_bytes()


def test_active_days_keeps_only_recent_customers(
    spark: SparkSession, make_config: Callable[..., Config], config: Config, tmp_path: Path
) -> None:
    recent = _same_tables(make_config, config, active_days=7, path=str(tmp_path))
    result = run_export(spark, recent, EXPORT_RUN)
    csv, _, _ = read_export(result.folder)
    customers = table(spark, config, "customers").toPandas().set_index("customer_id")
    expected = set(customers[customers.days_since_last_order <= 7].index)
    assert 0 < len(csv) < len(customers)
    assert set(csv.customer_id) == expected
    assert result.inactive_dropped == result.customers_published - len(csv)


def _same_tables(make_config: Callable[..., Config], config: Config, **export: Any) -> Config:
    """A config over ``config``'s tables with other export settings."""
    settings = {**SETTINGS, "export": {**SETTINGS["export"], **export}}
    return make_config(schemas=vars(config.schemas), **settings)
