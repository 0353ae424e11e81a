"""Landing files -> bronze's raw rows, with nothing entering bronze unchecked.

Before Spark reads a file, it is audited here apart from Spark's CSV parser: its compression and
encoding are established (a byte-order mark, else UTF-8, else windows-1252 with ``encoding:
auto``), its header must hold every column conf maps, and its records are counted with Python's
csv module, which also finds a quote that swallows the lines after it. A file that fails is
named with its problem and nothing is landed; afterwards Spark's row count per file must equal
the audit's, so no line is lost between the two parsers.
"""

from __future__ import annotations

import codecs
import csv
import fnmatch
import functools
import gzip
import io
import logging
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pyspark.sql import Column, DataFrame, DataFrameReader, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys_spark.config.schema import ColumnMapping, CsvConfig, InputConfig
from recsys_spark.io.tables import quoted

log = logging.getLogger(__name__)

# Bronze bookkeeping columns, not part of a raw input line.
SOURCE_FILE = "source_file"
LOADED_AT = "loaded_at"
MALFORMED = "_corrupt_record"
BRONZE_META = (SOURCE_FILE, LOADED_AT)
RAW_NAME = "raw_name"  # bronze column metadata: the column's name in the landing file

# Byte-order marks, longest first: the encoding they announce, as Java (Spark) names it.
BOMS = ((codecs.BOM_UTF8, "UTF-8"), (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))
# What `encoding: auto` falls back to when a file is not UTF-8: the usual spreadsheet export,
# then ISO-8859-1, which decodes any byte.
FALLBACK_ENCODINGS = ("windows-1252", "ISO-8859-1")
GZIP_MAGIC = b"\x1f\x8b"
# The charsets Spark's CSV reader takes by default (Python's names for them).
SPARK_CHARSETS = {"iso8859-1", "ascii", "utf-16", "utf-16-be", "utf-16-le", "utf-32", "utf-8"}
PROBLEMS_SHOWN = 5  # per file: more records too long are counted, not listed


class IngestError(ValueError):
    """The input cannot be ingested as configured; the message says what to change."""


@dataclass(frozen=True)
class FileAudit:
    """One landing file as the audit found it."""

    path: Path
    columns: tuple[str, ...]  # as the file (or input.csv.column_names) names them
    records: int | None  # data records counted apart from Spark (None: Parquet, no text)
    encoding: str = ""  # text: the charset Spark reads it with
    parquet_schema: str = ""  # Parquet: its typed schema (JSON); files typed alike are read together


def landing_files(path: Path, globs: tuple[str, ...]) -> list[Path]:
    """The landing files in ``path`` whose names match one of ``globs`` (case-insensitively),
    sorted by name; hidden files (``.``, ``_``) are never read, every other file skipped is logged."""
    if not path.is_dir():
        raise IngestError(f"landing folder {path} not found: set input.landing_path in conf")
    files, skipped = [], []
    for p in sorted(path.iterdir()):
        if not p.is_file() or p.name.startswith((".", "_")):
            continue
        matches = any(fnmatch.fnmatch(p.name.lower(), glob.lower()) for glob in globs)
        (files if matches else skipped).append(p)
    if skipped:
        names = ", ".join(p.name for p in skipped)
        log.warning(
            "load-sample: %d files in %s match none of %s (input.file_glob), not read: %s",
            len(skipped),
            path,
            ", ".join(globs),
            names,
        )
    if not files:
        raise IngestError(f"no file in {path} matches {', '.join(globs)}: set input.file_glob in conf")
    return files


def audit_files(spark: SparkSession, files: list[Path], spec: InputConfig) -> list[FileAudit]:
    """Every file audited; one IngestError naming each file that fails, and why, before any lands."""
    audits, problems = [], []
    for path in files:
        try:
            audit = (
                _audit_parquet(spark, path)
                if spec.landing_format == "parquet"
                else _audit_text(path, spec.csv)
            )
            _check_mapped_columns(audit, spec.columns)
        except IngestError as exc:
            problems.append(f"  {path.name}: {exc}")
            continue
        audits.append(audit)
    if problems:
        raise IngestError(
            f"{len(problems)} of {len(files)} landing files rejected, nothing landed:\n" + "\n".join(problems)
        )
    return audits


def find_column(source: str, by_name: dict[str, str]) -> str | None:
    """The bronze column conf's ``source`` names, from ``by_name`` (each column's name in the
    file and its bronze name -> its bronze name): conf may write either spelling."""
    return by_name.get(source) or by_name.get(safe_column_names([source])[0])


def _check_mapped_columns(audit: FileAudit, mapping: ColumnMapping) -> None:
    safe = safe_column_names(list(audit.columns))
    by_name = {**dict(zip(safe, safe, strict=True)), **dict(zip(audit.columns, safe, strict=True))}
    missing = [
        f"{source!r} (for {target})"
        for target, source in vars(mapping).items()
        if source is not None and find_column(source, by_name) is None
    ]
    if missing:
        raise IngestError(
            f"has no column {', '.join(missing)}; its columns are {', '.join(audit.columns)}. "
            "Fix the file, or input.columns in conf (null for a column the input does not have)"
        )


def _audit_parquet(spark: SparkSession, path: Path) -> FileAudit:
    schema = _parquet_schema(spark, str(path))
    return FileAudit(path, tuple(schema.fieldNames()), None, parquet_schema=schema.json())


def _audit_text(path: Path, spec: CsvConfig) -> FileAudit:
    """Decode and parse the file once with Python's csv module: its columns and record count."""
    try:
        return _decoded_audit(path, spec)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise IngestError(f"is a damaged gzip file ({exc}): land it again") from None


def _decoded_audit(path: Path, spec: CsvConfig) -> FileAudit:
    encoding = _declared_encoding(path, spec.encoding)
    candidates = (encoding,) if encoding else ("UTF-8", *FALLBACK_ENCODINGS)
    for position, candidate in enumerate(candidates):
        try:
            columns, records = _parse(path, candidate, spec)
        except UnicodeDecodeError as exc:
            if position + 1 < len(candidates):
                continue
            raise IngestError(
                f"is not {candidate} (byte 0x{exc.object[exc.start]:02x} cannot be decoded): set "
                "input.csv.encoding to the file's charset, or auto"
            ) from None
        if position:
            log.warning(
                "load-sample: %s is not UTF-8; read as %s (input.csv.encoding auto)", path.name, candidate
            )
        return FileAudit(path, columns, records, encoding=candidate)
    raise AssertionError("unreachable: the last candidate returns or raises")


def _declared_encoding(path: Path, configured: str) -> str | None:
    """The encoding the file's byte-order mark (or NUL pattern) declares, else ``configured``
    (None for ``auto``: UTF-8 is tried, then the fallbacks). A BOM that contradicts conf fails."""
    with _open_bytes(path) as raw:
        head = raw.read(4096)
    declared = next((name for bom, name in BOMS if head.startswith(bom)), None)
    if declared is None and len(head) >= 4 and head.count(b"\x00") * 4 >= len(head):
        # UTF-16 without a BOM: every other byte of ASCII text is NUL.
        declared = "UTF-16LE" if head[1::2].count(b"\x00") > head[0::2].count(b"\x00") else "UTF-16BE"
    if configured == "auto":
        return declared
    if declared and not _same_family(declared, configured):
        raise IngestError(
            f"is written in {declared} (by its first bytes) but input.csv.encoding is {configured}: "
            "set it to auto or to the file's charset"
        )
    return configured


def _same_family(declared: str, configured: str) -> bool:
    a, b = codecs.lookup(declared).name, codecs.lookup(configured).name
    return a.split("-")[0:2] == b.split("-")[0:2] or a.replace("-sig", "") == b.replace("-sig", "")


def _parse(path: Path, encoding: str, spec: CsvConfig) -> tuple[tuple[str, ...], int]:
    """(column names, data records) by Python's csv module; records spanning more than
    ``max_lines_per_record`` lines, or a field never closed, fail naming their lines."""
    python_encoding = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
    too_long: list[str] = []
    # With a header the file names its columns; without one, conf does (else Spark's _c0, ...).
    records, columns = 0, () if spec.header else tuple(spec.column_names)
    with _open_bytes(path) as raw:
        text = io.TextIOWrapper(raw, encoding=python_encoding, newline="")
        reader = csv.reader(_single_char_delimiter(text, spec.delimiter), **_dialect(spec))
        for first_line, fields in _records(reader):
            if not fields:
                continue  # a blank line: no record for Spark either
            span = reader.line_num - first_line
            if span > spec.max_lines_per_record:
                too_long.append(f"line {first_line + 1:,} runs {span:,} lines to line {reader.line_num:,}")
            if not columns and spec.header:
                columns = tuple(f or f"_c{i}" for i, f in enumerate(fields))
                continue
            if not columns:
                columns = tuple(f"_c{i}" for i in range(len(fields)))
            records += 1
    _check_columns(columns, spec)
    if too_long:
        raise IngestError(
            f"records span more than input.csv.max_lines_per_record={spec.max_lines_per_record} "
            f"lines ({len(too_long)}: {'; '.join(too_long[:PROBLEMS_SHOWN])}): an unbalanced quote "
            f"({spec.quote}) swallows the lines after it. Fix the file (or raise the limit if fields "
            "really hold that many line breaks)"
        )
    return columns, records


def _records(reader: Iterator[list[str]]) -> Iterator[tuple[int, list[str]]]:
    """(the line before the record, its fields) per record; a csv error names its line."""
    while True:
        before = reader.line_num  # type: ignore[attr-defined]
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a quote never closed: a field past csv's size limit
            raise IngestError(
                f"cannot be parsed from line {before + 1:,} ({exc}): an unbalanced quote swallows the "
                "lines after it? Fix the file"
            ) from None
        yield before, fields


def _check_columns(columns: tuple[str, ...], spec: CsvConfig) -> None:
    if any("\x00" in c for c in columns):
        raise IngestError(
            "has NUL bytes in its header: it is UTF-16 or UTF-32 without a byte-order mark, or "
            "not text. Set input.csv.encoding to its charset"
        )
    if not spec.header and spec.column_names and len(spec.column_names) != len(columns):
        raise IngestError(
            f"has {len(columns)} columns but input.csv.column_names names "
            f"{len(spec.column_names)}: {', '.join(spec.column_names)}"
        )


def _dialect(spec: CsvConfig) -> dict[str, object]:
    if spec.escape == spec.quote:
        return {"delimiter": _DELIMITER_STAND_IN, "quotechar": spec.quote, "doublequote": True}
    return {
        "delimiter": _DELIMITER_STAND_IN,
        "quotechar": spec.quote,
        "doublequote": False,
        "escapechar": spec.escape,
    }


# Python's csv takes a one-character delimiter; Spark any string: the audit parses with this one.
_DELIMITER_STAND_IN = "\x1f"


def _single_char_delimiter(lines: IO[str], delimiter: str) -> Iterator[str]:
    for line in lines:
        yield line.replace(delimiter, _DELIMITER_STAND_IN)


def _open_bytes(path: Path) -> IO[bytes]:
    """The file's bytes, gunzipped when its name ends in .gz (as Spark decides); a file whose
    content and name disagree fails naming it."""
    with path.open("rb") as probe:
        magic = probe.read(4)
    gzipped = path.name.lower().endswith(".gz")
    if magic.startswith(b"PK\x03\x04"):
        raise IngestError(
            "is a zip archive (an Excel workbook?): export it as CSV or unzip it into the folder"
        )
    if magic.startswith(GZIP_MAGIC) != gzipped:
        state = (
            "ends in .gz but is not gzip"
            if gzipped
            else "is gzip-compressed but its name does not end in .gz"
        )
        raise IngestError(f"{state}: Spark decides by the name; rename the file")
    return gzip.open(path, "rb") if gzipped else path.open("rb")


def safe_column_names(raw: list[str]) -> list[str]:
    """Bronze names for the input's column names: letters, digits and underscores (``Customer
    ID`` -> ``Customer_ID``; a byte-order mark dropped), unique, never empty."""
    names: list[str] = []
    for position, name in enumerate(raw):
        safe = re.sub(r"[^0-9A-Za-z_]+", "_", name.replace("\ufeff", "").strip()).strip("_")
        safe = safe or f"column_{position + 1}"
        candidate, suffix = safe, 2
        while candidate.lower() in {n.lower() for n in names}:
            candidate, suffix = f"{safe}_{suffix}", suffix + 1
        names.append(candidate)
    return names


def _with_safe_names(df: DataFrame) -> DataFrame:
    """Columns renamed to bronze-safe names; each keeps its name in the file as ``raw_name``
    metadata, so quarantine rows show the line as the input spelled it."""
    raw = [c for c in df.columns if c != MALFORMED]
    renamed = dict(zip(raw, safe_column_names(raw), strict=True))
    return df.select(
        *(
            F.col(quoted(c)).alias(renamed[c], metadata={RAW_NAME: c}) if c in renamed else F.col(c)
            for c in df.columns
        )
    )


def read_landing(spark: SparkSession, audits: list[FileAudit], spec: InputConfig) -> DataFrame:
    """Audited landing files as raw strings, one row per input record, plus the source file name.

    CSV records that do not parse into the header's columns keep their text in
    ``_corrupt_record`` and are quarantined by ingest as ``malformed_line``, never truncated.
    """
    # Files read together share their columns and charset, or (Parquet) their typed schema: a
    # column typed int one month and text the next is read apart, every column as a string.
    groups: dict[tuple[tuple[str, ...], str, str], list[str]] = {}
    for audit in audits:
        groups.setdefault((audit.columns, audit.encoding, audit.parquet_schema), []).append(str(audit.path))
    if any(codecs.lookup(e).name not in SPARK_CHARSETS for _, e, _ in groups if e):
        # Spark's CSV reader takes only a few charsets unless told to use all of Java's.
        spark.conf.set("spark.sql.legacy.javaCharsets", "true")
    parts = []
    for (columns, encoding, parquet_schema), paths in groups.items():
        if parquet_schema:
            df = spark.read.parquet(*paths)
            parts.append(df.select(*(F.col(quoted(c)).cast("string").alias(c) for c in df.columns)))
            continue
        schema = T.StructType([T.StructField(c, T.StringType()) for c in columns])
        parts.append(
            _csv_reader(spark, spec.csv, encoding)
            .schema(schema.add(MALFORMED, T.StringType()))
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", MALFORMED)
            .csv(paths)
        )
    named = [_with_safe_names(p).withColumn(SOURCE_FILE, _file_name()) for p in parts]
    return functools.reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), named)


def _file_name() -> Column:
    """The row's landing file name as the folder spells it: Spark gives it URL-encoded
    (``march%20sales.csv``) but leaves ``+`` as is, which url_decode would turn into a space."""
    return F.url_decode(F.regexp_replace(F.col("_metadata.file_name"), r"\+", "%2B"))


def check_rows_per_file(spark_rows: dict[str, int], audits: list[FileAudit]) -> None:
    """Spark's rows per file must equal the audit's records: a line lost between the two
    parsers fails the landing, naming the file and both counts."""
    read = {a.path.name: spark_rows.get(a.path.name, 0) for a in audits}
    wrong = [
        f"{a.path.name}: the audit counts {a.records:,} records, Spark read {read[a.path.name]:,}"
        for a in audits
        if a.records is not None and read[a.path.name] != a.records
    ]
    if wrong:
        raise IngestError(
            "Spark's CSV reader and the audit disagree, nothing landed: "
            + "; ".join(wrong)
            + ". Check input.csv (quote, escape, delimiter) against the file"
        )


def _csv_reader(spark: SparkSession, csv_spec: CsvConfig, encoding: str) -> DataFrameReader:
    # multiLine: quoted fields may hold line breaks, and it is the mode that decodes any charset.
    return spark.read.options(
        sep=csv_spec.delimiter,
        quote=csv_spec.quote,
        escape=csv_spec.escape,
        encoding=encoding,
        header=csv_spec.header,
        multiLine=True,
    )


def _parquet_schema(spark: SparkSession, path: str) -> T.StructType:
    try:
        return spark.read.parquet(path).schema
    except Exception as exc:  # noqa: BLE001 - any reader failure is this file's, named below
        if "PARQUET_TYPE_ILLEGAL" in str(exc):
            raise IngestError(
                f"has a column type Spark cannot read ({str(exc).splitlines()[0]}); nanosecond "
                "timestamps are the usual cause: write them in microseconds "
                "(pandas: to_parquet(..., coerce_timestamps='us'))"
            ) from None
        raise IngestError(f"cannot be read as Parquet ({str(exc).splitlines()[0]})") from None
