"""Bad input: every case ends in a clear error or in quarantine rows with a reason, never in a
silent drop. docs/reliability.md lists each case id below with its outcome."""

from __future__ import annotations

import random
import re
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import ConfigError, load_config, parse_settings
from recsys_spark.io.tables import table_name
from recsys_spark.kernels.candidates import POPULAR_OVERALL
from recsys_spark.steps.baskets import run_baskets
from recsys_spark.steps.ingest import QUARANTINE_REASONS, IngestError, ingest, load_sample
from recsys_spark.steps.score import run_score
from recsys_spark.steps.train import run_train

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "tests" / "data" / "online_retail_sample"


def line(case: str, order: str = "", item: str = "85123A", quantity: str = "6",
         ts: str = "2011-03-01 08:26:00", price: str = "2.55", customer: str = "17850",
         country: str = "United Kingdom") -> str:  # fmt: skip
    """One CSV line whose Description is the case id (how the tests find it again)."""
    order = order or f"9{zlib.crc32(case.encode()) % 10**6:06d}"
    return ",".join([order, item, case, quantity, ts, price, customer, country])


# case id -> (CSV lines, the reason each line is quarantined under, or None for silver)
T = TypeVar("T")

# The run cases (each a whole pipeline run on crafted input) and the tests that cover them.
COVERED: dict[str, str] = {}


def covers(*cases: str) -> Callable[[T], T]:
    """Record that the decorated test covers ``cases`` (their ids in docs/reliability.md)."""

    def mark(test: T) -> T:
        for case in cases:
            if case in COVERED:
                raise ValueError(f"case {case!r} is covered twice")
            COVERED[case] = test.__name__
        return test

    return mark


ROW_CASES: dict[str, tuple[list[str], list[str | None]]] = {
    "null_customer_id": ([line("null_customer_id", customer="")], ["missing_customer"]),
    "blank_customer_id": ([line("blank_customer_id", customer='"   "')], ["missing_customer"]),
    "null_item_id": ([line("null_item_id", item="")], ["missing_item"]),
    "blank_item_id": ([line("blank_item_id", item='" "')], ["missing_item"]),
    "null_order_id": ([line("null_order_id", order='""')], ["missing_order"]),
    "nan_quantity": ([line("nan_quantity", quantity="NaN")], ["unparseable_quantity"]),
    "inf_quantity": ([line("inf_quantity", quantity="Infinity")], ["unparseable_quantity"]),
    "text_quantity": ([line("text_quantity", quantity="six")], ["unparseable_quantity"]),
    "negative_quantity": ([line("negative_quantity", quantity="-3")], ["non_positive_quantity"]),
    "zero_quantity": ([line("zero_quantity", quantity="0")], ["non_positive_quantity"]),
    "nan_price": ([line("nan_price", price="NaN")], ["unparseable_price"]),
    "negative_inf_price": ([line("negative_inf_price", price="-Infinity")], ["unparseable_price"]),
    "negative_price": ([line("negative_price", price="-2.55")], ["non_positive_price"]),
    "zero_price": ([line("zero_price", price="0")], ["non_positive_price"]),
    "future_timestamp": ([line("future_timestamp", ts="2099-01-01 00:00:00")], ["future_timestamp"]),
    "unparseable_timestamp": ([line("unparseable_timestamp", ts="31/02/2011 25")], ["unparseable_timestamp"]),
    "missing_timestamp": ([line("missing_timestamp", ts="")], ["unparseable_timestamp"]),
    "missing_segment": ([line("missing_segment", country="")], ["missing_segment"]),
    # Implausible values (once all in silver: a year-1 date made silver unreadable to delta-rs
    # and pandas; a price of 1e300 made revenue 4.8e301).
    "year_one_timestamp": ([line("year_one_timestamp", ts="0001-01-01 00:00:00")], ["implausible_timestamp"]),
    "year_1900_timestamp": (
        [line("year_1900_timestamp", ts="1900-01-01 00:00:00")],
        ["implausible_timestamp"],
    ),
    "epoch_zero_timestamp": (
        [line("epoch_zero_timestamp", ts="1970-01-01 00:00:00")],
        ["implausible_timestamp"],
    ),
    "huge_quantity": ([line("huge_quantity", quantity="1000000000000000000")], ["implausible_quantity"]),
    "huge_price": ([line("huge_price", price="4800000.00")], ["implausible_price"]),
    "exponent_price": ([line("exponent_price", price="1e300")], ["unparseable_price"]),
    "exponent_quantity": ([line("exponent_quantity", quantity="1e18")], ["unparseable_quantity"]),
    "hex_quantity": ([line("hex_quantity", quantity="0x10")], ["unparseable_quantity"]),
    "underscored_quantity": ([line("underscored_quantity", quantity="1_000")], ["unparseable_quantity"]),
    "signed_decimal_quantity": ([line("signed_decimal_quantity", quantity="+6.")], [None]),
    # Once passed to score, which failed after baskets, train and evaluate had replaced their tables.
    "reserved_segment_name": ([line("reserved_segment_name", country="all")], ["reserved_segment"]),
    "cancellation": ([line("cancellation", order="C912345", quantity="-1")], ["cancellation"]),
    "non_product_code": ([line("non_product_code", item="POST")], ["non_product_code"]),
    "too_many_fields": ([line("too_many_fields") + ",EXTRA"], ["malformed_line"]),
    "ids_with_commas_and_quotes": (
        [line("ids_with_commas_and_quotes", item='"X,""Y"""', customer='"C,1 ""q"""')],
        [None],
    ),
    "ids_with_newlines": ([line("ids_with_newlines", customer='"C\nNL"')], [None]),
    "unicode_ids": ([line("unicode_ids", item="ärtikel-✓", customer="Kundé-東京")], [None]),
    "spreadsheet_customer_id": ([line("spreadsheet_customer_id", customer="17850.0")], [None]),
    "exact_duplicates": ([line("exact_duplicates")] * 3, [None]),
    "near_duplicates": (
        [
            line("near_duplicates", order="923456"),
            line("near_duplicates", order="923456", item=" 85123a ", quantity="6.0"),
        ],
        [None, "near_duplicate"],
    ),
}


def write_landing(folder: Path, lines: list[str], name: str = "purchases_2011-03.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def dirty(spark: SparkSession, make_config: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory):
    lines = [text for texts, _ in ROW_CASES.values() for text in texts]
    landing = write_landing(tmp_path_factory.mktemp("dirty"), lines)
    config = make_config(landing=landing)
    load_sample(spark, config)
    result = ingest(spark, config, "run_dirty")
    silver = spark.table(str(table_name(config, "interactions"))).toPandas()
    quarantine = spark.table(str(table_name(config, "interactions_quarantine"))).toPandas()
    quarantine["case"] = quarantine.raw.map(lambda raw: dict(raw).get("Description"))
    return result, silver, quarantine


@pytest.mark.parametrize("case", ROW_CASES)
def test_bad_row_is_quarantined_with_its_reason_or_kept(dirty: Any, case: str) -> None:
    _, silver, quarantine = dirty
    expected = ROW_CASES[case][1]
    kept = silver[silver.description == case]
    reasons = sorted(quarantine[quarantine.case == case].reason)
    assert len(kept) == expected.count(None)
    assert reasons == sorted(r for r in expected if r is not None)


def test_every_row_is_accounted_for(dirty: Any) -> None:
    result, silver, quarantine = dirty
    lines = sum(len(texts) for texts, _ in ROW_CASES.values())
    assert result.rows_read == lines
    assert result.rows_read == result.valid + result.quarantined_total + result.duplicates_dropped
    assert (len(silver), len(quarantine)) == (result.valid, result.quarantined_total)
    assert result.duplicates_dropped == 2


def test_odd_ids_round_trip_exactly(dirty: Any) -> None:
    _, silver, _ = dirty
    by_case = silver.set_index("description")
    assert by_case.loc["ids_with_commas_and_quotes", "customer_id"] == 'C,1 "q"'
    assert by_case.loc["ids_with_commas_and_quotes", "item_id"] == 'X,"Y"'
    assert by_case.loc["ids_with_newlines", "customer_id"] == "C\nNL"
    assert by_case.loc["unicode_ids", "customer_id"] == "Kundé-東京"
    assert by_case.loc["unicode_ids", "item_id"] == "ÄRTIKEL-✓"
    assert by_case.loc["spreadsheet_customer_id", "customer_id"] == "17850"


def ingest_folder(spark: SparkSession, make_config: Callable[..., Any], folder: Path, **overrides: Any):
    config = make_config(landing=folder, **overrides)
    load_sample(spark, config)
    return config, ingest(spark, config, "run_case")


@covers("no_landing_files")
def test_no_landing_files(spark: SparkSession, make_config: Callable[..., Any], tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("not a purchase file")
    with pytest.raises(IngestError, match=r"no file in .* matches \*\.csv, .*: set input\.file_glob"):
        load_sample(spark, make_config(landing=tmp_path))


@covers("empty_input")
def test_empty_input(spark: SparkSession, make_config: Callable[..., Any], tmp_path: Path) -> None:
    config, result = ingest_folder(spark, make_config, write_landing(tmp_path, []))
    assert (result.rows_read, result.valid, result.quarantined_total) == (0, 0, 0)
    with pytest.raises(ValueError, match="no interactions to train on in .*interactions_quarantine"):
        run_train(spark, config, "run_case")


@covers("all_rows_invalid")
def test_all_rows_invalid(spark: SparkSession, make_config: Callable[..., Any], tmp_path: Path) -> None:
    lines = [line(f"all_invalid_{i}", quantity="-1") for i in range(5)]
    config, result = ingest_folder(spark, make_config, write_landing(tmp_path, lines))
    assert result.valid == 0 and result.quarantined == {"non_positive_quantity": 5}
    with pytest.raises(ValueError, match="every row was rejected"):
        run_train(spark, config, "run_case")


@covers("missing_required_column", "renamed_column")
@pytest.mark.parametrize(
    "case, header",
    [
        ("missing_required_column", HEADER.replace(",CustomerID", "")),
        ("renamed_column", HEADER.replace("CustomerID", "Customer_ID")),
    ],
)
def test_missing_or_renamed_column_names_the_column_and_the_fix(
    spark: SparkSession, make_config: Callable[..., Any], tmp_path: Path, case: str, header: str
) -> None:
    columns = header.count(",") + 1
    (tmp_path / "purchases.csv").write_text(header + "\n" + ",".join(["1"] * columns) + "\n")
    config = make_config(landing=tmp_path)
    expected = r"purchases.csv: has no column 'CustomerID' \(for customer_id\).*or input.columns in conf"
    with pytest.raises(IngestError, match=expected):
        load_sample(spark, config)
    assert not spark.catalog.tableExists(str(table_name(config, "purchases")))


@covers("extra_column")
def test_extra_column_is_kept_in_raw_and_ignored(
    spark: SparkSession, make_config: Callable[..., Any], tmp_path: Path
) -> None:
    rows = [line("extra_column") + ",web", line("extra_column_bad", quantity="x") + ",app"]
    text = "\n".join([HEADER + ",Channel", *rows]) + "\n"
    (tmp_path / "purchases.csv").write_text(text)
    config, result = ingest_folder(spark, make_config, tmp_path)
    assert (result.valid, result.quarantined) == (1, {"unparseable_quantity": 1})
    quarantine = spark.table(str(table_name(config, "interactions_quarantine"))).first()
    assert dict(quarantine.raw)["Channel"] == "app"


@covers("typed_parquet_input")
def test_typed_parquet_input(spark: SparkSession, make_config: Callable[..., Any], tmp_path: Path) -> None:
    """Wrong column types: numbers and timestamps typed in Parquet, a float customer id, and a
    quantity column of text in a second file."""
    typed = pd.DataFrame(
        {
            "InvoiceNo": ["930001", "930001"],
            "StockCode": ["85123A", "71053"],
            "Description": ["typed_a", "typed_b"],
            "Quantity": [6, 2],
            "InvoiceDate": pd.to_datetime(["2011-03-01 08:26:00", "2011-03-01 08:26:00"]),
            "UnitPrice": [2.55, 3.39],
            "CustomerID": [17850.0, 17850.0],
            "Country": ["United Kingdom", "United Kingdom"],
        }
    )
    typed.to_parquet(tmp_path / "typed.parquet", coerce_timestamps="us")
    text = typed.assign(Quantity=["six", "7"], Description=["text_a", "text_b"])
    text.to_parquet(tmp_path / "text.parquet", coerce_timestamps="us")
    config, result = ingest_folder(spark, make_config, tmp_path, input={"landing_format": "parquet"})
    assert (result.valid, result.quarantined) == (3, {"unparseable_quantity": 1})
    silver = spark.table(str(table_name(config, "interactions"))).toPandas()
    assert set(silver.customer_id) == {"17850"}
    assert silver.event_ts.min() == pd.Timestamp("2011-03-01 08:26:00")


@covers("parquet_nanosecond_timestamps")
def test_parquet_nanosecond_timestamps(
    spark: SparkSession, make_config: Callable[..., Any], tmp_path: Path
) -> None:
    frame = pd.DataFrame({"InvoiceNo": ["1"], "InvoiceDate": pd.to_datetime(["2011-03-01 08:26:00"])})
    frame.to_parquet(tmp_path / "nanos.parquet")  # pandas' default: nanoseconds
    config = make_config(landing=tmp_path, input={"landing_format": "parquet"})
    with pytest.raises(IngestError, match="nanosecond timestamps .* coerce_timestamps='us'"):
        load_sample(spark, config)


def edge_lines() -> list[str]:
    """A customer with 50,000 lines, a segment of one customer, and a basket of 1,000 items."""
    rng = random.Random(7)
    lines = []
    for order in range(5000):
        items = rng.sample(range(300), 10)
        ts = f"2011-0{1 + order % 2}-{1 + order % 28:02d} 10:{order % 60:02d}:00"
        order_id = f"94{order:04d}"
        lines += [line("whale", order=order_id, item=f"W{i:03d}", ts=ts, customer="WHALE") for i in items]
    lines += [line("solo", order="951000", item=f"S{i}", customer="SOLO", country="Solo") for i in range(3)]
    lines += [line("big_basket", order="952000", item=f"B{i:04d}", customer="BIG") for i in range(1000)]
    return lines


@pytest.fixture(scope="module")
def edge(spark: SparkSession, make_config: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory):
    landing = tmp_path_factory.mktemp("edge")
    for source in SAMPLE.iterdir():
        (landing / source.name).write_bytes(source.read_bytes())
    write_landing(landing, edge_lines(), "edge_2011-02.csv")
    config = make_config(
        landing=landing,
        models={"min_segment_users": 10, "enabled": ["als", "popularity"], "publish": "als",
                "als": {"factors": 8, "iterations": 3}},
    )  # fmt: skip
    load_sample(spark, config)
    ingested = ingest(spark, config, "run_edge")
    return config, ingested


@covers("whale_customer_50000_lines", "single_user_segment", "basket_of_1000_items")
def test_whale_solo_segment_and_big_basket_flow_through_every_step(spark: SparkSession, edge: Any) -> None:
    config, ingested = edge
    silver = spark.table(str(table_name(config, "interactions")))
    assert ingested.valid == silver.count()
    assert silver.where("customer_id = 'WHALE'").count() == 50_000

    baskets = run_baskets(spark, config, "run_edge")
    assert baskets.baskets == baskets.mined_baskets + baskets.oversized + baskets.skipped_baskets
    oversized = spark.table(str(table_name(config, "baskets_quarantine"))).collect()
    assert {(r.order_id, r.n_items) for r in oversized} == {("952000", 1000)}
    assert {r.reason for r in oversized} == {"more than baskets.max_basket_items=500 items"}
    assert "Solo" in baskets.skipped_segments

    train = run_train(spark, config, "run_edge")
    pairs = silver.select("segment", "customer_id", "item_id").distinct().count()
    assert train.pairs == pairs
    assert "Solo" in train.skipped_segments

    score = run_score(spark, config, "run_edge")
    customers = silver.select("segment", "customer_id").distinct().count()
    left = score.customers - score.published_customers - score.fallback_customers
    assert score.customers == customers and left >= 0
    recommendations = spark.table(str(table_name(config, "recommendations")))
    solo = recommendations.where("customer_id = 'SOLO'").collect()
    assert solo and {r.reason for r in solo} == {POPULAR_OVERALL}
    whale = recommendations.where("customer_id = 'WHALE'")
    assert 0 < whale.count() <= config.models.top_n
    bought = silver.where("customer_id = 'WHALE'").select("segment", "customer_id", "item_id")
    assert whale.join(bought, ["segment", "customer_id", "item_id"], "left_semi").count() == 0
    per_customer = recommendations.groupBy("segment", "customer_id").agg(
        F.max("rank").alias("n"), F.count("*").alias("rows")
    )
    assert per_customer.where("n != rows").count() == 0


@covers("one_user", "one_item")
@pytest.mark.parametrize("case", ["one_user", "one_item"])
def test_degenerate_catalogues_finish_with_counted_fallbacks(
    spark: SparkSession, make_config: Callable[..., Any], tmp_path: Path, case: str
) -> None:
    if case == "one_user":
        lines = [line(case, order=f"96{i:04d}", item=f"I{i % 25}", customer="ONLY") for i in range(60)]
    else:
        lines = [line(case, order=f"97{i:04d}", item="ONLY1", customer=f"C{i}") for i in range(60)]
    config, result = ingest_folder(spark, make_config, write_landing(tmp_path, lines))
    assert result.valid == 60
    run_baskets(spark, config, "run_case")  # the hybrid's rules (too few baskets: none mined)
    train = run_train(spark, config, "run_case")
    assert train.skipped_segments  # too few users or items for a model of its own: logged, not dropped
    score = run_score(spark, config, "run_case")
    nothing_left = score.customers - score.published_customers - score.fallback_customers
    assert score.customers == (1 if case == "one_user" else 60)
    assert score.fallback_customers + nothing_left == score.customers
    if case == "one_item":  # everyone bought the only item: nothing to recommend, counted
        assert nothing_left == 60


CONF_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "conf_unknown_key": ({"models": {"top_nn": 5}}, "unknown key 'models.top_nn'"),
    "conf_wrong_type": ({"models": {"top_n": "ten"}}, "key 'models.top_n' must be an integer"),
    "conf_missing_value": ({"models": {"als": {"factors": None}}}, "'models.als.factors' must be an integer"),
    "conf_bad_choice": ({"models": {"enabled": ["als", "svd"]}}, "must be one of"),
    "conf_injection_table": ({"tables": {"items": "x; DROP TABLE y"}}, "not a valid table identifier"),
    "conf_injection_schema": ({"schemas": {"gold": "gold`; DROP"}}, "not a valid table identifier"),
    "conf_injection_catalog": ({"catalog": "main.x"}, "not a valid table identifier"),
    "conf_injection_exclude_table": ({"models": {"exclude_table": "a.b; DROP c"}}, "not a valid table name"),
    "conf_volume_path_escape": (
        {"input": {"landing_path": "/Volumes/c/s/v/../../../../etc"}},
        "is not a usable path: no '..' parts",
    ),
    "conf_holdout_share": (
        {"export": {"holdout_share": 1.5}},
        "'export.holdout_share' is 1.5: use a value from 0 below 1",
    ),
    "conf_hybrid_weighs_disabled_model": (
        {"models": {"enabled": ["als", "popularity", "hybrid"]}},
        "models.hybrid.weights weighs ['itemknn', 'content'] but models.enabled is",
    ),
    "conf_hybrid_unknown_source": ({"models": {"hybrid": {"weights": {"svd": 1.0}}}}, "must be one of"),
    "conf_mmr_lambda_out_of_range": (
        {"business_rules": {"mmr_lambda": 1.5}},
        "'business_rules.mmr_lambda' is 1.5: use a value from 0 to 1",
    ),
    "conf_category_cap_zero": ({"business_rules": {"max_per_category": 0}}, "max_per_category' is 0"),
    # Out-of-range numbers (each once failed deep in a run, or ran on silently).
    "conf_top_n_zero": ({"models": {"top_n": 0}}, "'models.top_n' is 0: use a value from 1 to 1000"),
    "conf_top_n_negative": ({"models": {"top_n": -1}}, "'models.top_n' is -1"),
    "conf_chunk_baskets_zero": (
        {"baskets": {"chunk_baskets": 0}},
        "'baskets.chunk_baskets' is 0: use 1 or more",
    ),
    "conf_min_support_zero": (
        {"baskets": {"min_support": 0}},
        "'baskets.min_support' is 0: use a value above 0",
    ),
    "conf_factors_huge": (
        {"models": {"als": {"factors": 5000}}},
        "'models.als.factors' is 5000: use a value from 1 to 1024",
    ),
    "conf_bpr_factors_zero": ({"models": {"bpr": {"factors": 0}}}, "'models.bpr.factors' is 0"),
    "conf_iterations_zero": ({"models": {"als": {"iterations": 0}}}, "'models.als.iterations' is 0"),
    "conf_negative_regularization": (
        {"models": {"als": {"regularization": -0.1}}},
        "'models.als.regularization' is -0.1",
    ),
    "conf_learning_rate_zero": ({"models": {"bpr": {"learning_rate": 0}}}, "'models.bpr.learning_rate' is 0"),
    "conf_negative_seed": ({"models": {"als": {"seed": -1}}}, "'models.als.seed' is -1"),
    "conf_alpha_zero": ({"models": {"confidence": {"alpha": 0}}}, "'models.confidence.alpha' is 0"),
    "conf_neighbours_zero": ({"models": {"itemknn": {"neighbours": 0}}}, "'models.itemknn.neighbours' is 0"),
    "conf_bm25_b_above_one": ({"models": {"itemknn": {"bm25_b": 2}}}, "'models.itemknn.bm25_b' is 2"),
    "conf_content_dims_negative": ({"models": {"content": {"dims": -5}}}, "'models.content.dims' is -5"),
    "conf_half_life_zero": (
        {"models": {"popularity": {"half_life_days": 0}}},
        "'models.popularity.half_life_days' is 0",
    ),
    "conf_hybrid_candidates_zero": (
        {"models": {"hybrid": {"candidates": 0}}},
        "'models.hybrid.candidates' is 0",
    ),
    "conf_hybrid_negative_weight": (
        {"models": {"hybrid": {"weights": {"als": -1.0}}}},
        "'models.hybrid.weights.als' is -1.0: use 0 or more",
    ),
    "conf_hybrid_all_weights_zero": (
        {"models": {"hybrid": {"weights": {"als": 0, "itemknn": 0, "content": 0, "rules": 0}}}},
        "at least one weight must be above 0",
    ),
    "conf_tuning_trials_negative": ({"models": {"tuning": {"trials": -2}}}, "'models.tuning.trials' is -2"),
    "conf_validation_share_one": (
        {"models": {"tuning": {"validation_share": 1.0}}},
        "validation_share' is 1.0",
    ),
    "conf_score_block_rows_zero": ({"models": {"score_block_rows": 0}}, "'models.score_block_rows' is 0"),
    "conf_min_segment_users_zero": ({"models": {"min_segment_users": 0}}, "'models.min_segment_users' is 0"),
    "conf_max_len_one": ({"baskets": {"max_len": 1}}, "'baskets.max_len' is 1: use a value from 2 to 20"),
    "conf_min_confidence_above_one": (
        {"baskets": {"min_confidence": 1.5}},
        "'baskets.min_confidence' is 1.5",
    ),
    "conf_max_basket_items_one": ({"baskets": {"max_basket_items": 1}}, "'baskets.max_basket_items' is 1"),
    "conf_cutoff_quantile_one": (
        {"evaluation": {"cutoff_quantile": 1.0}},
        "'evaluation.cutoff_quantile' is 1.0",
    ),
    "conf_k_zero": ({"evaluation": {"k": [0, 10]}}, "'evaluation.k[0]' is 0"),
    "conf_bootstrap_negative": (
        {"evaluation": {"bootstrap_samples": -1}},
        "'evaluation.bootstrap_samples' is -1",
    ),
    "conf_min_coverage_above_one": ({"evaluation": {"min_coverage": 5}}, "'evaluation.min_coverage' is 5"),
    "conf_pagerank_damping_one": (
        {"analytics": {"pagerank_damping": 1}},
        "'analytics.pagerank_damping' is 1",
    ),
    "conf_shuffle_partitions_zero": ({"spark": {"shuffle_partitions": 0}}, "'spark.shuffle_partitions' is 0"),
    "conf_future_tolerance_negative": (
        {"input": {"future_tolerance_hours": -1}},
        "future_tolerance_hours' is -1",
    ),
    # Values with a syntax of their own, and settings that only work together.
    "conf_invalid_regex": (
        {"input": {"non_product_code_pattern": "([A-Z"}},
        "'input.non_product_code_pattern' = '([A-Z' is not a regex",
    ),
    "conf_driver_memory": (
        {"spark": {"driver_memory": "6 GB"}},
        "'spark.driver_memory' is '6 GB': use a size",
    ),
    "conf_unknown_timezone": ({"spark": {"timezone": "Mars/Olympus"}}, "'spark.timezone' is 'Mars/Olympus'"),
    "conf_unknown_encoding": ({"input": {"csv": {"encoding": "utf-99"}}}, "'input.csv.encoding' is 'utf-99'"),
    "conf_quote_two_chars": (
        {"input": {"csv": {"quote": "''"}}},
        "'input.csv.quote' is \"''\": use one character",
    ),
    "conf_split_date_without_date": (
        {"evaluation": {"split": "date", "cutoff_date": "last week"}},
        "evaluation.cutoff_date is 'last week': give a date as YYYY-MM-DD",
    ),
    "conf_split_last_days_without_days": (
        {"evaluation": {"split": "last_days"}},
        "evaluation.split is last_days but evaluation.last_days is null",
    ),
    "conf_lapsed_before_active": (
        {"analytics": {"active_days": 90, "lapsed_days": 30}},
        "analytics.lapsed_days is 30, fewer than analytics.active_days (90)",
    ),
}


@pytest.mark.parametrize("case", CONF_CASES)
def test_bad_conf_fails_at_load_naming_the_key(case: str) -> None:
    overrides, message = CONF_CASES[case]
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("local", overrides=overrides)


def test_set_flag_is_validated_like_conf() -> None:
    with pytest.raises(ConfigError, match="not a valid table identifier"):
        load_config("local", overrides=parse_settings(["schemas.silver=s; DROP TABLE t"]))


@covers("conf_yaml_backtick")
def test_yaml_syntax_errors_are_one_line_naming_the_place(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.yml"
    overlay.write_text("project: x\ncatalog: `main`\n")
    with pytest.raises(ConfigError) as raised:
        load_config("local", extra_files=[overlay])
    message = str(raised.value)
    assert message.startswith(f"{overlay}: line 2, column 10: not valid YAML (found character '`'")
    assert "\n" not in message
    with pytest.raises(ConfigError, match=r"--set 'catalog=`main`': line 1, column 1: not valid YAML"):
        parse_settings(["catalog=`main`"])


@covers("work_dir_not_writable")
def test_a_work_dir_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")  # a folder cannot be made inside a file, even by root
    work_dir = blocker / "work"
    result = subprocess.run(
        [sys.executable, "-m", "recsys_spark.cli", "ingest", "--set", f"work_dir={work_dir}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"recsys: config error: work_dir {work_dir} cannot be written (Not a directory): "
        "set work_dir in conf (or --set work_dir=...) to a folder this user can write"
    ]


def test_quarantine_reasons_are_all_exercised(dirty: Any) -> None:
    _, _, quarantine = dirty
    # An unparseable rating needs an input with ratings: tests/steps/test_explicit.py.
    assert set(QUARANTINE_REASONS) - {"unparseable_rating"} == set(quarantine.reason)


def test_the_reliability_doc_lists_exactly_the_cases_tested() -> None:
    """Every case a test covers (a row or conf case, or a run case a test declares with
    ``covers``) has its row in docs/reliability.md's tables, and every row there is tested."""
    import tests.reliability.test_crashes  # noqa: F401 - each registers its cases in COVERED
    import tests.reliability.test_hostile_files  # noqa: F401

    doc = (ROOT / "docs" / "reliability.md").read_text()
    documented = re.findall(r"^\| `([a-z0-9_]+)` \|", doc, flags=re.MULTILINE)
    tested = [*ROW_CASES, *COVERED, *CONF_CASES]
    assert len(documented) == len(set(documented)), "a case is documented twice"
    assert sorted(documented) == sorted(tested), (
        f"documented, not tested: {sorted(set(documented) - set(tested))}; "
        f"tested, not documented: {sorted(set(tested) - set(documented))}"
    )
    assert len(tested) >= 30
