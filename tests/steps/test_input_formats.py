"""Reading what retailers export: one test per reader option, each with its expected silver rows.

Every case lands the same two purchases written another way (delimiter, encoding, header,
timestamp form, column names) and checks silver holds exactly them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark.io.landing import safe_column_names
from recsys_spark.io.tables import table_name
from recsys_spark.steps.ingest import ingest, load_sample

SILVER = ["customer_id", "item_id", "order_id", "event_ts", "quantity", "unit_price", "description"]
EXPECTED = [
    ("17850", "85123A", "536365", dt.datetime(2010, 12, 1, 8, 26), 6.0, 2.55, "Crème brûlée HOLDER"),
    ("13047", "22752", "536366", dt.datetime(2010, 12, 1, 8, 28), 2.0, 7.65, 'Ärmel; "SET" 7'),
]
COLUMNS = {
    "customer_id": "CustomerID",
    "item_id": "StockCode",
    "order_id": "InvoiceNo",
    "event_ts": "InvoiceDate",
    "quantity": "Quantity",
    "unit_price": "UnitPrice",
    "description": "Description",
    "segment": None,
}


def delimited(
    sep: str = ",",
    times: tuple[str, str] = ("2010-12-01 08:26:00", "2010-12-01 08:28:00"),
    header: list[str] | None = None,
) -> str:
    """The two purchases as delimited text (quotes doubled inside quoted fields)."""
    names = header or [
        "InvoiceNo",
        "StockCode",
        "Description",
        "Quantity",
        "InvoiceDate",
        "UnitPrice",
        "CustomerID",
    ]
    rows = [
        ["536365", "85123A", '"Crème brûlée HOLDER"', "6", times[0], "2.55", "17850"],
        ["536366", "22752", '"Ärmel; ""SET"" 7"', "2", times[1], "7.65", "13047"],
    ]
    return "\n".join(sep.join(row) for row in [names, *rows]) + "\n"


def silver_of(
    spark: SparkSession,
    make_config: Callable[..., Any],
    folder: Path,
    files: dict[str, bytes],
    **input_conf: Any,
) -> DataFrame:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    columns = {**COLUMNS, **input_conf.pop("columns", {})}
    config = make_config(landing=folder, input={"columns": columns, **input_conf})
    load_sample(spark, config)
    result = ingest(spark, config, "run_formats")
    assert result.quarantined_total == 0, result.quarantined
    return spark.table(str(table_name(config, "interactions"))).select(*SILVER)


def assert_expected(spark: SparkSession, silver: DataFrame, expected: list[tuple] = EXPECTED) -> None:
    schema = (
        "customer_id string, item_id string, order_id string, event_ts timestamp, quantity double, "
        "unit_price double, description string"
    )
    wanted = spark.createDataFrame(expected, schema)
    assert_df_equality(silver, wanted, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True)


@pytest.mark.parametrize(
    ("name", "encoding", "data"),
    [
        ("utf8.csv", "UTF-8", delimited().encode("utf-8")),
        ("bom.csv", "UTF-8", b"\xef\xbb\xbf" + delimited().encode("utf-8")),
        ("latin1.csv", "ISO-8859-1", delimited().encode("latin-1")),
        ("utf16.csv", "UTF-16", delimited().encode("utf-16")),  # Python writes a BOM, as Excel does
    ],
)
def test_encodings(
    spark: SparkSession,
    make_config: Callable[..., Any],
    tmp_path: Path,
    name: str,
    encoding: str,
    data: bytes,
) -> None:
    silver = silver_of(spark, make_config, tmp_path, {name: data}, csv={"encoding": encoding})
    assert_expected(spark, silver)


def test_tab_separated_with_spaced_header(
    spark: SparkSession, make_config: Callable[..., Any], tmp_path: Path
) -> None:
    header = ["Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price", "Customer ID"]
    text = delimited("\t", header=header).replace('"Crème brûlée HOLDER"', "Crème brûlée HOLDER")
    bad = "536367\t\tno item\t1\t2010-12-01 08:30:00\t1.0\t17850\n"  # quarantined: shows raw names
    columns = {"order_id": "Invoice", "unit_price": "Price", "customer_id": "Customer ID"}
    folder = tmp_path / "tsv"
    folder.mkdir()
    (folder / "export.TSV").write_text(text + bad, encoding="utf-8")
    config = make_config(
        landing=folder, input={"columns": {**COLUMNS, **columns}, "csv": {"delimiter": "\t"}}
    )
    load_sample(spark, config)
    bronze = spark.table(str(table_name(config, "purchases")))
    assert "Customer_ID" in bronze.columns
    assert bronze.schema["Customer_ID"].metadata["raw_name"] == "Customer ID"
    result = ingest(spark, config, "run_tsv")
    assert result.quarantined == {"missing_item": 1}
    raw = spark.table(str(table_name(config, "interactions_quarantine"))).first().raw
    assert raw["Customer ID"] == "17850"
    assert_expected(spark, spark.table(str(table_name(config, "interactions"))).select(*SILVER))


@pytest.mark.parametrize(
    ("form", "times"),
    [
        ("epoch_seconds", ("1291191960", "1291192080")),
        ("epoch_millis", ("1291191960000", "1291192080000")),
        ("iso8601", ("2010-12-01T09:26:00+01:00", "2010-12-01T08:28:00Z")),
    ],
)
def test_timestamp_forms(
    spark: SparkSession, make_config: Callable[..., Any], tmp_path: Path, form: str, times: tuple[str, str]
) -> None:
    files = {"times.csv": delimited(times=times).encode()}
    silver = silver_of(spark, make_config, tmp_path, files, timestamp_format=form)
    assert_expected(spark, silver)


def test_headerless_file_with_named_columns_and_any_extension(
    spark: SparkSession, make_config: Callable[..., Any], tmp_path: Path
) -> None:
    names = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID"]
    body = (
        "536365|85123A|'Crème brûlée HOLDER'|6|2010-12-01 08:26:00|2.55|17850\n"
        "536366|22752|'Ärmel; \"SET\" 7'|2|2010-12-01 08:28:00|7.65|13047\n"
    )
    files = {"purchases.dat": body.encode(), "README.md": b"not data"}
    csv = {"header": False, "column_names": names, "delimiter": "|", "quote": "'", "escape": "\\"}
    silver = silver_of(spark, make_config, tmp_path, files, csv=csv, file_glob="*.dat")
    assert_expected(spark, silver)


def test_safe_column_names() -> None:
    assert safe_column_names(["\ufeffCustomer ID", "Unit Price (£)", "a b", "a_b", "", "x"]) == [
        "Customer_ID",
        "Unit_Price",
        "a_b",
        "a_b_2",
        "column_5",
        "x",
    ]


def test_optional_columns_absent(
    spark: SparkSession, make_config: Callable[..., Any], tmp_path: Path
) -> None:
    """Only customer and item mapped: one basket per customer, each line counts 1, no time or price."""
    text = "user\tartist\n1\tA1\n1\tB1\n2\tA1\n"
    columns = {c: None for c in COLUMNS} | {"customer_id": "user", "item_id": "artist"}
    silver = silver_of(
        spark, make_config, tmp_path, {"plays.tsv": text.encode()}, columns=columns, csv={"delimiter": "\t"}
    )
    rows = silver.withColumn("category", F.lit(None)).orderBy("customer_id", "item_id").collect()
    assert [(r.customer_id, r.item_id, r.order_id, r.event_ts, r.quantity, r.unit_price) for r in rows] == [
        ("1", "A1", "1", None, 1.0, None),
        ("1", "B1", "1", None, 1.0, None),
        ("2", "A1", "2", None, 1.0, None),
    ]
