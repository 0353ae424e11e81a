"""Bronze -> silver on real Delta tables: every reason, exact accounting, idempotency, drift."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import Config
from recsys_spark.io.tables import overwrite_table, table_name
from recsys_spark.steps.ingest import IngestError, _deduplicated, ingest, load_sample
from tests.conftest import DIRTY, SAMPLE

SILVER_COLUMNS = [
    "segment",
    "customer_id",
    "item_id",
    "order_id",
    "event_ts",
    "quantity",
    "unit_price",
    "revenue",
    "description",
]


def land_and_ingest(spark: SparkSession, config: Config, run_id: str = "run-1"):
    load_sample(spark, config)
    return ingest(spark, config, run_id)


def silver(spark: SparkSession, config: Config, key: str = "interactions"):
    return spark.table(str(table_name(config, key)))


def test_every_quarantine_reason_on_hand_made_rows(
    spark: SparkSession, make_config: Callable[..., Config]
) -> None:
    config = make_config(DIRTY)
    result = land_and_ingest(spark, config, "run-dirty")

    assert result.rows_read == 20
    assert result.duplicates_dropped == 1
    assert result.valid == 3
    assert result.quarantined == {
        "malformed_line": 2,
        "cancellation": 1,
        "non_product_code": 2,
        "missing_customer": 1,
        "missing_item": 1,
        "missing_order": 1,
        "unparseable_timestamp": 1,
        "future_timestamp": 1,
        "unparseable_quantity": 1,
        "non_positive_quantity": 2,
        "unparseable_price": 1,
        "non_positive_price": 1,
        "missing_segment": 1,
    }
    expected = spark.createDataFrame(
        [
            (
                "United Kingdom",
                "17850",
                "85123A",
                "900001",
                dt.datetime(2011, 3, 1, 8, 26),
                6.0,
                2.55,
                15.3,
                "WHITE HANGING HEART T-LIGHT HOLDER",
            ),
            # trimmed stock code, spreadsheet-style customer id 17850.0
            (
                "United Kingdom",
                "17850",
                "71053",
                "900001",
                dt.datetime(2011, 3, 1, 8, 26),
                2.0,
                3.39,
                6.78,
                "WHITE METAL LANTERN",
            ),
            # lower-case stock code upper-cased; quoted description with a comma
            (
                "France",
                "12583",
                "84406B",
                "900002",
                dt.datetime(2011, 3, 2, 9, 0),
                8.0,
                2.75,
                22.0,
                "CREAM CUPID HEARTS, COAT HANGER",
            ),
        ],
        "segment string, customer_id string, item_id string, order_id string, event_ts timestamp, "
        "quantity double, unit_price double, revenue double, description string",
    )
    rows = silver(spark, config)
    assert_df_equality(
        rows.select(*SILVER_COLUMNS),
        expected,
        ignore_row_order=True,
        ignore_nullable=True,
        ignore_metadata=True,
    )
    assert {r.run_id for r in rows.select("run_id").distinct().collect()} == {"run-dirty"}

    quarantine = silver(spark, config, "interactions_quarantine")
    by_invoice = {r.raw["InvoiceNo"]: r.reason for r in quarantine.collect()}
    assert by_invoice["900008"] == "future_timestamp"
    assert by_invoice["C900003"] == "cancellation"
    assert by_invoice["900012"] == "unparseable_price"  # NaN is not a price
    malformed = quarantine.where(F.col("reason") == "malformed_line").collect()
    assert sorted(r.raw["_corrupt_record"] for r in malformed)[1] == "900016,85123A"
    assert quarantine.count() + rows.count() + result.duplicates_dropped == result.rows_read


def reference_counts(files: list[Path]) -> dict[str, int]:
    """An independent pandas reading of the same rules, for the real sample."""
    df = pd.concat([pd.read_csv(f, dtype=str, keep_default_na=False) for f in files])
    read = len(df)
    df = df.drop_duplicates()
    code = df.StockCode.str.strip().str.upper()
    fee = code.isin(["POST", "D", "M", "DOT", "C2", "S", "B", "CRUK", "PADS", "BANK CHARGES", "AMAZONFEE"])
    fee |= code.str.startswith("GIFT_")
    cancel = df.InvoiceNo.str.startswith("C")
    no_customer = df.CustomerID.str.strip() == ""
    bad_price = df.UnitPrice.astype(float) <= 0
    bad_quantity = df.Quantity.astype(float) <= 0
    return {
        "rows_read": read,
        "duplicates": read - len(df),
        "cancellation": int(cancel.sum()),
        "non_product_code": int((~cancel & fee).sum()),
        "missing_customer": int((~cancel & ~fee & no_customer).sum()),
        "non_positive_quantity": int((~cancel & ~fee & ~no_customer & bad_quantity).sum()),
        "non_positive_price": int((~cancel & ~fee & ~no_customer & ~bad_quantity & bad_price).sum()),
        "valid": int((~cancel & ~fee & ~no_customer & ~bad_quantity & ~bad_price).sum()),
    }


def test_real_sample_matches_independent_reference(
    spark: SparkSession, make_config: Callable[..., Config]
) -> None:
    config = make_config(SAMPLE)
    result = land_and_ingest(spark, config)
    expected = reference_counts(sorted(SAMPLE.glob("*.csv")))
    assert expected["duplicates"] > 0 and expected["cancellation"] > 0 and expected["missing_customer"] > 0
    assert result.rows_read == expected["rows_read"]
    assert result.duplicates_dropped == expected["duplicates"]
    assert result.valid == expected["valid"] == silver(spark, config).count()
    for reason in (
        "cancellation",
        "non_product_code",
        "missing_customer",
        "non_positive_quantity",
        "non_positive_price",
    ):
        assert result.quarantined.get(reason, 0) == expected[reason], reason
    assert result.rows_read == result.valid + result.quarantined_total + result.duplicates_dropped


def december_landed(make_config: Callable[..., Config], tmp_path: Path) -> tuple[Config, Path, Path, Path]:
    """A landing folder holding only the sample's December file, and a config over it."""
    landing = tmp_path / "landing"
    landing.mkdir()
    december, january = sorted(SAMPLE.glob("*.csv"))
    shutil.copy(december, landing)
    return make_config(landing), landing, december, january


def test_incremental_and_idempotent(
    spark: SparkSession, make_config: Callable[..., Config], tmp_path: Path
) -> None:
    config, landing, december, january = december_landed(make_config, tmp_path)

    first = land_and_ingest(spark, config, "run-1")
    assert first.silver_inserted == reference_counts([december])["valid"]
    before = silver(spark, config).orderBy("line_id")
    before_rows = before.collect()

    again = land_and_ingest(spark, config, "run-2")
    assert (again.silver_inserted, again.quarantine_inserted) == (0, 0)
    assert again.already_ingested == first.valid + first.quarantined_total
    after = silver(spark, config).orderBy("line_id")
    assert_df_equality(
        after, spark.createDataFrame(before_rows, before.schema), ignore_nullable=True, ignore_metadata=True
    )
    assert spark.table(str(table_name(config, "purchases"))).count() == first.rows_read

    shutil.copy(january, landing)
    second = land_and_ingest(spark, config, "run-3")
    assert second.silver_inserted == reference_counts([january])["valid"]
    assert second.quarantine_inserted == second.quarantined_total - first.quarantined_total
    new_rows = silver(spark, config).where(F.col("run_id") == "run-3")
    assert new_rows.where(F.col("event_ts") < "2011-01-01").count() == 0
    assert silver(spark, config).groupBy("line_id").count().where("count > 1").count() == 0


def test_silver_from_a_version_without_categories_is_brought_up_to_the_contract(
    spark: SparkSession, make_config: Callable[..., Config], tmp_path: Path
) -> None:
    config, landing, december, january = december_landed(make_config, tmp_path)
    land_and_ingest(spark, config)
    name = table_name(config, "interactions")
    # Silver as the version before the category column wrote it.
    overwrite_table(spark, config, name, silver(spark, config).drop("category").localCheckpoint())
    assert "category" not in silver(spark, config).columns
    shutil.copy(january, landing)
    land_and_ingest(spark, config, "run-2")
    rows = silver(spark, config)
    december_rows = rows.where(F.col("run_id") == "run-1")
    assert december_rows.count() > 0
    derivable = F.regexp_extract("description", "[A-Za-z]", 0) != ""
    assert december_rows.where(derivable & F.col("category").isNull()).count() == 0
    assert (
        rows.where("description = 'WHITE HANGING HEART T-LIGHT HOLDER' AND category != 'HOLDER'").count() == 0
    )
    again = land_and_ingest(spark, config, "run-3")
    assert again.silver_inserted == 0


def test_extra_column_in_a_later_file_is_absorbed(
    spark: SparkSession, make_config: Callable[..., Config], tmp_path: Path
) -> None:
    config, landing, december, january = december_landed(make_config, tmp_path)
    first = land_and_ingest(spark, config)
    drifted = pd.read_csv(january, dtype=str, keep_default_na=False).assign(Channel="web")
    drifted.to_csv(landing / january.name, index=False)

    second = land_and_ingest(spark, config, "run-2")
    assert second.silver_inserted == reference_counts([january])["valid"]
    # December's lines keep their line_id although the table gained a column.
    assert second.already_ingested == first.valid + first.quarantined_total
    raw = silver(spark, config, "interactions_quarantine").where(F.col("run_id") == "run-2").first().raw
    assert raw["Channel"] == "web"


def test_renamed_column_fails_with_what_to_fix(
    spark: SparkSession, make_config: Callable[..., Config], tmp_path: Path
) -> None:
    """A file lacking a mapped column never lands (tests/reliability/test_hostile_files.py); a
    bronze table that lacks one (conf changed after landing, or a table of the user's own) fails
    ingest before anything is written, naming the column and what to fix."""
    landing = tmp_path / "landing"
    landing.mkdir()
    pd.read_csv(DIRTY / "purchases_2011-03.csv", dtype=str, nrows=3).to_csv(landing / "m.csv", index=False)
    config = make_config(landing)
    load_sample(spark, config)
    renamed = make_config(
        landing, schemas=vars(config.schemas), input={"columns": {"customer_id": "Customer"}}
    )
    with pytest.raises(IngestError, match=r"no column 'Customer' \(for customer_id\).*Fix input.columns"):
        ingest(spark, renamed, "run-1")
    assert not spark.catalog.tableExists(str(table_name(config, "interactions")))


def test_ingest_without_bronze_says_what_to_do(
    spark: SparkSession, make_config: Callable[..., Config]
) -> None:
    with pytest.raises(IngestError, match="recsys load-sample"):
        ingest(spark, make_config(), "run-1")


def test_empty_landing_folder(
    spark: SparkSession, make_config: Callable[..., Config], tmp_path: Path
) -> None:
    with pytest.raises(IngestError, match=r"no file in .* matches \*\.csv"):
        load_sample(spark, make_config(tmp_path))


def test_exact_and_near_duplicates_in_one_pass(spark: SparkSession) -> None:
    """Of an exact copy the first source file's line is kept; of near twins the first by source
    file, then line id; a rejected line's copies go, whatever its fields."""
    purchase = ("UK", "c1", "i1", "o1", dt.datetime(2011, 1, 1), 6.0, 2.5, None)
    other = ("UK", "c1", "i2", "o1", dt.datetime(2011, 1, 1), 1.0, 2.5, None)
    rejected = (None, "c2", None, "o2", None, None, None, None)
    rows = [
        ("b.csv", "L2", *purchase, None),  # exact copy of the line below, in a later file
        ("a.csv", "L2", *purchase, None),  # kept: the first file's copy of L2, first of its twins
        ("a.csv", "L3", *purchase, None),  # near twin of L2 (spacing, "6" vs "6.0")
        ("a.csv", "L3", *purchase, None),  # exact copy of that twin, in the same file
        ("a.csv", "L1", *other, None),  # another purchase, kept
        ("a.csv", "L9", *rejected, "missing_item"),
        ("c.csv", "L9", *rejected, "missing_item"),  # copy of a rejected line
        (None, "L8", *rejected, "missing_item"),  # a line with no source file is still a line
    ]
    schema = (
        "source_file string, line_id string, segment string, customer_id string, item_id string, "
        "order_id string, event_ts timestamp, quantity double, unit_price double, rating double, "
        "reason string"
    )
    out = _deduplicated(spark.createDataFrame(rows, schema)).select("source_file", "line_id", "reason")
    expected = spark.createDataFrame(
        [
            ("a.csv", "L2", None),
            ("a.csv", "L3", "near_duplicate"),
            ("a.csv", "L1", None),
            ("a.csv", "L9", "missing_item"),
            (None, "L8", "missing_item"),
        ],
        "source_file string, line_id string, reason string",
    )
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)
