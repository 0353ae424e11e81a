"""Hostile landing files: nothing enters bronze unchecked, no line is lost unseen, and no file can
wedge later runs. Each case id is a row of docs/reliability.md."""

from __future__ import annotations

import gzip
import logging
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from recsys_spark.config import Config, load_config
from recsys_spark.io.tables import table_name
from recsys_spark.steps import export
from recsys_spark.steps.evaluate import choose
from recsys_spark.steps.ingest import IngestError, ingest, load_sample
from tests.reliability.test_bad_input import HEADER, covers, line

GOOD = [line(f"good_{i}", order=f"98{i:04d}", item=f"G{i % 7}", customer=f"C{i % 5}") for i in range(12)]


def csv_text(lines: list[str], header: str = HEADER) -> str:
    return "\n".join([header, *lines]) + "\n"


def landed(spark: SparkSession, config: Config) -> int:
    name = str(table_name(config, "purchases"))
    return spark.table(name).count() if spark.catalog.tableExists(name) else 0


def rejected(spark: SparkSession, config: Config, folder: Path, bad: dict[str, bytes], match: str) -> None:
    """Land a good file, then add ``bad``: load-sample fails naming the file, bronze unchanged."""
    before = landed(spark, config)
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    with pytest.raises(IngestError, match=match):
        load_sample(spark, config)
    assert landed(spark, config) == before


@pytest.fixture
def good_folder(
    spark: SparkSession, make_config: Callable[..., Config], tmp_path: Path
) -> tuple[Config, Path]:
    (tmp_path / "good.csv").write_text(csv_text(GOOD))
    config = make_config(landing=tmp_path)
    load_sample(spark, config)
    assert landed(spark, config) == len(GOOD)
    return config, tmp_path


BROKEN_QUOTE = [*GOOD[:4], line('"BROKEN QUOTE desc', order="981000"), *GOOD[4:] * 20]

REJECTED_FILES: dict[str, tuple[dict[str, bytes], str]] = {
    "unbalanced_quote_swallows_lines": (
        {"march.csv": csv_text(BROKEN_QUOTE).encode()},
        r"march.csv: records span more than input.csv.max_lines_per_record=20 lines "
        r"\(1: line 6 runs 161 lines to line 166\): an unbalanced quote",
    ),
    "utf16_file_with_utf8_conf": (
        {"utf16.csv": csv_text(GOOD).encode("utf-16")},
        r"utf16.csv: is written in UTF-16 \(by its first bytes\) but input.csv.encoding is UTF-8",
    ),
    "latin1_file_with_utf8_conf": (
        {"latin1.csv": csv_text([line("Crème brûlée")]).encode("latin-1")},
        r"latin1.csv: is not UTF-8 \(byte 0xe8 cannot be decoded\): set input.csv.encoding",
    ),
    "column_missing_in_one_file": (
        {"april.csv": csv_text(GOOD, HEADER.replace(",CustomerID", ",Customer")).encode()},
        r"1 of 2 landing files rejected, nothing landed:\n  april.csv: has no column 'CustomerID' "
        r"\(for customer_id\); its columns are InvoiceNo, .*, Customer, Country",
    ),
    "damaged_gzip": (
        {"may.csv.gz": gzip.compress(csv_text(GOOD).encode())[:-30]},
        r"may.csv.gz: is a damaged gzip file",
    ),
    "gzip_named_csv": (
        {"june.csv": gzip.compress(csv_text(GOOD).encode())},
        r"june.csv: is gzip-compressed but its name does not end in .gz: Spark decides by the name",
    ),
    "workbook_named_csv": (
        {"july.csv": b"PK\x03\x04" + bytes(200)},
        r"july.csv: is a zip archive \(an Excel workbook\?\)",
    ),
}


@covers(*REJECTED_FILES)
@pytest.mark.parametrize("case", REJECTED_FILES)
def test_a_bad_file_is_rejected_by_name_before_bronze_changes(
    spark: SparkSession, make_config: Callable[..., Config], good_folder: tuple[Config, Path], case: str
) -> None:
    config, folder = good_folder
    files, match = REJECTED_FILES[case]
    if case.endswith("utf8_conf"):
        config = make_config(
            landing=folder, schemas=vars(config.schemas), input={"csv": {"encoding": "UTF-8"}}
        )
    rejected(spark, config, folder, files, match)


@covers("swallowed_lines_limit_raised")
def test_a_real_multiline_field_passes_when_the_limit_allows(
    spark: SparkSession, make_config: Callable[..., Config], tmp_path: Path
) -> None:
    """The limit is conf's: a field that really holds 30 line breaks lands with a higher one,
    and Spark's rows per file still equal the audit's records."""
    description = '"' + "\n".join(f"part {i}" for i in range(31)) + '"'
    lines = [*GOOD, line("x", customer="C9").replace(",x,", f",{description},")]
    (tmp_path / "notes.csv").write_text(csv_text(lines))
    config = make_config(landing=tmp_path, input={"csv": {"max_lines_per_record": 40}})
    assert load_sample(spark, config).rows_landed == len(lines)


@covers("odd_file_names_and_blank_lines")
def test_odd_names_case_and_blank_lines_are_read_and_the_rest_logged(
    spark: SparkSession, make_config: Callable[..., Config], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "march sales.csv").write_text(csv_text(GOOD[:4]))
    (tmp_path / "APRIL.CSV").write_text(csv_text(GOOD[4:8]).replace("\n", "\r\n"))
    (tmp_path / "May.Csv.Gz").write_bytes(gzip.compress(("\n" + csv_text(GOOD[8:]) + "\n\n").encode()))
    (tmp_path / "summary.xlsx").write_bytes(b"PK\x03\x04")
    config = make_config(landing=tmp_path)
    with caplog.at_level(logging.WARNING):
        result = load_sample(spark, config)
    assert result.rows_landed == len(GOOD)
    assert sorted(result.files) == ["APRIL.CSV", "May.Csv.Gz", "march sales.csv"]
    assert "not read: summary.xlsx" in caplog.text
    bronze = spark.table(str(table_name(config, "purchases")))
    per_file = {r.source_file: r["count"] for r in bronze.groupBy("source_file").count().collect()}
    assert per_file == {"march sales.csv": 4, "APRIL.CSV": 4, "May.Csv.Gz": 4}


DECODED = {
    "utf16_with_bom_auto": csv_text(GOOD + [line("Crème brûlée")]).encode("utf-16"),
    "utf16_without_bom_auto": csv_text(GOOD + [line("Crème brûlée")]).encode("utf-16-le"),
    "windows1252_auto": csv_text(GOOD + [line("Crème brûlée – €5")]).encode("windows-1252"),
}


@covers(*DECODED)
@pytest.mark.parametrize("case", DECODED)
def test_encoding_auto_reads_what_spreadsheets_write(
    spark: SparkSession, make_config: Callable[..., Config], tmp_path: Path, case: str
) -> None:
    """Once a UTF-16 file put NUL bytes into bronze's column names for good and a Latin-1 one
    stored U+FFFD: with ``encoding: auto`` each decodes exactly, names clean."""
    (tmp_path / "export.csv").write_bytes(DECODED[case])
    config = make_config(landing=tmp_path)
    load_sample(spark, config)
    bronze = spark.table(str(table_name(config, "purchases")))
    assert bronze.columns[:8] == HEADER.split(",")
    result = ingest(spark, config, "run_case")
    assert (result.valid, result.quarantined_total) == (len(GOOD) + 1, 0)
    silver = spark.table(str(table_name(config, "interactions")))
    descriptions = {r.description for r in silver.select("description").collect()}
    assert ("Crème brûlée – €5" if case == "windows1252_auto" else "Crème brûlée") in descriptions
    assert not any("\ufffd" in d for d in descriptions)


@covers("backtick_in_column_name")
def test_a_column_name_with_a_backtick_never_wedges_ingest(
    spark: SparkSession, make_config: Callable[..., Config], tmp_path: Path
) -> None:
    """Once bronze took ``Chan`nel`` and every later ingest failed with INVALID_ATTRIBUTE_NAME_SYNTAX."""
    (tmp_path / "channel.csv").write_text(csv_text([f"{g},web" for g in GOOD], HEADER + ",Chan`nel"))
    config = make_config(landing=tmp_path)
    load_sample(spark, config)
    bronze = spark.table(str(table_name(config, "purchases")))
    assert "Chan_nel" in bronze.columns and bronze.schema["Chan_nel"].metadata["raw_name"] == "Chan`nel"
    for run in ("run_a", "run_b"):
        assert ingest(spark, config, run).valid == len(GOOD)


@covers("relanded_correction", "rule_tightened")
def test_a_corrected_file_landed_again_replaces_its_lines_in_silver(
    spark: SparkSession, make_config: Callable[..., Config], tmp_path: Path
) -> None:
    """Once both the old and the corrected lines stayed in silver (quantity 48 and 480 for one
    order line) and the summary's valid count differed from the table's."""
    first = [line("order_line", order="990001", quantity="48"), *GOOD]
    (tmp_path / "march.csv").write_text(csv_text(first))
    config = make_config(landing=tmp_path)
    load_sample(spark, config)
    assert ingest(spark, config, "run_1").silver_inserted == len(first)
    corrected = [line("order_line", order="990001", quantity="480"), *GOOD[:-3]]
    (tmp_path / "march.csv").write_text(csv_text(corrected))
    load_sample(spark, config)
    result = ingest(spark, config, "run_2")
    assert (result.silver_inserted, result.silver_retracted) == (1, 4)
    silver = spark.table(str(table_name(config, "interactions")))
    assert silver.count() == result.valid == len(corrected)
    quantities = [r.quantity for r in silver.where("order_id = '990001'").collect()]
    assert quantities == [480.0]

    # A tighter rule retracts silver's lines it now rejects and quarantines them, in one run.
    strict = make_config(landing=tmp_path, schemas=vars(config.schemas), input={"max_quantity": 100})
    result = ingest(spark, strict, "run_3")
    assert (result.silver_retracted, result.quarantine_inserted) == (1, 1)
    assert result.quarantined == {"implausible_quantity": 1}
    assert silver.count() == result.valid == len(corrected) - 1
    quarantine = spark.table(str(table_name(config, "interactions_quarantine")))
    assert [r.reason for r in quarantine.collect()] == ["implausible_quantity"]


@covers("too_few_test_customers")
def test_a_split_with_too_few_test_customers_publishes_the_baseline_saying_why() -> None:
    """One bulk order of 100k lines once moved the quantile split so that the test period held
    one customer, and popularity was published for everyone without a word."""
    conf = load_config("local").evaluation
    overall = pd.DataFrame(
        [{"model": m, "k": 10, "ndcg": v, "coverage": 0.5} for m, v in [("als", 0.3), ("popularity", 0.1)]]
    )
    assert choose(overall, conf, test_customers=30).model == "als"
    too_few = choose(overall, conf, test_customers=1)
    assert too_few.model == "popularity" and too_few.reason == (
        "baseline published: the split (evaluation.split quantile) left 1 test customers, fewer than "
        "evaluation.min_test_customers=30: too few to judge any model; widen the test period (e.g. a "
        "lower cutoff_quantile)"
    )


ODD_IDS = [
    "17850",
    "\t17850",
    "17850 ",
    '=HYPERLINK("http://x","y")',
    "+44",
    "-1",
    "@SUM(A1)",
    "\rCR",
    'a,"b"',
]


@covers("export_ids_exact_and_formula_safe")
def test_export_keeps_ids_exact_and_neutralises_formulas(spark: SparkSession, tmp_path: Path) -> None:
    """Once the CSV writer stripped a leading tab, so one id had two rows with different lists,
    and an id such as =HYPERLINK(...) was written as a live spreadsheet formula."""
    rows = spark.createDataFrame(
        [(i, f"ITEM{n}") for n, i in enumerate(ODD_IDS)], "customer_id string, item_1 string"
    )
    for fmt in ("csv", "parquet"):
        written = export.write_single_file(
            spark, rows.orderBy("customer_id"), tmp_path, "recs", fmt, "customer_id"
        )
        frame = (
            pd.read_csv(written, dtype=str, keep_default_na=False)
            if fmt == "csv"
            else pd.read_parquet(written)
        )
        got = dict(zip(frame.item_1, frame.customer_id, strict=True))
        if fmt == "parquet":  # typed, never opened as a spreadsheet: ids untouched
            assert got == {f"ITEM{n}": i for n, i in enumerate(ODD_IDS)}
            continue
        safe = {f"ITEM{n}": ("'" + i if i[0] in "=+-@\t\r" else i) for n, i in enumerate(ODD_IDS)}
        assert got == safe
        assert (
            got["ITEM1"] == "'\t17850" and got["ITEM2"] == "17850 " and got["ITEM3"].startswith("'=HYPERLINK")
        )


@covers("export_one_row_per_customer")
def test_an_export_file_with_a_customer_twice_is_never_moved_into_place(
    spark: SparkSession, tmp_path: Path
) -> None:
    previous = tmp_path / "recs.csv"
    previous.write_text("the previous export\n")
    rows = spark.createDataFrame(
        [("17850", "A"), ("17850", "B"), ("13047", "C")], "customer_id string, item_1 string"
    )
    with pytest.raises(
        export.ExportError, match=r"_staging_recs_csv: customer_id repeats in the written file \('17850'\)"
    ):
        export.write_single_file(spark, rows, tmp_path, "recs", "csv", "customer_id")
    assert previous.read_text() == "the previous export\n"
