"""Compare the Delta tables of two pipeline work folders, table by table.

    python bench/compare_runs.py BEFORE_WORK_DIR AFTER_WORK_DIR

For refactors that must not change results (e.g. `make demo` before and after): the same tables,
the same rows, ranks and ids, floats (and float arrays) equal within a tolerance. The columns
that stamp a run (run_id and the *_at times) are left out. Exits 1 on any difference.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession

from recsys_spark.config import load_config
from recsys_spark.io.session import get_spark

STAMPS = {"run_id", "generated_at", "trained_at", "ingested_at", "evaluated_at", "decided_at", "loaded_at"}
TOLERANCE = 1e-4


def tables(work: Path) -> dict[str, Path]:
    return {
        f"{schema.name.removesuffix('.db')}.{table.name}": table
        for schema in sorted((work / "warehouse").glob("*.db"))
        for table in sorted(schema.iterdir())
    }


def read(spark: SparkSession, path: Path) -> pd.DataFrame:
    frame = spark.read.format("delta").load(str(path)).toPandas()
    frame = frame.drop(columns=[c for c in frame.columns if c in STAMPS])
    keys = [c for c in frame.columns if frame[c].dtype == object and not _is_array(frame[c])]
    keys += [c for c in frame.columns if c not in keys and frame[c].dtype.kind in "iub"]
    return frame.sort_values(keys).reset_index(drop=True) if keys else frame


def _is_array(column: pd.Series) -> bool:
    first = column.dropna().head(1)
    return len(first) > 0 and isinstance(first.iloc[0], np.ndarray | list | dict)


def difference(before: pd.DataFrame, after: pd.DataFrame) -> str | None:
    if list(before.columns) != list(after.columns):
        return f"columns {list(before.columns)} != {list(after.columns)}"
    if len(before) != len(after):
        return f"{len(before)} rows != {len(after)} rows"
    for column in before.columns:
        a, b = before[column], after[column]
        if a.dtype.kind == "f":
            if not np.allclose(a.to_numpy(float), b.to_numpy(float), atol=TOLERANCE, equal_nan=True):
                return f"{column}: max |diff| {np.nanmax(np.abs(a.to_numpy(float) - b.to_numpy(float)))}"
        elif _is_array(a) and not isinstance(a.dropna().iloc[0], dict):
            for x, y in zip(a, b, strict=True):
                if (x is None) != (y is None):
                    return f"{column}: null differs"
                if x is not None and not _same_array(np.asarray(x), np.asarray(y)):
                    return f"{column}: {x!r} != {y!r}"
        elif not a.astype(str).equals(b.astype(str)):
            mismatch = (a.astype(str) != b.astype(str)).to_numpy().nonzero()[0]
            first = mismatch[0]
            return f"{column}: {len(mismatch)} rows differ, first {a.iloc[first]!r} != {b.iloc[first]!r}"
    return None


def _same_array(x: np.ndarray, y: np.ndarray) -> bool:
    if x.shape != y.shape:
        return False
    if x.dtype.kind == "f":
        return bool(np.allclose(x, y, atol=TOLERANCE))
    return bool((x == y).all())


def main(before_dir: str, after_dir: str) -> int:
    spark = get_spark(load_config("local"))  # Delta from the project's own work folder
    before, after = tables(Path(before_dir)), tables(Path(after_dir))
    failed = sorted(set(before) ^ set(after))
    for name in failed:
        print(f"{name}: only in {'before' if name in before else 'after'}")
    for name in sorted(set(before) & set(after)):
        a, b = read(spark, before[name]), read(spark, after[name])
        why = difference(a, b)
        print(f"{name}: {len(a):,} rows {'identical' if why is None else 'DIFFER: ' + why}")
        failed += [name] if why else []
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
